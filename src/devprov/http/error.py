"""The one mapping of devprov's error tree onto HTTP, and the two error bodies it speaks.

The management API is ARM's, so its errors take ARM's ``ErrorDetails`` shape
(docs/dps-wire.md#management-errors: ``code``, ``httpStatusCode``, ``message``, ``details``), plus
the OData ``error`` object that azure-core reads to build an exception message. The service and
device APIs are DPS's, whose errors carry ``errorCode``, ``trackingId``, ``message`` and
``timestampUtc`` (docs/dps-wire.md#service-error-body).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from http import HTTPStatus

from starlette.responses import JSONResponse

from devprov.core.error import STATUS as KIND_STATUS
from devprov.core.error import DevprovError, ErrorKind
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
