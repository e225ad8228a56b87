"""The ASGI application: every API devprov serves over HTTPS, on one Starlette app.

Handlers call the use cases directly on the event loop. Each call is short CPU work on local
storage (a SQLite transaction takes well under a millisecond), and a hop to a worker thread and
back cost more than the work itself: measured with bench/registration.py, 3.8 ms of server CPU
per registration with the hop, 2.4 ms without. The one slow call, the custom allocation webhook,
runs on a worker thread (device_api). A writer of another process holding SQLite's lock makes a
call wait, bounded by storage.database.SQLITE_BUSY_TIMEOUT_MS; several worker processes
(``devprov serve --workers``) keep one such wait from stalling every connection.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from devprov.bootstrap import Container
from devprov.core.error import RouteNotFoundError
from devprov.http import device_api, management, service_api
from devprov.http.error import arm_error_response, new_tracking_id


async def _not_found(request: Request, exc: Exception) -> Response:
    return arm_error_response(
        RouteNotFoundError(f"no resource at {request.method} {request.url.path}"), new_tracking_id()
    )


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {
            "code": 405000,
            "httpStatusCode": "MethodNotAllowed",
            "message": f"{request.method} is not allowed here",
        },
        status_code=405,
    )


def build_app(container: Container) -> Starlette:
    return Starlette(
        routes=[
            # Devices first: their two requests per registration are the hot path, and the
            # router tries routes in order.
            *device_api.routes(container),
            *management.routes(container),
            *service_api.routes(container),
        ],
        exception_handlers={404: _not_found, 405: _method_not_allowed},
    )
