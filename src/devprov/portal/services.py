"""The provisioning-service picker: the portal's first page after sign-in."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from devprov.portal.page import Page


async def services_page(request: Request, page: Page) -> Response:
    services = await page.run(page.container.directory.all)
    return page.render(request, "services.html", services=services)
