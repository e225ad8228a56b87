"""The portal's routes, mounted at ``/portal`` on the HTTPS app (http.app)."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from devprov.bootstrap import Container, utc_now
from devprov.portal import audit, auth, certificates, enrollments, hubs, registrations
from devprov.portal.page import Portal, guarded
from devprov.portal.render import url
from devprov.portal.services import services_page
from devprov.portal.session import SessionSigner


def _session_key(container: Container) -> bytes:
    return hmac.new(
        container.admin_token_sha256.encode(), b"devprov portal sessions", hashlib.sha256
    ).digest()


async def _home(request: Request) -> Response:
    return RedirectResponse(url("services"), status_code=303)


def routes(container: Container) -> list[BaseRoute]:
    portal = Portal(container, SessionSigner(_session_key(container), utc_now))
    return [
        Route("/portal", _home),
        Mount(
            "/portal",
            routes=[
                Route("/", _home),
                Route("/sign-in", auth.sign_in_page(portal), methods=["GET", "POST"]),
                Route("/sign-out", guarded(portal, auth.sign_out), methods=["POST"]),
                Route("/services", guarded(portal, services_page)),
                *certificates.routes(portal),
                *enrollments.routes(portal),
                *registrations.routes(portal),
                *hubs.routes(portal),
                *audit.routes(portal),
                Mount("/static", StaticFiles(packages=[("devprov.portal", "static")])),
            ],
        ),
    ]
