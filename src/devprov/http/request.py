"""Reading requests: bounded JSON bodies, bearer tokens, api-version, case-insensitive routes."""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from devprov.core.error import (
    BodyTooLargeError,
    DevprovError,
    MalformedRequestError,
    MissingCredentialsError,
    NotFoundError,
)
from devprov.core.json_text import parse_json

# DPS's maximum message size (docs/dps-wire.md#limits-and-quotas). The HTTPS server refuses larger
# bodies before the app sees them; this guard covers other servers and chunked bodies.
MAX_BODY_BYTES = 96 * 1024


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BodyTooLargeError(f"the request body exceeds {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLargeError(f"the request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, required: bool = True) -> Any:
    body = await read_body(request)
    if not body.strip():
        if required:
            raise MalformedRequestError("the request needs a JSON body")
        return None
    return parse_json(body)  # bounded nesting: core.json_text


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise MissingCredentialsError("the request has no Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingCredentialsError("the Authorization header must be 'Bearer <admin token>'")
    return token.strip()


def api_version(request: Request) -> str | None:
    """Recorded, never required: every client pins a different one
    (docs/sdk-clients.md#management-sdk-pointing-it-at-a-local-server)."""
    for key, value in request.query_params.multi_items():
        if key.lower() == "api-version":
            return value
    return None


def case_insensitive(routes: list[Route]) -> list[Route]:
    """ARM and DPS paths match case-insensitively
    (docs/dps-wire.md#service-host-api-versions-and-headers)."""
    for route in routes:
        route.path_regex = re.compile(route.path_regex.pattern, re.IGNORECASE)
    return routes


def log_refusal(
    log: logging.Logger, request: Request, error: DevprovError, tracking_id: str
) -> None:
    """One line per refused request: what, why, and the id the client was given.

    The use cases log what succeeded, never what they refused, so this is the only line a
    refusal gets. A read of something that does not exist is no refusal an operator needs to
    see (the CLI asks for a certificate before it uploads one): DEBUG.
    """
    level = logging.INFO
    if isinstance(error, NotFoundError) and request.method in ("GET", "HEAD"):
        level = logging.DEBUG
    log.log(
        level,
        "%s %s -> %s %s (api-version %s, tracking %s)",
        request.method,
        request.url.path,
        error.code,
        error.message,
        api_version(request),
        tracking_id,
    )
