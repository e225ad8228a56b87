"""The audit log page at ``/portal/s/{service}/audit``: the service's events newest first,
filtered by action, actor, registration ID, certificate, outcome and a time range, and paged
with an "Older events" cursor (``AuditTrail.page``: the last event's time and id, no OFFSET)."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devprov.core.error import MalformedRequestError
from devprov.portal.page import Page, Portal, guarded
from devprov.portal.paging import page_size, query_string
from devprov.service.model import AuditFilter, Outcome

FILTERS = ("action", "actor", "registration", "certificate", "outcome", "since", "until")


def _time(text: str, label: str) -> datetime | None:
    """A time the filter form sent (``YYYY-MM-DDTHH:MM``, read as UTC), or None."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedRequestError(
            f"{label} must be a date and time, such as 2026-05-01T12:00"
        ) from exc
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def audit_filter(service: str, given: dict[str, str]) -> AuditFilter:
    outcome = given["outcome"]
    return AuditFilter(
        service=service,
        action=given["action"] or None,
        actor=given["actor"] or None,
        registration_id=given["registration"] or None,
        certificate=given["certificate"] or None,
        outcome=Outcome(outcome) if outcome in ("succeeded", "failed") else None,
        since=_time(given["since"], "From (UTC)"),
        until=_time(given["until"], "Until (UTC)"),
    )


async def audit_page(request: Request, page: Page) -> Response:
    service = str(request.path_params["service"])
    given = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    listed = await page.run(
        page.container.audit.page,
        audit_filter(service, given),
        older=request.query_params.get("older") or None,
        limit=page_size(request),
    )
    query = query_string(request, *FILTERS, "size")
    return page.render(
        request,
        "audit.html",
        service=service,
        quoted=urllib.parse.quote(service, safe=""),
        given=given,
        items=listed.items,
        older=listed.older,
        query=query,
        filtered=any(given.values()),
    )


def routes(portal: Portal) -> list[Route]:
    return [Route("/s/{service}/audit", guarded(portal, audit_page))]
