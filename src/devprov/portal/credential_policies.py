"""The credential policy pages at ``/portal/s/{service}/credential-policies``: the service's
policies with the number of enrollments naming each, creating one with a CA devprov generates,
a policy's page (its CA chain, the addresses of its CA chain and CRL, the certificates issued
under it, paged), deleting a policy and revoking an issued certificate, each after a
confirmation.

Every read and write is a ``CredentialPolicies`` use case, the one ``devprov credential-policy``
and ``devprov issued`` call, so the rules and the audit trail are the same; the actor is the
page's session (docs/portal.md#credential-policies). Importing an operator's CA, which needs its
key, stays on the command line.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from devprov.bootstrap import Container
from devprov.core.credential_policy import (
    DEFAULT_VALIDITY_DAYS,
    MAX_VALIDITY_DAYS,
    MIN_VALIDITY_DAYS,
    InvalidCredentialPolicyError,
    IssuedCertificate,
)
from devprov.core.error import STATUS, ConflictError, DevprovError, InvalidInputError
from devprov.portal.credential_policy_view import PolicyView, view_policy
from devprov.portal.page import Endpoint, Handler, Page, Portal, guarded, read_form
from devprov.portal.paging import page_size, query_string
from devprov.portal.render import url
from devprov.service.credential_policy import (
    CertificateAlreadyRevokedError,
    CredentialPolicyInUseError,
    IssuedCertificateNotFoundError,
)
from devprov.service.issuing_ca import DEFAULT_KEY_TYPE
from devprov.service.pki.ca import KeyType

# What a refused delete says in the portal: the use case's message speaks of the CLI's --force.
_IN_USE = (
    "Nothing was deleted: enrollments name this policy. Change them first, or tick "
    "“Delete it although enrollments name it”."
)


@dataclass(frozen=True)
class Given:
    """What the operator typed in the create form, to show it again after a refusal."""

    name: str = ""
    key_type: str = DEFAULT_KEY_TYPE.value
    validity_days: str = str(DEFAULT_VALIDITY_DAYS)
    organization: str = ""
    organizational_unit: str = ""
    server_auth: bool = False


def _service(request: Request) -> str:
    return str(request.path_params["service"])


def _quoted(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _base(service: str) -> str:
    return url(f"s/{_quoted(service)}/credential-policies")


def _here(service: str, policy: str) -> str:
    return f"{_base(service)}/{_quoted(policy)}"


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


# --- the list and creating ----------------------------------------------------------------------


async def _render_list(
    request: Request, page: Page, *, given: Given | None = None, error: DevprovError | None = None
) -> Response:
    service = _service(request)
    used = await page.run(page.container.credential_policies.list_with_use, service)
    return page.render(
        request,
        "credential_policies.html",
        service=service,
        status_code=STATUS[error.kind] if error else 200,
        base=_base(service),
        policies=[view_policy(u.policy, enrollments=u.enrollments) for u in used],
        given=given or Given(),
        error=error,
        deleted=request.query_params.get("deleted"),
        key_types=[k.value for k in KeyType],
        min_days=MIN_VALIDITY_DAYS,
        max_days=MAX_VALIDITY_DAYS,
    )


def _days(text: str) -> int:
    if not text.isdigit():
        raise InvalidCredentialPolicyError(
            f"a credential policy's validity must be a whole number of days, "
            f"{MIN_VALIDITY_DAYS} to {MAX_VALIDITY_DAYS}; got {text!r}"
        )
    return int(text)


async def list_page(request: Request, page: Page) -> Response:
    if request.method == "GET":
        return await _render_list(request, page)
    service = _service(request)
    form = await read_form(request)
    given = Given(
        name=_text(form, "name"),
        key_type=_text(form, "key_type"),
        validity_days=_text(form, "validity_days"),
        organization=_text(form, "organization"),
        organizational_unit=_text(form, "organizational_unit"),
        server_auth=_text(form, "server_auth") == "true",
    )
    try:
        policy = await page.run(
            page.container.credential_policies.create,
            service,
            given.name,
            key_type=given.key_type,
            validity_days=_days(given.validity_days),
            organization=given.organization or None,
            organizational_unit=given.organizational_unit or None,
            server_auth=given.server_auth,
            actor=page.actor,
        )
    except (InvalidInputError, ConflictError) as exc:
        return await _render_list(request, page, given=given, error=exc)
    return RedirectResponse(_here(service, policy.name) + "?created=1", status_code=303)


# --- one policy ---------------------------------------------------------------------------------


def _load(container: Container, service: str, name: str) -> PolicyView:
    policies = container.credential_policies
    policy = policies.show(service, name)
    return view_policy(policy, enrollments=policies.enrollments_naming(service, policy.name))


async def policy_page(request: Request, page: Page) -> Response:
    service = _service(request)
    view = await page.run(_load, page.container, service, str(request.path_params["policy"]))
    size = page_size(request)
    # One more than the page holds: whether there is a next page, without counting.
    found = await page.run(
        page.container.credential_policies.issued,
        service,
        policy=view.name,
        after=request.query_params.get("after") or None,
        limit=size + 1,
    )
    items = found[:size]
    return page.render(
        request,
        "credential_policy.html",
        service=service,
        base=_base(service),
        here=_here(service, view.name),
        v=view,
        origin=f"{request.url.scheme}://{request.url.netloc}",
        issued=items,
        next=items[-1].serial if len(found) > size else None,
        query=query_string(request, "size"),
        created=request.query_params.get("created") == "1",
        revoked=request.query_params.get("revoked"),
    )


async def delete_page(request: Request, page: Page) -> Response:
    service = _service(request)
    view = await page.run(_load, page.container, service, str(request.path_params["policy"]))
    error: DevprovError | None = None
    problem = None
    if request.method == "POST":
        form = await read_form(request)
        try:
            await page.run(
                page.container.credential_policies.delete,
                service,
                view.name,
                force=_text(form, "force") == "true",
                actor=page.actor,
            )
        except CredentialPolicyInUseError as exc:
            error, problem = exc, _IN_USE
            # The count may have changed since the confirmation was shown.
            view = await page.run(_load, page.container, service, view.name)
        else:
            query = urllib.parse.urlencode({"deleted": view.name})
            return RedirectResponse(f"{_base(service)}?{query}", status_code=303)
    return page.render(
        request,
        "credential_policy_delete.html",
        service=service,
        status_code=STATUS[error.kind] if error else 200,
        base=_base(service),
        here=_here(service, view.name),
        v=view,
        error=error,
        problem=problem,
    )


# --- revoking an issued certificate -------------------------------------------------------------


def _issued(container: Container, service: str, policy: str, serial: str) -> IssuedCertificate:
    """The certificate of that serial, when the policy named issued it."""
    record = container.credential_policies.issued_certificate(service, serial)
    if record.policy.lower() != policy.lower():
        raise IssuedCertificateNotFoundError(
            f"credential policy '{policy}' of service '{service}' issued no certificate with "
            f"serial {record.serial}"
        )
    return record


async def revoke_page(request: Request, page: Page) -> Response:
    service, serial = _service(request), str(request.path_params["serial"])
    view = await page.run(_load, page.container, service, str(request.path_params["policy"]))
    record = await page.run(_issued, page.container, service, view.name, serial)
    error: DevprovError | None = None
    if request.method == "POST":
        try:
            await page.run(
                page.container.credential_policies.revoke, service, record.serial, actor=page.actor
            )
        except CertificateAlreadyRevokedError as exc:
            error = exc
            record = await page.run(_issued, page.container, service, view.name, serial)
        else:
            query = urllib.parse.urlencode({"revoked": record.serial})
            return RedirectResponse(f"{_here(service, view.name)}?{query}", status_code=303)
    return page.render(
        request,
        "issued_revoke.html",
        service=service,
        status_code=STATUS[error.kind] if error else 200,
        here=_here(service, view.name),
        v=view,
        record=record,
        error=error,
    )


def routes(portal: Portal) -> list[BaseRoute]:
    def guard(handler: Handler) -> Endpoint:
        return guarded(portal, handler)

    base = "/s/{service}/credential-policies"
    both = ["GET", "POST"]
    return [
        Route(base, guard(list_page), methods=both),
        Route(f"{base}/{{policy}}", guard(policy_page)),
        Route(f"{base}/{{policy}}/delete", guard(delete_page), methods=both),
        Route(f"{base}/{{policy}}/issued/{{serial}}/revoke", guard(revoke_page), methods=both),
    ]
