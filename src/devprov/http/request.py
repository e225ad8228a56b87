"""Reading requests: bounded JSON bodies, bearer tokens, api-version, case-insensitive routes."""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from devprov.bootstrap import Container
from devprov.core.error import (
    AuthenticationError,
    BodyTooLargeError,
    DevprovError,
    MalformedRequestError,
    MissingCredentialsError,
    NotFoundError,
)
from devprov.core.json_text import parse_json
from devprov.service.refusal_log import Origin, Refusal

# The most of a request path a log line shows. DPS's paths are under 300 characters (a 128-character
# registration id, an ID scope, an operation id); a longer one is a client's, shortened with its
# length rather than written to the log in full.
MAX_LOGGED_PATH = 300

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
        shown_path(request.url.path),
        error.code,
        error.message,
        shown_path(api_version(request) or "None"),
        tracking_id,
    )


def shown_path(path: str) -> str:
    """``path`` for a log line: whole up to MAX_LOGGED_PATH characters, else cut, with its length."""
    if len(path) <= MAX_LOGGED_PATH:
        return path
    return f"{path[:MAX_LOGGED_PATH]}... ({len(path)} characters)"


def request_origin(request: Request, tracking_id: str) -> Origin:
    """Who asked what, for the refusal log (service.refusal_log), in log_refusal's words."""
    version = api_version(request)
    return Origin(
        address=request.client.host if request.client else None,
        request=f"{request.method} {shown_path(request.url.path)}",
        context=f"api-version {shown_path(version) if version else None}, tracking {tracking_id}",
        read=request.method in ("GET", "HEAD"),
    )


async def log_api_refusal(
    container: Container,
    log: logging.Logger,
    request: Request,
    error: DevprovError,
    tracking_id: str,
    *,
    action: str,
) -> None:
    """The log line of a refused service or management API request. One that failed
    authentication is anybody's, and goes to the refusal log, which limits how many such lines a
    client can cause; a refusal of an authenticated caller is logged in full (log_refusal)."""
    if isinstance(error, AuthenticationError):
        await container.refuse(
            Refusal(action=action, error=error, origin=request_origin(request, tracking_id))
        )
    else:
        log_refusal(log, request, error, tracking_id)
