"""The enrollment pages: enrollment groups at ``/portal/s/{service}/groups`` and individual
enrollments at ``/portal/s/{service}/enrollments``; list, create, show, enable or disable, show
keys (on POST only), delete after a confirmation.

Every change is the service API's: the form becomes the same DPS document (portal.enrollment_form)
and goes to ``EnrollmentService``; enabling and disabling writes back the stored record's document
with the page's etag, so a page older than the record gets the precise 412 error.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from devprov.core import document
from devprov.core.certificate import CertificateFacts
from devprov.core.enrollment import AttestationType, Enrollment
from devprov.core.error import (
    STATUS,
    CertificateNotFoundError,
    DevprovError,
    EtagMismatchError,
    InvalidInputError,
)
from devprov.core.registration import RegistrationState
from devprov.portal.enrollment_form import (
    FORM_ALLOCATION_POLICIES,
    GROUPS,
    INDIVIDUALS,
    Entered,
    Kind,
    build_document,
    entered,
    read_certificate_file,
    with_credential_policy,
    with_status,
)
from devprov.portal.page import Handler, Page, Portal, guarded, read_form
from devprov.portal.paging import page_size, query_string
from devprov.portal.render import url
from devprov.service.model import CertificateRecord


@dataclass(frozen=True)
class CaStatus:
    """A certificate of the registry a group names, and its record (None: no longer there)."""

    name: str
    record: CertificateRecord | None


def _service(request: Request) -> str:
    return str(request.path_params["service"])


def _base(service: str, kind: Kind) -> str:
    return url(f"s/{urllib.parse.quote(service, safe='')}/{kind.path}")


def _here(service: str, kind: Kind, id: str) -> str:
    return f"{_base(service, kind)}/{urllib.parse.quote(id, safe='')}"


def _list(kind: Kind) -> Handler:
    async def handler(request: Request, page: Page) -> Response:
        service = _service(request)
        prefix = request.query_params.get("prefix", "").strip()
        size = page_size(request)
        listed = await page.run(
            page.container.enrollments.list,
            service,
            kind.kind,
            prefix=prefix or None,
            continuation=request.query_params.get("after") or None,
            max_items=size,
        )
        return page.render(
            request,
            "enrollment_list.html",
            service=service,
            kind=kind,
            base=_base(service, kind),
            prefix=prefix,
            items=listed.items,
            next=listed.continuation,
            query=query_string(request, "prefix", "size"),
        )

    return handler


async def _render_new(
    request: Request, page: Page, kind: Kind, given: Entered, error: DevprovError | None
) -> Response:
    service = _service(request)
    certificates = await page.run(page.container.registry.list, service) if kind is GROUPS else []
    hubs = await page.run(page.container.hubs.all, service)
    credential_policies = await page.run(page.container.credential_policies.list, service)
    return page.render(
        request,
        "enrollment_new.html",
        service=service,
        status_code=STATUS[error.kind] if error else 200,
        kind=kind,
        base=_base(service, kind),
        given=given,
        error=error,
        certificates=certificates,
        hubs=hubs,
        policies=FORM_ALLOCATION_POLICIES,
        credential_policies=credential_policies,
    )


def _new(kind: Kind) -> Handler:
    async def handler(request: Request, page: Page) -> Response:
        if request.method == "GET":
            return await _render_new(request, page, kind, Entered(), None)
        service = _service(request)
        form = await read_form(request)
        given = entered(form, kind)
        try:
            try:
                pem = await read_certificate_file(form, kind.file_label)
            finally:
                await form.close()  # the upload's spooled file, at once
            record = await page.run(
                page.container.enrollments.create_or_update,
                service,
                kind.kind,
                given.id,
                build_document(kind, given, pem),
                if_match=None,
                actor=page.actor,
            )
        except DevprovError as exc:
            return await _render_new(request, page, kind, given, exc)
        return RedirectResponse(_here(service, kind, record.id), status_code=303)

    return handler


async def _cas(page: Page, item: Enrollment) -> list[CaStatus]:
    found = []
    for name in item.attestation.ca_references:
        try:
            record: CertificateRecord | None = await page.run(
                page.container.registry.get, item.service, name
            )
        except CertificateNotFoundError:
            record = None
        found.append(CaStatus(name, record))
    return found


def _certificates(item: Enrollment) -> list[tuple[str, CertificateFacts]]:
    slots = (
        ("Primary", item.attestation.primary_certificate),
        ("Secondary", item.attestation.secondary_certificate),
    )
    return [(slot, c.facts) for slot, c in slots if c is not None and not c.is_kept]


async def _registrations(
    request: Request, page: Page, kind: Kind, item: Enrollment
) -> tuple[list[RegistrationState], str | None]:
    if kind is INDIVIDUALS:
        state = await page.run(page.container.registration_states.find, item.service, item.id)
        return ([state] if state is not None else []), None
    listed = await page.run(
        page.container.registration_states.query,
        item.service,
        item.id,
        continuation=request.query_params.get("after") or None,
        max_items=page_size(request),
    )
    return listed.items, listed.continuation


async def _show(
    request: Request, page: Page, kind: Kind, *, error: DevprovError | None = None
) -> Response:
    """A record's page; ``error`` is a refused change of it, shown in the page."""
    service, id = _service(request), str(request.path_params["id"])
    item = await page.run(page.container.enrollments.get, service, kind.kind, id)
    registrations, after = await _registrations(request, page, kind, item)
    credential_policies = await page.run(page.container.credential_policies.list, service)
    named = item.credential_policy
    return page.render(
        request,
        "enrollment.html",
        service=service,
        status_code=STATUS[error.kind] if error else 200,
        kind=kind,
        base=_base(service, kind),
        here=_here(service, kind, item.id),
        item=item,
        cas=await _cas(page, item),
        certificates=_certificates(item),
        registrations=registrations,
        next=after,
        credential_policies=credential_policies,
        # None: it names none; False: it names one the service no longer has.
        policy_exists=(
            None if named is None else any(p.key == named.lower() for p in credential_policies)
        ),
        error=error,
    )


def _detail(kind: Kind) -> Handler:
    async def handler(request: Request, page: Page) -> Response:
        return await _show(request, page, kind)

    return handler


def _form_text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _enabled(kind: Kind) -> Handler:
    async def handler(request: Request, page: Page) -> Response:
        service, id = _service(request), str(request.path_params["id"])
        form = await read_form(request)
        item = await page.run(page.container.enrollments.get, service, kind.kind, id)
        doc = with_status(document.enrollment(item), _form_text(form.get("enabled")) == "true")
        change = await page.run(
            page.container.enrollments.write,
            service,
            kind.kind,
            item.id,
            doc,
            # The page's etag, not the one just read: a change made since the page was shown
            # refuses this one (412) instead of being overwritten.
            if_match=_form_text(form.get("etag")) or item.etag,
            actor=page.actor,
        )
        if change.disabled:
            plan = await page.run(
                page.container.hub_sync.for_enrollment, service, kind.kind, item.id, deleted=False
            )
            await page.container.change_hubs(plan, actor=page.actor)
        return RedirectResponse(_here(service, kind, item.id), status_code=303)

    return handler


def _credential_policy(kind: Kind) -> Handler:
    """Name another credential policy, or none: the record written back with the page's etag,
    as enabling does, so that the service API's rules (the policy must exist) apply."""

    async def handler(request: Request, page: Page) -> Response:
        service, id = _service(request), str(request.path_params["id"])
        form = await read_form(request)
        item = await page.run(page.container.enrollments.get, service, kind.kind, id)
        policy = _form_text(form.get("credential_policy")) or None
        try:
            await page.run(
                page.container.enrollments.write,
                service,
                kind.kind,
                item.id,
                with_credential_policy(document.enrollment(item), policy),
                # The page's etag, as for enabling: a change made since is not overwritten.
                if_match=_form_text(form.get("etag")) or item.etag,
                actor=page.actor,
            )
        except (InvalidInputError, EtagMismatchError) as exc:
            return await _show(request, page, kind, error=exc)
        return RedirectResponse(_here(service, kind, item.id), status_code=303)

    return handler


def _keys(kind: Kind) -> Handler:
    async def handler(request: Request, page: Page) -> Response:
        service, id = _service(request), str(request.path_params["id"])
        item = await page.run(page.container.enrollments.get, service, kind.kind, id)
        if item.attestation.type is not AttestationType.SYMMETRIC_KEY:
            return RedirectResponse(_here(service, kind, item.id), status_code=303)
        attestation = await page.run(
            page.container.enrollments.attestation_mechanism, service, kind.kind, item.id
        )
        return page.render(
            request,
            "enrollment_keys.html",
            service=service,
            kind=kind,
            here=_here(service, kind, item.id),
            item_id=item.id,
            attestation=attestation,
        )

    return handler


def _delete(kind: Kind) -> Handler:
    async def handler(request: Request, page: Page) -> Response:
        service, id = _service(request), str(request.path_params["id"])
        if request.method == "GET":
            item = await page.run(page.container.enrollments.get, service, kind.kind, id)
            return page.render(
                request,
                "enrollment_delete.html",
                service=service,
                kind=kind,
                here=_here(service, kind, item.id),
                item=item,
            )
        form = await read_form(request)
        await page.run(
            page.container.enrollments.delete,
            service,
            kind.kind,
            id,
            if_match=_form_text(form.get("etag")) or None,
            actor=page.actor,
        )
        plan = await page.run(
            page.container.hub_sync.for_enrollment, service, kind.kind, id, deleted=True
        )
        await page.container.change_hubs(plan, actor=page.actor)
        return RedirectResponse(_base(service, kind), status_code=303)

    return handler


def routes(portal: Portal) -> list[Route]:
    found: list[Route] = []
    for kind in (GROUPS, INDIVIDUALS):
        base = f"/s/{{service}}/{kind.path}"
        found += [
            Route(base, guarded(portal, _list(kind))),
            Route(f"{base}/new", guarded(portal, _new(kind)), methods=["GET", "POST"]),
            Route(f"{base}/{{id}}", guarded(portal, _detail(kind))),
            Route(f"{base}/{{id}}/enabled", guarded(portal, _enabled(kind)), methods=["POST"]),
            Route(f"{base}/{{id}}/keys", guarded(portal, _keys(kind)), methods=["POST"]),
            Route(
                f"{base}/{{id}}/credential-policy",
                guarded(portal, _credential_policy(kind)),
                methods=["POST"],
            ),
            Route(f"{base}/{{id}}/delete", guarded(portal, _delete(kind)), methods=["GET", "POST"]),
        ]
    return found
