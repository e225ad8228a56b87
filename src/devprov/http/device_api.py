"""The DPS device API over HTTPS: register, operation status, status lookup
(docs/dps-wire.md#https-register-operation-status-and-status-lookup).

X.509 devices authenticate with the TLS client chain the HTTPS server hands over in the ASGI
scope (``extensions.tls["devprov.client_chain_der"]``, leaf first); symmetric-key devices with a
registration SAS token. A device that fails attestation gets DPS's generic answer (401002
"Invalid certificate" or 401000 "Unauthorized"); the precise reason goes to the log and the
audit trail, through the refusal log (service.refusal_log), which every refusal of this API
reaches once: from the use case for what it refuses, from here for the rest.
"""

from __future__ import annotations

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
from devprov.http.request import case_insensitive, read_json, request_origin
from devprov.service.attestation import Credentials, DeviceAttestationError
from devprov.service.device import WebhookCall
from devprov.service.model import Operation
from devprov.service.refusal_log import Origin, Refusal

# The poll delay devprov suggests. The outcome is decided during the register call, so the first
# poll already sees it; Node's transport honours this header, Python's waits 2 s regardless
# (docs/sdk-clients.md#python-device-statuses-polling-and-timeouts,
# docs/sdk-clients.md#node-device-http-transport).
RETRY_AFTER_SECONDS = 1


class _Recorded(Exception):
    """A refusal the use case has logged (and audited) already; the endpoint only answers it."""

    def __init__(self, error: DevprovError) -> None:
        super().__init__(error.message)
        self.error = error


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


async def register(request: Request, c: Container, origin: Origin) -> Response:
    payload = await _registration_body(request)
    force = request.query_params.get("forceRegistration", "").lower() == "true"
    # Only the webhook, a network call of up to WEBHOOK_DEADLINE_SECONDS, leaves the event loop
    # (see http.app for why the rest runs on it).
    try:
        result = c.devices.register(
            request.path_params["scope"],
            request.path_params["rid"],
            credentials(request),
            payload,
            force=force,
            origin=origin,
        )
    except DevprovError as exc:
        raise _Recorded(exc) from exc
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


async def operation_status(request: Request, c: Container, origin: Origin) -> Response:
    try:
        outcome = c.devices.operation_status(
            request.path_params["scope"],
            request.path_params["rid"],
            request.path_params["operation"],
            credentials(request),
            origin=origin,
        )
    except DevprovError as exc:
        raise _Recorded(exc) from exc
    body = operation_status_body(outcome.operation, outcome.state)
    if outcome.operation.status == "assigning":
        return JSONResponse(
            body, status_code=202, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    return JSONResponse(body)


async def status_lookup(request: Request, c: Container, origin: Origin) -> Response:
    await _registration_body(request)
    try:
        state = c.devices.status_lookup(
            request.path_params["scope"],
            request.path_params["rid"],
            credentials(request),
            origin=origin,
        )
    except DevprovError as exc:
        raise _Recorded(exc) from exc
    return JSONResponse(document.registration_result(state))


Handler = Callable[[Request, Container, Origin], Awaitable[Response]]


def _endpoint(
    action: str, handler: Handler, container: Container
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        tracking_id = new_tracking_id()
        origin = request_origin(request, tracking_id)
        try:
            response = await handler(request, container, origin)
        except (_Recorded, DevprovError) as caught:
            if isinstance(caught, _Recorded):
                exc = caught.error
            else:  # refused here, before or after the use case: the log has not seen it
                exc = caught
                container.refusals.refused(
                    Refusal(
                        action=action,
                        error=exc,
                        origin=origin,
                        registration_id=request.path_params.get("rid"),
                    )
                )
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
    table: list[tuple[str, str, Handler, str]] = [
        ("/{scope}/registrations/{rid}/register", "register", register, "PUT"),
        (
            "/{scope}/registrations/{rid}/operations/{operation}",
            "operationStatus",
            operation_status,
            "GET",
        ),
        ("/{scope}/registrations/{rid}", "statusLookup", status_lookup, "POST"),
    ]
    return case_insensitive(
        [Route(path, _endpoint(a, h, container), methods=[m]) for path, a, h, m in table]
    )
