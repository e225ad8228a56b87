"""The one mapping of devprov's error tree onto HTTP, and the two error bodies it speaks.

The management API is ARM's, so its errors take ARM's ``ErrorDetails`` shape
(docs/dps-wire.md#management-errors: ``code``, ``httpStatusCode``, ``message``, ``details``), plus
the OData ``error`` object that azure-core reads to build an exception message. The service and
device APIs are DPS's, whose errors carry ``errorCode``, ``trackingId``, ``message`` and
``timestampUtc`` (docs/dps-wire.md#service-error-body).
"""

from __future__ import annotations

import logging
import traceback
import uuid
from datetime import UTC, datetime
from http import HTTPStatus

from starlette.responses import JSONResponse
from starlette.types import Scope

from devprov.core.error import STATUS as KIND_STATUS
from devprov.core.error import DevprovError, ErrorKind, InternalError
from devprov.service.device_answer import error_body, retry_after_of
from devprov.service.request_context import request_id

log = logging.getLogger("devprov.http")

# devprov.core.error.STATUS as HTTP statuses.
STATUS: dict[ErrorKind, HTTPStatus] = {kind: HTTPStatus(code) for kind, code in KIND_STATUS.items()}


def new_tracking_id() -> str:
    """A fresh tracking id for the request being served, which the log's lines name from now on
    (``--log-format json``'s ``request_id``)."""
    tracking_id = str(uuid.uuid4())
    request_id.set(tracking_id)
    return tracking_id


def _headers(error: DevprovError, status: HTTPStatus, tracking_id: str) -> dict[str, str]:
    headers = {"x-ms-error-code": str(error.number), "x-ms-request-id": tracking_id}
    if status is HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="devprov"'
    retry_after = retry_after_of(error)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return headers


def arm_error_response(error: DevprovError, tracking_id: str) -> JSONResponse:
    status = STATUS[error.kind]
    message = error.message
    if status is HTTPStatus.PRECONDITION_FAILED:
        # Azure's own wording ends with the error code (Azure/azure-cli #13098).
        message = f"{message}. errorcode: {error.code}."
    body = {
        "code": error.number,
        "httpStatusCode": status.phrase.replace(" ", ""),
        "message": message,
        "details": f"{error.code}; trackingId {tracking_id}",
        "error": {"code": error.code, "message": message},
    }
    return JSONResponse(body, status_code=status, headers=_headers(error, status, tracking_id))


def dps_error_response(
    error: DevprovError, tracking_id: str, *, message: str | None = None
) -> JSONResponse:
    """DPS's error body. ``message`` replaces the precise one where the caller is a device."""
    status = STATUS[error.kind]
    body = error_body(error, tracking_id, datetime.now(UTC), message=message)
    return JSONResponse(body, status_code=status, headers=_headers(error, status, tracking_id))


# An exception's message may quote a client's input at any length; the log line keeps this much.
MAX_LOGGED_MESSAGE = 500


def unexpected_error_response(exc: Exception, scope: Scope) -> JSONResponse:
    """DPS's 500 with a fresh tracking id for an exception no handler expected, after its one
    log line at ERROR (the traceback goes to DEBUG)."""
    tracking_id = new_tracking_id()
    log.error(  # one line; the traceback goes to DEBUG
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
    return dps_error_response(error, tracking_id)


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
