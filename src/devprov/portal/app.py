"""The portal's routes, mounted at ``/portal`` on the HTTPS app (http.app)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from devprov.bootstrap import Container, utc_now
from devprov.core.sign_in_limit import SignInLimit
from devprov.portal import (
    audit,
    auth,
    certificates,
    credential_policies,
    enrollments,
    hubs,
    registrations,
)
from devprov.portal.page import Page, Portal, guarded
from devprov.portal.render import url
from devprov.portal.services import services_page
from devprov.portal.session import SessionCookies
from devprov.service.port import Clock


async def _home(request: Request, page: Page) -> Response:
    return RedirectResponse(url("services"), status_code=303)


def routes(container: Container, *, clock: Clock = utc_now) -> list[BaseRoute]:
    """The portal's routes; ``clock`` is what sessions' sign-in forms and the sign-in limit
    read the time from (tests move it)."""
    portal = Portal(container, SessionCookies(container, clock), SignInLimit(), clock)
    home = guarded(portal, _home)
    return [
        Route("/portal", home),
        Mount(
            "/portal",
            routes=[
                Route("/", home),
                Route("/sign-in", auth.sign_in_page(portal), methods=["GET", "POST"]),
                Route("/sign-out", guarded(portal, auth.sign_out), methods=["POST"]),
                Route("/services", guarded(portal, services_page)),
                *certificates.routes(portal),
                *credential_policies.routes(portal),
                *enrollments.routes(portal),
                *registrations.routes(portal),
                *hubs.routes(portal),
                *audit.routes(portal),
                Mount("/static", StaticFiles(packages=[("devprov.portal", "static")])),
            ],
        ),
    ]
