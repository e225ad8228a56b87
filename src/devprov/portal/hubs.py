"""The linked hubs page at ``/portal/s/{service}/hubs``: the IoT hubs allocation may assign
devices to, with their weights; link one (or change its weight) and unlink one after a
confirmation, through ``HubDirectory`` as the management API does."""

from __future__ import annotations

import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from devprov.core.error import STATUS, DevprovError, InvalidInputError
from devprov.portal.page import Page, Portal, guarded, read_form
from devprov.portal.render import url
from devprov.service.hub import MAX_WEIGHT, HubNotFoundError, InvalidHubNameError


def _base(service: str) -> str:
    return url(f"s/{urllib.parse.quote(service, safe='')}/hubs")


async def _render(
    request: Request,
    page: Page,
    *,
    error: DevprovError | None = None,
    host: str = "",
    weight: str = "1",
    apply: bool = True,
) -> Response:
    service = str(request.path_params["service"])
    hubs = await page.run(page.container.hubs.all, service)
    return page.render(
        request,
        "hubs.html",
        service=service,
        status_code=STATUS[error.kind] if error else 200,
        base=_base(service),
        hubs=hubs,
        error=error,
        host=host,
        weight=weight,
        apply=apply,
        max_weight=MAX_WEIGHT,
    )


def _weight(text: str) -> int:
    if not text.strip().isdigit():
        raise InvalidHubNameError(
            f"the allocation weight must be a whole number, 1 to {MAX_WEIGHT}"
        )
    return int(text)


async def hubs_page(request: Request, page: Page) -> Response:
    if request.method == "GET":
        return await _render(request, page)
    service = str(request.path_params["service"])
    form = await read_form(request)
    host = str(form.get("host_name") or "").strip()
    weight = str(form.get("weight") or "").strip()
    apply = form.get("apply_allocation_policy") == "true"
    try:
        await page.run(
            page.container.hubs.add,
            service,
            host,
            weight=_weight(weight),
            apply_allocation_policy=apply,
            actor=page.actor,
        )
    except InvalidInputError as exc:
        return await _render(request, page, error=exc, host=host, weight=weight, apply=apply)
    return RedirectResponse(_base(service), status_code=303)


async def remove_page(request: Request, page: Page) -> Response:
    service, host = str(request.path_params["service"]), str(request.path_params["host"])
    if request.method == "GET":
        hubs = await page.run(page.container.hubs.all, service)
        found = [hub for hub in hubs if hub.host_name == host.lower()]
        if not found:
            raise HubNotFoundError(f"IoT hub '{host}' is not linked to service '{service}'")
        return page.render(
            request, "hub_remove.html", service=service, base=_base(service), hub=found[0]
        )
    await page.run(page.container.hubs.remove, service, host, actor=page.actor)
    return RedirectResponse(_base(service), status_code=303)


def routes(portal: Portal) -> list[Route]:
    return [
        Route("/s/{service}/hubs", guarded(portal, hubs_page), methods=["GET", "POST"]),
        Route(
            "/s/{service}/hubs/{host}/remove",
            guarded(portal, remove_page),
            methods=["GET", "POST"],
        ),
    ]
