"""One request cycle of the HTTPS server, as the ASGI app sees it.

Owns the ``http`` scope built from h11's request (a request target in absolute form is routed
as its path, RFC 9112 3.2.2), the app's ``receive()`` (the request body, buffered up to a
high-water mark, then ``http.disconnect``) and ``send()`` (the response start held back until
the first body part), and running the app for the request within the handler timeout. Framing,
TLS and closing are the connection's (``devprov.http.connection``), reached through
:class:`Connection`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Protocol
from urllib.parse import unquote

import h11

from devprov.http.asgi import AsgiApp, Message, Scope

# The server's one logger: operators configure it by this name, whichever module logs.
logger = logging.getLogger("devprov.http.server")

# Body bytes buffered for an app that has not called receive() before reading pauses.
BODY_HIGH_WATER = 64 * 1024

# absolute-form (RFC 9112 3.2.2): scheme "://" authority, then the path and query, if any. Only
# the schemes HTTP has; the authority ends at the first "/", "?" or "#" (RFC 3986 3.2).
_ABSOLUTE_FORM = re.compile(rb"(?i:https?)://([^/?#]*)(.*)", re.DOTALL)


class ClientDisconnected(OSError):
    """send() after the connection closed (ASGI HTTP spec 2.4 asks for an OSError)."""


class Connection(Protocol):
    """What a cycle needs from the connection it runs on (``connection.HttpsConnection``)."""

    def pause_reading(self) -> None:
        """Stop reading from the socket: the app is not keeping up with the body."""

    def resume_reading(self) -> None:
        """Read from the socket again."""

    def send_continue(self) -> None:
        """The app wants the body: answer ``Expect: 100-continue`` if the client waits."""

    async def write_response(self, cycle: Cycle, start: Message, body: bytes, more: bool) -> None:
        """Send the head on the first call, then ``body``; the end too unless ``more``."""

    def app_failed(self, cycle: Cycle, *, timed_out: bool = False) -> None:
        """The app raised, returned without completing its response, or ran out of time."""


def split_target(target: bytes) -> tuple[bytes, bytes | None] | None:
    """The origin-form target (path and query) of a request target, and the authority it names
    in absolute form (None in origin form); None for any other form, which is not served.

    RFC 9112 3.2: a server must accept the absolute form (``https://host/path``) although
    clients send it only to proxies; the authority-form (CONNECT) and the asterisk-form
    (``OPTIONS *``) ask for what devprov does not do.
    """
    if target.startswith(b"/"):
        return target, None
    match = _ABSOLUTE_FORM.fullmatch(target)
    if match is None:
        return None
    authority, rest = match.groups()
    if not authority or rest.startswith(b"#"):
        return None
    return (rest if rest.startswith(b"/") else b"/" + rest), authority


def build_scope(
    request: h11.Request,
    *,
    client: tuple[str, int] | None,
    server: tuple[str, int] | None,
    state: dict[str, Any],
    tls: dict[str, Any],
) -> Scope:
    """The ASGI ``http`` scope (spec 2.4) for ``request``, with the ``tls`` extension.

    The target must have passed :func:`split_target`. In absolute form its authority replaces
    the Host header, as RFC 9112 3.2.2 asks, so that URLs the app builds name the right host.
    """
    target, authority = split_target(request.target) or (request.target, None)
    headers = list(request.headers)  # h11 lowercases the names
    if authority is not None:
        headers = [(name, value) for name, value in headers if name != b"host"]
        headers.append((b"host", authority))
    raw_path, _, query = target.partition(b"?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": request.http_version.decode("ascii"),
        "method": request.method.decode("ascii"),
        "scheme": "https",
        "path": unquote(raw_path.decode("ascii")),  # h11 admits only ASCII targets
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": server,
        "state": state,
        "extensions": {"tls": dict(tls)},
    }


class Cycle:
    """One request and its response, as the app sees them through receive() and send()."""

    __slots__ = (
        "_body",
        "_buffered",
        "_connection",
        "_event",
        "_finished",
        "_more_body",
        "_start",
        "disconnected",
        "head",
        "head_sent",
        "received",
        "response_complete",
    )

    def __init__(self, connection: Connection, *, head: bool) -> None:
        self._connection = connection
        self._body: list[bytes] = []
        self._buffered = 0
        self._more_body = True
        self._finished = False
        self._event = asyncio.Event()
        self._start: Message | None = None
        self.head = head
        self.head_sent = self.response_complete = self.disconnected = False
        self.received = 0

    # --- the connection's side ----------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue request body bytes for receive()."""
        self._body.append(data)
        self._buffered += len(data)
        self._event.set()
        if self._buffered > BODY_HIGH_WATER:
            self._connection.pause_reading()

    def end_body(self) -> None:
        """The request body is complete."""
        self._more_body = False
        self._event.set()

    def disconnect(self) -> None:
        """The client is gone, or the response can no longer be sent: receive() says so."""
        self.disconnected = True
        self._event.set()

    def complete(self) -> None:
        """The whole response has been written."""
        self.response_complete = True
        self._event.set()

    async def run(self, app: AsgiApp, scope: Scope, *, timeout: float | None = None) -> None:
        """Call the app for this request; tell the connection if it fails to answer.

        The app is cancelled after ``timeout`` seconds (the handler timeout); it can only be
        cancelled where it awaits, so a handler blocking the event loop runs to its end first.
        """
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                await app(scope, self.receive, self.send)
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError) and deadline.expired()
            if self.disconnected:
                logger.debug("ASGI app raised after its client went away", exc_info=True)
            elif timed_out:
                logger.warning(
                    "%s %s was not answered within %g s (the handler timeout): cancelled",
                    scope["method"],
                    scope["path"],
                    timeout,
                )
            else:
                logger.exception("ASGI app raised on %s %r", scope["method"], scope["path"])
            self._connection.app_failed(self, timed_out=timed_out)
            return
        if not self.response_complete and not self.disconnected:
            logger.error("ASGI app returned without completing its response")
            self._connection.app_failed(self)

    # --- the app's side -----------------------------------------------------------------------

    async def receive(self) -> Message:
        while not (self.disconnected or self.response_complete):
            if self._body or not (self._more_body or self._finished):
                body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
                self._body = []
                self._buffered = 0
                self._finished = not self._more_body
                self._connection.resume_reading()
                return {"type": "http.request", "body": body, "more_body": self._more_body}
            if self._more_body:
                self._connection.send_continue()
            self._event.clear()
            await self._event.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.disconnected:
            raise ClientDisconnected("the client disconnected")
        kind = message["type"]
        if kind == "http.response.start" and self._start is None:
            self._start = message  # sent with the first body part: one record, one write
        elif kind == "http.response.body" and self._start is not None:
            if self.response_complete:
                raise RuntimeError("the response is already complete")
            await self._connection.write_response(
                self, self._start, message.get("body", b""), message.get("more_body", False)
            )
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
