"""The certificate pages: the registry's list, adding a CA certificate, a certificate's page with
its proof-of-possession (verification code, verification certificate, Verify), its deletion, and
the small JSON status the page polls.

Every read and write is a ``CertificateRegistry`` use case, so the portal applies the rules the
management API does; every write sends the etag the page was rendered with, so a page that went
stale gets the registry's precise stale-etag error instead of overwriting someone's change
(docs/portal.md#certificates).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from devprov.bootstrap import Container, utc_now
from devprov.core.certificate import MAX_ENCODED_CERTIFICATE_BYTES
from devprov.core.error import (
    STATUS,
    BodyTooLargeError,
    DevprovError,
    EtagMismatchError,
    PossessionError,
)
from devprov.portal.certificate_view import (
    CertificateView,
    devprov_command,
    failed_check,
    openssl_commands,
    view_certificate,
)
from devprov.portal.page import Endpoint, Handler, Page, Portal, guarded, read_form
from devprov.portal.render import SECURITY_HEADERS, url

# A stale page: the registry's message says which etag it had and which is current.
_STALE = (
    "This certificate changed after this page was loaded, so nothing was done; the page now "
    "shows its current state."
)


@dataclass(frozen=True)
class Problem:
    """What a refused form shows: a message, the error's code when it has one, the status."""

    text: str
    code: str | None = None
    status: int = 400

    @classmethod
    def of(cls, exc: DevprovError) -> Problem:
        text = exc.message
        if isinstance(exc, PossessionError):
            text = f"{failed_check(exc)} {_sentence(exc.message)}"
        elif isinstance(exc, EtagMismatchError):
            text = f"{_STALE} {exc.message}"
        return cls(text, f"{exc.code} ({exc.number})", STATUS[exc.kind])


def _sentence(message: str) -> str:
    """An error message (lower-case first, as the error tree writes them) as the second sentence
    after the failed check's."""
    return message[:1].upper() + message[1:]


def _service(request: Request) -> str:
    return str(request.path_params["service"])


def _name(request: Request) -> str:
    return str(request.path_params["name"])


def _page_url(service: str, name: str = "", suffix: str = "") -> str:
    path = f"s/{service}/certificates" + (f"/{name}" if name else "")
    return url(path + (f"/{suffix}" if suffix else ""))


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def _read_upload(form: FormData, what: str) -> bytes:
    """The bytes of the form's file, refused when larger than the registry accepts."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return b""
    data = await upload.read(MAX_ENCODED_CERTIFICATE_BYTES + 1)
    if len(data) > MAX_ENCODED_CERTIFICATE_BYTES:
        size = upload.size if upload.size is not None else len(data)
        raise BodyTooLargeError(
            f"the {what} file '{upload.filename}' is {size} bytes; the limit is "
            f"{MAX_ENCODED_CERTIFICATE_BYTES} bytes (96 KiB, DPS's message limit): upload the "
            "certificate alone, without its chain or key"
        )
    return data


# --- the list and adding -----------------------------------------------------------------------


async def list_page(request: Request, page: Page) -> Response:
    service = _service(request)
    records = await page.run(page.container.registry.list, service)
    now = utc_now()
    deleted = request.query_params.get("deleted")
    return page.render(
        request,
        "certificates.html",
        service=service,
        certificates=[view_certificate(r, now=now) for r in records],
        deleted=deleted,
    )


async def add_page(request: Request, page: Page) -> Response:
    service = _service(request)
    if request.method == "GET":
        await page.run(page.container.directory.get, service)  # an unknown service is a 404
        return _add_form(request, page, service, name="", verified=False, problem=None)
    form = await read_form(request)
    name, verified = _field(form, "name"), form.get("verified") == "on"
    try:
        data = await _read_upload(form, "certificate")
    except DevprovError as exc:
        return _add_form(request, page, service, name, verified, Problem.of(exc))
    if not name:
        problem = Problem("Enter a name for the certificate.")
    elif not data:
        problem = Problem(
            "Choose the CA certificate's file (.pem or .cer); none was sent, or it is empty."
        )
    else:
        try:
            record = await page.run(
                page.container.registry.upload,
                service,
                name,
                data,
                is_verified=verified,
                if_match=None,
                actor=page.actor,
                create_only=True,
            )
        except DevprovError as exc:
            problem = Problem.of(exc)
        else:
            return RedirectResponse(_page_url(service, record.name) + "?added=1", 303)
    return _add_form(request, page, service, name, verified, problem)


def _add_form(
    request: Request,
    page: Page,
    service: str,
    name: str,
    verified: bool,
    problem: Problem | None,
) -> Response:
    return page.render(
        request,
        "certificate_add.html",
        service=service,
        status_code=problem.status if problem else 200,
        name=name,
        verified=verified,
        problem=problem,
    )


# --- one certificate ---------------------------------------------------------------------------

_DONE = {"added": "Certificate {name} added.", "code": "Verification code generated.",
         "verified": "Verified."}  # fmt: skip


def _load(container: Container, service: str, name: str, now: datetime) -> CertificateView:
    record = container.registry.get(service, name)
    settings = container.directory.get(service)
    return view_certificate(record, now=now, code_lifetime=settings.code_lifetime)


async def _show(
    request: Request, page: Page, *, problem: Problem | None = None, done: str | None = None
) -> Response:
    service = _service(request)
    now = utc_now()
    view = await page.run(_load, page.container, service, _name(request), now)
    code = view.code
    return page.render(
        request,
        "certificate.html",
        service=service,
        status_code=problem.status if problem else 200,
        v=view,
        now=now,
        problem=problem,
        done=_DONE[done].format(name=view.name) if done in _DONE else None,
        devprov_command=devprov_command(code.value) if code else None,
        openssl_commands=openssl_commands(code.value) if code else None,
        status_url=_page_url(service, view.name, "status"),
    )


async def certificate_page(request: Request, page: Page) -> Response:
    done = next((key for key in _DONE if request.query_params.get(key) == "1"), None)
    return await _show(request, page, done=done)


async def generate_code(request: Request, page: Page) -> Response:
    form = await read_form(request)
    service, name = _service(request), _name(request)
    try:
        record = await page.run(
            page.container.registry.generate_code,
            service,
            name,
            if_match=_field(form, "etag"),
            actor=page.actor,
        )
    except DevprovError as exc:
        return await _show(request, page, problem=Problem.of(exc))
    return RedirectResponse(_page_url(service, record.name) + "?code=1", 303)


async def verify(request: Request, page: Page) -> Response:
    form = await read_form(request)
    service, name = _service(request), _name(request)
    try:
        proof = await _read_upload(form, "verification certificate")
        record = await page.run(
            page.container.registry.verify,
            service,
            name,
            proof,
            if_match=_field(form, "etag"),
            actor=page.actor,
        )
    except DevprovError as exc:
        return await _show(request, page, problem=Problem.of(exc))
    return RedirectResponse(_page_url(service, record.name) + "?verified=1", 303)


async def delete_page(request: Request, page: Page) -> Response:
    service, name = _service(request), _name(request)
    problem = None
    if request.method == "POST":
        form = await read_form(request)
        try:
            await page.run(
                page.container.registry.delete,
                service,
                name,
                if_match=_field(form, "etag"),
                actor=page.actor,
            )
        except DevprovError as exc:
            problem = Problem.of(exc)
        else:
            query = urllib.parse.urlencode({"deleted": name})
            return RedirectResponse(f"{_page_url(service)}?{query}", 303)
    use = await page.run(page.container.registry.groups_using, service, name)
    return page.render(
        request,
        "certificate_delete.html",
        service=service,
        status_code=problem.status if problem else 200,
        use=use,
        problem=problem,
    )


async def status(request: Request, page: Page) -> Response:
    """The certificate's status for the page's live update (static/portal.js)."""
    record = await page.run(page.container.registry.get, _service(request), _name(request))
    view = view_certificate(record, now=utc_now())
    return JSONResponse(
        {
            "status": view.status,
            "method": view.method,
            "verifiedAt": (
                record.verified_at.strftime("%Y-%m-%d %H:%M UTC") if record.verified_at else None
            ),
        },
        headers=SECURITY_HEADERS,
    )


def routes(portal: Portal) -> list[BaseRoute]:
    def guard(handler: Handler) -> Endpoint:
        return guarded(portal, handler)

    base = "/s/{service}/certificates"
    both = ["GET", "POST"]
    return [
        Route(base, guard(list_page)),
        # Before "{name}": the add form's URL wins over a certificate named "add", which keeps
        # its API and CLI (docs/portal.md#certificates).
        Route(f"{base}/add", guard(add_page), methods=both),
        Route(f"{base}/{{name}}", guard(certificate_page)),
        Route(f"{base}/{{name}}/code", guard(generate_code), methods=["POST"]),
        Route(f"{base}/{{name}}/verify", guard(verify), methods=["POST"]),
        Route(f"{base}/{{name}}/delete", guard(delete_page), methods=both),
        Route(f"{base}/{{name}}/status", guard(status)),
    ]
