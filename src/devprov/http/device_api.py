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

from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devprov.bootstrap import Container
from devprov.core import document
from devprov.core.error import DevprovError
from devprov.device_request import Recorded, run_use_case
from devprov.http.error import dps_error_response, new_tracking_id
from devprov.http.request import case_insensitive, read_json, request_origin
from devprov.service.attestation import Credentials
from devprov.service.device_answer import (
    RETRY_AFTER_SECONDS,
    device_message,
    operation_status_body,
    register_answer,
    registration_request,
    status_lookup_request,
)
from devprov.service.refusal_log import Origin, Refusal


def credentials(request: Request) -> Credentials:
    tls = request.scope.get("extensions", {}).get("tls", {})
    chain = tuple(tls.get("devprov.client_chain_der") or ())
    return Credentials(chain_der=chain, authorization=request.headers.get("authorization"))


async def register(request: Request, c: Container, origin: Origin) -> Response:
    asked = registration_request(
        await read_json(request, required=False), request.path_params["rid"]
    )
    force = request.query_params.get("forceRegistration", "").lower() == "true"
    result = await run_use_case(
        c,
        c.devices.register,
        request.path_params["scope"],
        request.path_params["rid"],
        credentials(request),
        asked.payload,
        force=force,
        origin=origin,
        csr=asked.csr,
    )
    outcome = await c.decide(result, worker=run_in_threadpool)
    status, body = register_answer(
        outcome.operation, outcome.state, always_poll=c.always_poll, chain=outcome.issued_chain
    )
    if status != 202:
        return JSONResponse(body, status_code=status)
    return JSONResponse(
        body,
        status_code=202,
        headers={
            "Retry-After": str(RETRY_AFTER_SECONDS),
            "Location": str(request.url.replace(query="")),
        },
    )


async def operation_status(request: Request, c: Container, origin: Origin) -> Response:
    outcome = await run_use_case(
        c,
        c.devices.operation_status,
        request.path_params["scope"],
        request.path_params["rid"],
        request.path_params["operation"],
        credentials(request),
        origin=origin,
    )
    body = operation_status_body(outcome.operation, outcome.state, outcome.issued_chain)
    if outcome.operation.status == "assigning":
        return JSONResponse(
            body, status_code=202, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    return JSONResponse(body)


async def status_lookup(request: Request, c: Container, origin: Origin) -> Response:
    status_lookup_request(await read_json(request, required=False), request.path_params["rid"])
    state = await run_use_case(
        c,
        c.devices.status_lookup,
        request.path_params["scope"],
        request.path_params["rid"],
        credentials(request),
        origin=origin,
    )
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
        except (Recorded, DevprovError) as caught:
            if isinstance(caught, Recorded):
                exc = caught.error
            else:  # refused here, before or after the use case: the log has not seen it
                exc = caught
                await container.refuse(
                    Refusal(
                        action=action,
                        error=exc,
                        origin=origin,
                        registration_id=request.path_params.get("rid"),
                    ),
                )
            return dps_error_response(exc, tracking_id, message=device_message(exc))
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
