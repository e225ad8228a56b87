"""The responses the HTTPS server frames: the head of an app's response, and its own answers.

The server answers some requests without the app (400, 408, 413, 431, 500, 503, and 405 and
426 on a WebSocket path), with DPS's error body; which request heads it refuses is decided here
too. The app's own errors are the app's business.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from http import HTTPStatus

import h11

from devprov.core.error import (
    BodyTooLargeError,
    InternalError,
    MalformedRequestError,
    UnavailableError,
)
from devprov.http.asgi import Message
from devprov.http.cycle import split_target

# h11 sends an empty reason phrase unless given one; some clients print or log it.
REASONS = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}

# DPS error numbers are <HTTP status><3-digit sub-code> (core.error); 408 and 431 have no leaf
# there and get <status>000.
_ERROR_NUMBERS = {
    400: MalformedRequestError.number,
    413: BodyTooLargeError.number,
    500: InternalError.number,
    503: UnavailableError.number,
}


def decide_refusal(
    request: h11.Request, *, max_header_bytes: int, max_body_bytes: int
) -> tuple[int, str] | None:
    """The status and message the server answers ``request`` with itself, or None to run the app.

    Every refusal closes the connection (``connection._reject``).
    """
    if _head_size(request) > max_header_bytes:
        # h11 bounds only heads that arrive in pieces; one that came whole is checked here.
        return 431, "request head too large"
    names = {name for name, _ in request.headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        # RFC 9112 6.1: such a message may be a request smuggling attempt; the server may
        # refuse it and must close the connection afterwards either way. h11 would read it by
        # Transfer-Encoding and keep the connection.
        return 400, "a request may not carry both Content-Length and Transfer-Encoding"
    if split_target(request.target) is None:
        return 400, "the request target must be a path or an absolute http(s) URI"
    if (_content_length(request.headers) or 0) > max_body_bytes:
        return 413, f"request body exceeds {max_body_bytes} bytes"
    return None


def build_response_head(
    start: Message, body: bytes, *, more: bool, head: bool, close: bool
) -> h11.Response:
    """The head for the app's ``http.response.start``, sent with the first body part.

    ``body`` is that first part and ``more`` whether others follow: a body known whole is framed
    by Content-Length. ``head`` marks a HEAD request, ``close`` adds ``Connection: close``.
    """
    status = int(start["status"])
    headers: list[tuple[bytes, bytes]] = [(bytes(k), bytes(v)) for k, v in start.get("headers", ())]
    names = {name.lower() for name, _ in headers}
    framed = b"content-length" in names or b"transfer-encoding" in names
    if not (more or head or framed) and status >= 200 and status not in (204, 304):
        # Whole body known: frame it by length rather than let h11 pick chunked.
        headers.append((b"content-length", str(len(body)).encode("ascii")))
    if close:
        headers.append((b"connection", b"close"))
    return h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""))


def build_error_response(
    status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> list[h11.Event]:
    """A whole response with DPS's error body, closing the connection; ``headers`` are added
    (``Allow`` for 405, ``Upgrade`` for 426)."""
    body = _error_body(status, message)
    response = h11.Response(
        status_code=status,
        reason=REASONS.get(status, b""),
        headers=[
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
            *headers,
        ],
    )
    return [response, h11.Data(data=body), h11.EndOfMessage()]


def _error_body(status: int, message: str) -> bytes:
    """DPS's error body (errorCode, trackingId, message, timestampUtc); devices see no detail."""
    now = datetime.now(UTC)
    return json.dumps(
        {
            "errorCode": _ERROR_NUMBERS.get(status, status * 1000),
            "trackingId": str(uuid.uuid4()),
            "message": message,
            "timestampUtc": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
        },
        separators=(",", ":"),
    ).encode("utf-8")


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is one run of digits
    return None


def _head_size(request: h11.Request) -> int:
    # The request line and header lines as sent, give or take optional whitespace.
    size = len(request.method) + len(request.target) + 12
    return size + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())
