"""The DPS service API: enrollments, enrollment groups and registration states
(docs/dps-wire.md#service-api).

Paths as DPS has them, matched case-insensitively; any api-version; DPS's shared access
signatures with per-policy rights; DPS's error body on every failure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devprov.bootstrap import Container
from devprov.core import document
from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import DevprovError, MalformedRequestError
from devprov.core.sas import Right
from devprov.http.error import dps_error_response, new_tracking_id
from devprov.http.request import case_insensitive, log_api_refusal, read_json
from devprov.service.access import Caller

log = logging.getLogger("devprov.http.service")

Handler = Callable[[Request, Container, Caller], Awaitable[Response]]

ITEM_TYPES = {
    EnrollmentKind.INDIVIDUAL: "Enrollment",
    EnrollmentKind.GROUP: "EnrollmentGroup",
}


def _kind(request: Request) -> EnrollmentKind:
    segment = request.url.path.strip("/").split("/", 1)[0].lower()
    return EnrollmentKind.INDIVIDUAL if segment == "enrollments" else EnrollmentKind.GROUP


def _max_items(request: Request) -> int | None:
    value = request.headers.get("x-ms-max-item-count")
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise MalformedRequestError("x-ms-max-item-count must be a number") from exc


def _page(
    items: list[dict[str, Any]], continuation: str | None, item_type: str, max_items: int | None
) -> Response:
    headers = {"x-ms-item-type": item_type}
    if continuation:
        headers["x-ms-continuation"] = continuation
    if max_items is not None:
        headers["x-ms-max-item-count"] = str(max_items)
    return JSONResponse(items, headers=headers)


async def get_enrollment(request: Request, c: Container, caller: Caller) -> Response:
    caller.require(Right.ENROLLMENT_READ)
    kind, id = _kind(request), request.path_params["id"]
    record = await c.storage.run(c.enrollments.get, caller.service, kind, id)
    state = None
    if kind is EnrollmentKind.INDIVIDUAL:
        state = await c.storage.run(c.registration_states.find, caller.service, id)
    return JSONResponse(document.enrollment(record, state=state))


async def put_enrollment(request: Request, c: Container, caller: Caller) -> Response:
    caller.require(Right.ENROLLMENT_WRITE)
    body = await read_json(request)
    change = await c.storage.run(
        c.enrollments.write,
        caller.service,
        _kind(request),
        request.path_params["id"],
        body,
        if_match=request.headers.get("if-match"),
        actor=caller.actor,
    )
    record = change.record
    if change.disabled:
        plan = await c.storage.run(
            c.hub_sync.for_enrollment, caller.service, record.kind, record.id, deleted=False
        )
        await c.change_hubs(plan, actor=caller.actor)
    # Azure answers a PUT with the record's keys, the generated ones included; a GET or a query
    # leaves them out (docs/dps-wire.md#symmetric-keys-in-answers).
    return JSONResponse(document.enrollment(record, with_keys=True))


async def delete_enrollment(request: Request, c: Container, caller: Caller) -> Response:
    caller.require(Right.ENROLLMENT_WRITE)
    kind, id = _kind(request), request.path_params["id"]
    await c.storage.run(
        c.enrollments.delete,
        caller.service,
        kind,
        id,
        if_match=request.headers.get("if-match"),
        actor=caller.actor,
    )
    plan = await c.storage.run(c.hub_sync.for_enrollment, caller.service, kind, id, deleted=True)
    await c.change_hubs(plan, actor=caller.actor)
    return Response(status_code=204)


async def attestation_mechanism(request: Request, c: Container, caller: Caller) -> Response:
    caller.require(Right.ENROLLMENT_READ)
    kind = _kind(request)
    value = await c.storage.run(
        c.enrollments.attestation_mechanism, caller.service, kind, request.path_params["id"]
    )
    return JSONResponse(document.attestation(value, kind, with_keys=True))


async def query_enrollments(request: Request, c: Container, caller: Caller) -> Response:
    caller.require(Right.ENROLLMENT_READ)
    kind = _kind(request)
    body = await read_json(request, required=False)
    max_items = _max_items(request)
    page = await c.storage.run(
        c.enrollments.query,
        caller.service,
        kind,
        body if body is not None else "*",
        continuation=request.headers.get("x-ms-continuation"),
        max_items=max_items,
    )
    return _page(
        [document.enrollment(e) for e in page.items], page.continuation, ITEM_TYPES[kind], max_items
    )


async def bulk(request: Request, c: Container, caller: Caller) -> Response:
    caller.require(Right.ENROLLMENT_WRITE)
    kind = _kind(request)
    body = await read_json(request)
    result = await c.storage.run(c.enrollments.bulk, caller.service, kind, body, actor=caller.actor)
    id_field = "registrationId" if kind is EnrollmentKind.INDIVIDUAL else "enrollmentGroupId"
    return JSONResponse(
        {
            "isSuccessful": result.is_successful,
            "errors": [
                {id_field: e.id, "errorCode": e.error_code, "errorStatus": e.error_status}
                for e in result.errors
            ],
        }
    )


async def get_registration(request: Request, c: Container, caller: Caller) -> Response:
    caller.require(Right.REGISTRATION_STATUS_READ)
    state = await c.storage.run(
        c.registration_states.get, caller.service, request.path_params["id"]
    )
    return JSONResponse(document.registration_state(state))


async def delete_registration(request: Request, c: Container, caller: Caller) -> Response:
    caller.require(Right.REGISTRATION_STATUS_WRITE)
    state = await c.storage.run(
        c.registration_states.delete,
        caller.service,
        request.path_params["id"],
        if_match=request.headers.get("if-match"),
        actor=caller.actor,
    )
    # devprov's own parameter (DPS has none): also delete the device's identity from an IoT
    # hub; a Mosquitto client is removed either way (docs/hubs.md#disabling-and-deleting).
    delete_identity = request.query_params.get("deleteIdentity", "").lower() == "true"
    plan = await c.storage.run(c.hub_sync.for_registration, state, delete_identity=delete_identity)
    await c.change_hubs(plan, actor=caller.actor)
    return Response(status_code=204)


async def query_registrations(request: Request, c: Container, caller: Caller) -> Response:
    caller.require(Right.REGISTRATION_STATUS_READ)
    body = await read_json(request, required=False)
    max_items = _max_items(request)
    page = await c.storage.run(
        c.registration_states.query,
        caller.service,
        request.path_params["id"],
        body if body is not None else "*",
        continuation=request.headers.get("x-ms-continuation"),
        max_items=max_items,
    )
    return _page(
        [document.registration_state(s) for s in page.items],
        page.continuation,
        "DeviceRegistration",
        max_items,
    )


def host_names(request: Request, c: Container) -> set[str]:
    """The names a service token's ``sr`` may carry: the Host header and the certificate's names."""
    names = {name.lower() for name in c.server_names}
    host = request.headers.get("host", "").lower()
    if host:
        names.add(host)
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    if port:
        names |= {f"{name}:{port}" for name in list(names) if ":" not in name}
    return names


def _endpoint(handler: Handler, container: Container) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        tracking_id = new_tracking_id()
        try:
            caller = await container.storage.run(
                container.access.authenticate,
                request.headers.get("authorization"),
                host_names(request, container),
            )
            response = await handler(request, container, caller)
        except DevprovError as exc:
            await log_api_refusal(container, log, request, exc, tracking_id, action="serviceApi")
            return dps_error_response(exc, tracking_id)
        response.headers["x-ms-request-id"] = tracking_id
        return response

    return endpoint


def routes(container: Container) -> list[Route]:
    table: list[tuple[str, Handler, str]] = []
    for collection in ("/enrollments", "/enrollmentGroups"):
        table += [
            (collection + "/query", query_enrollments, "POST"),
            (collection, bulk, "POST"),
            (collection + "/", bulk, "POST"),
            (collection + "/{id}", get_enrollment, "GET"),
            (collection + "/{id}", put_enrollment, "PUT"),
            (collection + "/{id}", delete_enrollment, "DELETE"),
            (collection + "/{id}/attestationmechanism", attestation_mechanism, "POST"),
        ]
    table += [
        ("/registrations/{id}", get_registration, "GET"),
        ("/registrations/{id}", delete_registration, "DELETE"),
        ("/registrations/{id}/query", query_registrations, "POST"),
    ]
    return case_insensitive(
        [Route(path, _endpoint(h, container), methods=[m]) for path, h, m in table]
    )
