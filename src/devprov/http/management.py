"""The ARM-compatible management API for the certificate registry
(docs/dps-wire.md#management-api-arm).

Paths follow ARM: ``/subscriptions/{any}/resourceGroups/{any}/providers/Microsoft.Devices/
provisioningServices/{service}/certificates[/{name}[/generateVerificationCode|/verify]]``.
The subscription and resource group are accepted and echoed, never checked: a local installation
has neither.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devprov.bootstrap import Container
from devprov.core.certificate import resource_subject, to_pem
from devprov.core.error import DevprovError, InvalidCredentialsError, MalformedRequestError
from devprov.core.etag import format_etag
from devprov.http.error import arm_error_response, new_tracking_id
from devprov.http.request import (
    api_version,
    bearer_token,
    case_insensitive,
    log_api_refusal,
    read_json,
)
from devprov.service.model import CertificateRecord

log = logging.getLogger("devprov.http.management")

PREFIX = (
    "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Devices"
    "/provisioningServices/{service}/certificates"
)
RESOURCE_TYPE = "Microsoft.Devices/provisioningServices/Certificates"
ADMIN_ACTOR = "admin"

Handler = Callable[[Request, Container], Awaitable[Response]]


def _rfc1123(value: Any) -> str:
    return format_datetime(value, usegmt=True)


def certificate_body(
    request: Request, record: CertificateRecord, *, code: bool = False
) -> dict[str, Any]:
    """The certificate resource, field by field as the real service answers
    (docs/management-answers.md#certificate-answers-as-recorded).

    ``properties.certificate`` is null in every answer but generateVerificationCode's, which
    carries the certificate; the SDKs base64-decode that field, so it is base64 of the PEM text.
    """
    facts = record.facts
    params = request.path_params
    resource_id = (
        f"/subscriptions/{params['subscription']}/resourceGroups/{params['group']}"
        f"/providers/Microsoft.Devices/provisioningServices/{record.service}/certificates/{record.name}"
    )
    properties: dict[str, Any] = {"verificationCode": record.codes.current} if code else {}
    properties.update(
        {
            "subject": resource_subject(facts),
            "expiry": _rfc1123(facts.not_after),
            "thumbprint": facts.thumbprint,
            "isVerified": record.is_verified,
            "created": _rfc1123(record.created_at),
            "updated": _rfc1123(record.updated_at),
            "certificate": _base64_pem(record) if code else None,
        }
    )
    return {
        "properties": properties,
        "id": resource_id,
        "name": record.name,
        "type": RESOURCE_TYPE,
        "etag": record.etag,
    }


def _base64_pem(record: CertificateRecord) -> str:
    return base64.b64encode(to_pem(record.certificate).encode("ascii")).decode("ascii")


def _respond(body: dict[str, Any] | list[Any], etag: str | None = None) -> JSONResponse:
    headers = {"ETag": format_etag(etag)} if etag else None
    return JSONResponse(body, headers=headers)


def _certificate_field(body: Any) -> tuple[str, bool]:
    """Both body shapes: ``{"certificate", "isVerified"}`` and ``{"properties": {...}}``."""
    if not isinstance(body, dict):
        raise MalformedRequestError("the request body must be a JSON object")
    properties = body.get("properties")
    fields: dict[str, Any] = properties if isinstance(properties, dict) else body
    certificate = fields.get("certificate")
    if not isinstance(certificate, str) or not certificate.strip():
        raise MalformedRequestError(
            "the body needs 'certificate' (PEM text, base64 of PEM or DER, or base64 of base64 "
            "of DER), at the top level or under 'properties'"
        )
    verified = fields.get("isVerified", False)
    if verified is None:
        verified = False
    if not isinstance(verified, bool):
        raise MalformedRequestError("'isVerified' must be true or false")
    return certificate, verified


async def put_certificate(request: Request, c: Container) -> Response:
    certificate, verified = _certificate_field(await read_json(request))
    record = await c.storage.run(
        c.registry.upload,
        request.path_params["service"],
        request.path_params["name"],
        certificate,
        is_verified=verified,
        if_match=request.headers.get("if-match"),
        actor=ADMIN_ACTOR,
        api_version=api_version(request),
    )
    return _respond(certificate_body(request, record), record.etag)


async def get_certificate(request: Request, c: Container) -> Response:
    record = await c.storage.run(
        c.registry.get, request.path_params["service"], request.path_params["name"]
    )
    return _respond(certificate_body(request, record), record.etag)


async def list_certificates(request: Request, c: Container) -> Response:
    records = await c.storage.run(c.registry.list, request.path_params["service"])
    return _respond({"value": [certificate_body(request, record) for record in records]})


async def delete_certificate(request: Request, c: Container) -> Response:
    await c.storage.run(
        c.registry.delete,
        request.path_params["service"],
        request.path_params["name"],
        if_match=request.headers.get("if-match"),
        actor=ADMIN_ACTOR,
        api_version=api_version(request),
    )
    return Response(status_code=200)


async def generate_code(request: Request, c: Container) -> Response:
    record = await c.storage.run(
        c.registry.generate_code,
        request.path_params["service"],
        request.path_params["name"],
        if_match=request.headers.get("if-match"),
        actor=ADMIN_ACTOR,
        api_version=api_version(request),
    )
    return _respond(certificate_body(request, record, code=True), record.etag)


async def verify_certificate(request: Request, c: Container) -> Response:
    body = await read_json(request)
    proof = body.get("certificate") if isinstance(body, dict) else None
    if not isinstance(proof, str) or not proof.strip():
        raise MalformedRequestError(
            'the body must be {"certificate": "<the verification certificate as PEM, '
            'base64 of PEM or DER, or base64 of base64 of DER>"}'
        )
    record = await c.storage.run(
        c.registry.verify,
        request.path_params["service"],
        request.path_params["name"],
        proof,
        if_match=request.headers.get("if-match"),
        actor=ADMIN_ACTOR,
        api_version=api_version(request),
    )
    return _respond(certificate_body(request, record), record.etag)


def _endpoint(handler: Handler, container: Container) -> Callable[[Request], Awaitable[Response]]:
    """Authenticate, call, and map every devprov error to ARM's shape, in one place."""

    async def endpoint(request: Request) -> Response:
        tracking_id = new_tracking_id()
        try:
            if not container.is_admin_token(bearer_token(request)):
                raise InvalidCredentialsError("the bearer token is not this server's admin token")
            response = await handler(request, container)
        except DevprovError as exc:
            await log_api_refusal(container, log, request, exc, tracking_id, action="managementApi")
            return arm_error_response(exc, tracking_id)
        response.headers["x-ms-request-id"] = tracking_id
        return response

    return endpoint


def routes(container: Container) -> list[Route]:
    table: list[tuple[str, Handler, str]] = [
        ("", list_certificates, "GET"),
        ("/{name}", get_certificate, "GET"),
        ("/{name}", put_certificate, "PUT"),
        ("/{name}", delete_certificate, "DELETE"),
        ("/{name}/generateVerificationCode", generate_code, "POST"),
        ("/{name}/verify", verify_certificate, "POST"),
    ]
    return case_insensitive(
        [
            Route(PREFIX + suffix, _endpoint(handler, container), methods=[method])
            for suffix, handler, method in table
        ]
    )
