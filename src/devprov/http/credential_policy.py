"""What the credential policies publish, without authentication: each policy's certificate
revocation list and its CA chain (docs/operational-certificates.md#revocation).

``GET /credential-policies/{service}/{policy}/crl`` answers the CRL in DER as
``application/pkix-crl``, the media type RFC 2585 section 4.2 registers for it and RFC 5280
section 4.2.1.13 names for CRLs fetched over HTTP; ``GET .../ca.pem`` the CA chain, issuing CA
first, as ``application/x-pem-file``. Relying parties (hubs, brokers, services a device presents
its certificate to) have no devprov credentials, so neither route asks for any; both say only
what a device's certificate chain says already.

A service or policy that does not exist is 404 with DPS's error body. Any other failure (a key
file missing, the database away) is logged with its reason and answered without it: the reason
may name the server's files, and these routes answer anybody.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devprov.bootstrap import Container
from devprov.core.error import DevprovError, ErrorKind, InternalError, ServiceNotFoundError
from devprov.http.error import dps_error_response, new_tracking_id
from devprov.http.request import log_refusal, shown_path
from devprov.service.credential_policy import CA_PATH, CRL_PATH, CredentialPolicyNotFoundError

log = logging.getLogger("devprov.http")

CRL_MEDIA_TYPE = "application/pkix-crl"  # RFC 2585 4.2
PEM_MEDIA_TYPE = "application/x-pem-file"

# What a client is told when the answer cannot be made for a reason of the server's own.
_GENERIC = "the server cannot answer this now; its log names the reason under this tracking id"


def routes(container: Container) -> list[Route]:
    async def crl(request: Request) -> Response:
        service, policy = request.path_params["service"], request.path_params["policy"]
        try:
            der = await container.storage.run(container.credential_policies.crl, service, policy)
        except DevprovError as exc:
            return _refused(request, exc)
        return Response(der, media_type=CRL_MEDIA_TYPE)

    async def ca(request: Request) -> Response:
        service, policy = request.path_params["service"], request.path_params["policy"]
        try:
            found = await container.storage.run(container.credential_policies.show, service, policy)
        except DevprovError as exc:
            return _refused(request, exc)
        return Response(found.ca_chain_pem, media_type=PEM_MEDIA_TYPE)

    where = {"service": "{service}", "policy": "{policy}"}
    return [
        Route(CRL_PATH.format(**where), crl, methods=["GET"]),
        Route(CA_PATH.format(**where), ca, methods=["GET"]),
    ]


def _refused(request: Request, error: DevprovError) -> Response:
    tracking_id = new_tracking_id()
    if isinstance(error, ServiceNotFoundError | CredentialPolicyNotFoundError):
        log_refusal(log, request, error, tracking_id)
        return dps_error_response(error, tracking_id)
    log.error(
        "%s %s failed (tracking %s): %s: %s",
        request.method,
        shown_path(request.url.path),
        tracking_id,
        error.code,
        error.message,
    )
    if error.kind is ErrorKind.UNAVAILABLE:
        return dps_error_response(error, tracking_id, message=_GENERIC)
    return dps_error_response(InternalError(_GENERIC), tracking_id)
