"""The DPS device API over HTTPS: register, operation status, status lookup
(docs/dps-wire.md#https-register-operation-status-and-status-lookup).

X.509 devices authenticate with the TLS client chain the HTTPS server hands over in the ASGI
scope (``extensions.tls["devprov.client_chain_der"]``, leaf first); symmetric-key devices with a
registration SAS token. A device that fails attestation gets DPS's generic answer (401002
"Invalid certificate" or 401000 "Unauthorized"); the precise reason goes to the log and the
audit trail.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devprov.bootstrap import Container
from devprov.core import document
from devprov.core.error import (
    AuthenticationError,
    DevprovError,
    InvalidInputError,
    MalformedRequestError,
)
from devprov.core.registration import RegistrationState, device_error
from devprov.http.error import dps_error_response, new_tracking_id
from devprov.http.request import case_insensitive, log_refusal, read_json
from devprov.service.attestation import Credentials, DeviceAttestationError
from devprov.service.device import WebhookCall
from devprov.service.model import Operation

log = logging.getLogger("devprov.http.device")

# The poll delay devprov suggests. The outcome is decided during the register call, so the first
# poll already sees it; Node's transport honours this header, Python's waits 2 s regardless
# (docs/sdk-clients.md#python-device-statuses-polling-and-timeouts,
# docs/sdk-clients.md#node-device-http-transport).
RETRY_AFTER_SECONDS = 1


class TpmNotSupportedError(InvalidInputError):
    """A device asked for TPM attestation, which devprov does not support."""

    code = "TpmNotSupported"
    number = 400430


def operation_status_body(operation: Operation, state: RegistrationState | None) -> dict[str, Any]:
    body: dict[str, Any] = {"operationId": operation.id, "status": operation.status}
    if state is not None and operation.status != "assigning":
        result = document.registration_result(state)
        result["status"] = operation.status
        if operation.error_code is not None:
            # What a device is shown; the precise reason is the operator's (GET /registrations,
            # the audit trail, the log).
            result["errorCode"], result["errorMessage"] = device_error(
                operation.error_code, operation.error_message
            )
        body["registrationState"] = result
    return body


def credentials(request: Request) -> Credentials:
    tls = request.scope.get("extensions", {}).get("tls", {})
    chain = tuple(tls.get("devprov.client_chain_der") or ())
    return Credentials(chain_der=chain, authorization=request.headers.get("authorization"))


async def _registration_body(request: Request) -> Mapping[str, Any] | None:
    body = await read_json(request, required=False)
    if body is None:
        return None
    if not isinstance(body, dict):
        raise MalformedRequestError("the body must be a DeviceRegistration object")
    given = body.get("registrationId")
    if given is not None and (
        not isinstance(given, str) or given.lower() != request.path_params["rid"].lower()
    ):
        raise MalformedRequestError("'registrationId' in the body differs from the one in the path")
    if body.get("tpm"):
        raise TpmNotSupportedError(
            "devprov does not support TPM attestation; use X.509 or a symmetric key"
        )
    payload = body.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise MalformedRequestError("'payload' must be a JSON object")
    return payload


async def register(request: Request, c: Container) -> Response:
    payload = await _registration_body(request)
    force = request.query_params.get("forceRegistration", "").lower() == "true"
    # Only the webhook, a network call of up to WEBHOOK_DEADLINE_SECONDS, leaves the event loop
    # (see http.app for why the rest runs on it).
    result = c.devices.register(
        request.path_params["scope"],
        request.path_params["rid"],
        credentials(request),
        payload,
        force=force,
    )
    if isinstance(result, WebhookCall):
        try:
            answer: object = await run_in_threadpool(c.webhook.call, result.url, result.body)
        except DevprovError as exc:
            answer = exc
        outcome = c.devices.complete(result, answer)
    else:
        outcome = result
    return JSONResponse(
        {"operationId": outcome.operation.id, "status": "assigning"},
        status_code=202,
        headers={
            "Retry-After": str(RETRY_AFTER_SECONDS),
            "Location": str(request.url.replace(query="")),
        },
    )


async def operation_status(request: Request, c: Container) -> Response:
    outcome = c.devices.operation_status(
        request.path_params["scope"],
        request.path_params["rid"],
        request.path_params["operation"],
        credentials(request),
    )
    body = operation_status_body(outcome.operation, outcome.state)
    if outcome.operation.status == "assigning":
        return JSONResponse(
            body, status_code=202, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    return JSONResponse(body)


async def status_lookup(request: Request, c: Container) -> Response:
    await _registration_body(request)
    state = c.devices.status_lookup(
        request.path_params["scope"],
        request.path_params["rid"],
        credentials(request),
    )
    return JSONResponse(document.registration_result(state))


def _endpoint(
    handler: Callable[[Request, Container], Awaitable[Response]], container: Container
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        tracking_id = new_tracking_id()
        try:
            response = await handler(request, container)
        except DevprovError as exc:
            log_refusal(log, request, exc, tracking_id)  # the precise reason, for the operator
            generic = None
            if isinstance(exc, AuthenticationError):
                generic = (
                    "Invalid certificate"
                    if isinstance(exc, DeviceAttestationError)
                    else "Unauthorized"
                )
            return dps_error_response(exc, tracking_id, message=generic)
        response.headers["x-ms-request-id"] = tracking_id
        return response

    return endpoint


def routes(container: Container) -> list[Route]:
    table: list[tuple[str, Callable[[Request, Container], Awaitable[Response]], str]] = [
        ("/{scope}/registrations/{rid}/register", register, "PUT"),
        ("/{scope}/registrations/{rid}/operations/{operation}", operation_status, "GET"),
        ("/{scope}/registrations/{rid}", status_lookup, "POST"),
    ]
    return case_insensitive(
        [Route(path, _endpoint(h, container), methods=[m]) for path, h, m in table]
    )
