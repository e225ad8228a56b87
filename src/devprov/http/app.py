"""The ASGI application: every API devprov serves over HTTPS, on one Starlette app.

Handlers run on the event loop and send every use case that touches storage to the storage
threads (``Container.storage``, storage.executor): a writer of another process holding SQLite's
lock makes that call wait, up to storage.database.LOCK_TIMEOUT_SECONDS and then 503 with a retry
hint, while handshakes and other requests go on. The hop to a thread and back costs about half a
millisecond of server CPU per call, measured with bench/registration.py; a wait on the loop cost
every connection of the process seconds (docs/storage.md#storage-and-the-event-loop). The custom
allocation webhook, a network call, runs on a worker thread of its own (device_api).

An exception no handler expected becomes DPS's error body with status 500 and a tracking id,
and exactly one log line at ERROR that names the exception, where it was raised and the tracking
id (its traceback is logged at DEBUG): :class:`UnexpectedErrors`. A device's three requests skip
the middleware and the router (http.device_route), which does the same for them inline.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devprov.bootstrap import Container
from devprov.core.error import RouteNotFoundError
from devprov.http import credential_policy, device_api, health, management, service_api
from devprov.http.device_route import DeviceRoutes
from devprov.http.error import arm_error_response, new_tracking_id, unexpected_error_response
from devprov.http.metrics import RequestTimer
from devprov.portal import app as portal


class UnexpectedErrors:
    """ASGI middleware: an unexpected exception gets DPS's 500 and one log line.

    Installed inside Starlette's own outermost error middleware, which would otherwise answer
    plain text, and re-raise for the server to log a second time. After the response has begun
    nothing can be said to the client: the exception goes on to the server, which cuts the
    response and logs it (once, still).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            await unexpected_error_response(exc, scope)(scope, receive, send)


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


def build_app(container: Container) -> ASGIApp:
    """The whole app, with the device API's routes answered before Starlette's middleware and
    router (http.device_route), the same ``Route`` objects inside the app for the other methods."""
    devices = device_api.routes(container)
    return DeviceRoutes(build_starlette_app(container, devices), devices, container.metrics)


def build_starlette_app(container: Container, devices: list[Route] | None = None) -> Starlette:
    """Every API on one Starlette app; ``devices`` are the device API's routes, if built already."""
    return Starlette(
        routes=[
            # Devices first: their two requests per registration are the hot path, and the
            # router tries routes in order.
            *(device_api.routes(container) if devices is None else devices),
            *management.routes(container),
            *service_api.routes(container),
            *health.routes(container),
            *credential_policy.routes(container),
            *portal.routes(container),
        ],
        exception_handlers={404: _not_found, 405: _method_not_allowed},
        # The timer outside: a request's time includes the mapping of an unexpected error.
        middleware=[
            Middleware(RequestTimer, metrics=container.metrics),
            Middleware(UnexpectedErrors),
        ],
    )
