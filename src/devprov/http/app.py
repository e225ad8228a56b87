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
id (its traceback is logged at DEBUG): :class:`UnexpectedErrors`.
"""

from __future__ import annotations

import logging
import traceback

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devprov.bootstrap import Container
from devprov.core.error import InternalError, RouteNotFoundError
from devprov.http import device_api, health, management, service_api
from devprov.http.error import arm_error_response, dps_error_response, new_tracking_id
from devprov.http.metrics import RequestTimer
from devprov.portal import app as portal

log = logging.getLogger("devprov.http")


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
            tracking_id = new_tracking_id()
            log.error(  # noqa: TRY400 - one line; the traceback goes to DEBUG
                "unexpected error on %s %s (tracking %s): %s",
                scope["method"],
                scope["path"],
                tracking_id,
                _describe(exc),
            )
            log.debug("traceback of tracking %s", tracking_id, exc_info=exc)
            error = InternalError(
                f"an unexpected error occurred; the server log has it under tracking id {tracking_id}"
            )
            await dps_error_response(error, tracking_id)(scope, receive, send)


# An exception's message may quote a client's input at any length; the log line keeps this much.
MAX_LOGGED_MESSAGE = 500


def _describe(exc: BaseException) -> str:
    """``Type: message (at file:line in function)``, the innermost frame, on one line."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        where = f" (at {last.filename}:{last.lineno} in {last.name})"
    message = str(exc)
    if len(message) > MAX_LOGGED_MESSAGE:
        message = f"{message[:MAX_LOGGED_MESSAGE]}... ({len(message)} characters)"
    return f"{type(exc).__name__}: {message}{where}"


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
            *health.routes(container),
            *portal.routes(container),
        ],
        exception_handlers={404: _not_found, 405: _method_not_allowed},
        # The timer outside: a request's time includes the mapping of an unexpected error.
        middleware=[
            Middleware(RequestTimer, metrics=container.metrics),
            Middleware(UnexpectedErrors),
        ],
    )
