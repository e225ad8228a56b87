"""The registrations page at ``/portal/s/{service}/registrations``: the service's registration
states (status, assigned hub, device, last update, the enrollment that governed them), paged by
registration ID, with a search by the ID's beginning (an exact ID finds its own record first)."""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devprov.portal.page import Page, Portal, guarded
from devprov.portal.paging import page_size, query_string


async def registrations_page(request: Request, page: Page) -> Response:
    service = str(request.path_params["service"])
    search = request.query_params.get("id", "").strip()
    listed = await page.run(
        page.container.registration_states.list,
        service,
        prefix=search or None,
        continuation=request.query_params.get("after") or None,
        max_items=page_size(request),
    )
    return page.render(
        request,
        "registrations.html",
        service=service,
        quoted=urllib.parse.quote(service, safe=""),
        search=search,
        items=listed.items,
        next=listed.continuation,
        query=query_string(request, "id", "size"),
    )


def routes(portal: Portal) -> list[Route]:
    return [Route("/s/{service}/registrations", guarded(portal, registrations_page))]
