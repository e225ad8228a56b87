"""The device API's three routes, answered before the Starlette app.

A device's requests are the server's hot path, and on their way through the Starlette app they
crossed five middleware layers, the router and two exception wrappers, each wrapping ``send``
again: 20-30 µs of CPU per request, about a seventh of the app's share of a registration
(docs/performance.md#the-device-path-outside-the-use-case). :class:`DeviceRoutes` matches a
request against the device API's own ``Route`` objects (so the paths, their case-insensitivity,
``HEAD`` beside ``GET`` and the path parameters are Starlette's own) and calls the endpoint
itself, doing inline what the app's middleware would have done for it: the request's time in
the metrics (``metrics.RequestTimer``) and DPS's 500 with one log line for an exception no
handler expected (``app.UnexpectedErrors``). Everything else, a device route's path with
another method included (Starlette answers that 405 after trying the other routes), goes to the
app untouched.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from starlette.requests import Request
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devprov.http.error import unexpected_error_response
from devprov.http.metrics import api_of
from devprov.service.port import Metrics


class DeviceRoutes:
    """ASGI: the device routes' endpoints called directly; every other request goes to ``app``."""

    def __init__(self, app: ASGIApp, routes: Sequence[Route], metrics: Metrics) -> None:
        self.app = app
        self._routes = tuple(routes)
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self._routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope["app"] = self.app  # as Starlette.__call__ sets it
                    scope.update(child)
                    await self._serve(route, scope, receive, send)
                    return
                if match is Match.PARTIAL:  # another method: the app's router decides
                    break
        await self.app(scope, receive, send)

    async def _serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        """The endpoint's response, timed; an exception before the response began gets DPS's
        500, one after it goes on to the server, which cuts the response."""
        started = time.monotonic()
        status = 500  # metrics.RequestTimer's figure for a request that never answered
        began = False

        async def sent(message: Message) -> None:
            nonlocal status, began
            if message["type"] == "http.response.start":
                status, began = int(message["status"]), True
            await send(message)

        try:
            try:
                response = await route.endpoint(Request(scope, receive, send))
                await response(scope, receive, sent)
            except Exception as exc:
                if began:
                    raise
                await unexpected_error_response(exc, scope)(scope, receive, sent)
        finally:
            self._metrics.observe_request(api_of(scope["path"]), status, time.monotonic() - started)
