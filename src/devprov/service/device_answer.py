"""What the device API reads and answers, whichever transport carries it (HTTPS, MQTT).

DPS gives a device the same JSON over HTTPS and over MQTT (docs/dps-wire.md#mqtt): the
DeviceRegistration body it sends, the RegistrationOperationStatus it gets back, and DPS's error
body. Each transport frames them (a status line and headers; a topic) and nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devprov.core import document
from devprov.core.error import (
    STATUS,
    AuthenticationError,
    DevprovError,
    ErrorKind,
    InvalidInputError,
    MalformedRequestError,
)
from devprov.core.registration import RegistrationState, device_error
from devprov.service.attestation_error import (
    DeviceAttestationError,
    OperationalCertificateRevokedError,
)
from devprov.service.model import Operation

# The poll delay devprov suggests when it answers a register "assigning" (devprov serve
# --always-poll). The outcome is decided by then, so the first poll sees it; Node's transports
# honour it, Python's waits 2 s after a register regardless
# (docs/sdk-clients.md#python-device-statuses-polling-and-timeouts,
# docs/sdk-clients.md#node-device-http-transport).
RETRY_AFTER_SECONDS = 1

# When a client should try again after a 503 (a storage lock held too long, a storage pool that
# is full, a webhook that failed): the storage lock's bound, which is how long the holder it
# waited on had held it already (docs/storage.md#storage-and-the-event-loop).
UNAVAILABLE_RETRY_AFTER_SECONDS = 5


class TpmNotSupportedError(InvalidInputError):
    """A device asked for TPM attestation, which devprov does not support."""

    code = "TpmNotSupported"
    number = 400430


class CsrInStatusLookupError(MalformedRequestError):
    """A device registration status lookup carried a ``csr``, which DPS's specification makes a
    bad request (docs/operational-certificates.md#the-wire)."""

    code = "CsrNotAllowedInStatusLookup"
    number = 400680


@dataclass(frozen=True)
class RegistrationRequest:
    """What a DeviceRegistration body asks for, once checked: its custom ``payload`` and its
    ``csr``, the PKCS#10 request for an operational certificate as base64 of its DER
    (docs/operational-certificates.md#the-wire), both None when absent."""

    payload: Mapping[str, Any] | None = None
    csr: str | None = None


def registration_request(body: object, registration_id: str) -> RegistrationRequest:
    """The DeviceRegistration body of a register, checked: an object, naming the same
    registration id if it names one, not asking for TPM; ``payload`` an object and ``csr`` a
    string when present (its content is the use case's to check)."""
    if body is None:
        return RegistrationRequest()
    if not isinstance(body, dict):
        raise MalformedRequestError("the body must be a DeviceRegistration object")
    given = body.get("registrationId")
    if given is not None and (
        not isinstance(given, str) or given.lower() != registration_id.lower()
    ):
        raise MalformedRequestError(
            "'registrationId' in the body differs from the one the request names"
        )
    if body.get("tpm"):
        raise TpmNotSupportedError(
            "devprov does not support TPM attestation; use X.509 or a symmetric key"
        )
    payload = body.get("payload")
    if payload is not None and not isinstance(payload, dict):
        raise MalformedRequestError("'payload' must be a JSON object")
    csr = body.get("csr")
    if csr is not None and not isinstance(csr, str):
        raise MalformedRequestError(
            "'csr' must be a string: the PKCS#10 request as base64 of its DER"
        )
    return RegistrationRequest(payload, csr)


def status_lookup_request(body: object, registration_id: str) -> None:
    """Check the DeviceRegistration body of a status lookup as a register's, and refuse a
    ``csr`` in it (a ``null`` one is taken as absent)."""
    request = registration_request(body, registration_id)
    if request.csr is not None:
        raise CsrInStatusLookupError(
            "a device registration status lookup must not carry 'csr'; send it with the "
            "register (PUT .../register)"
        )


def assigning_body(operation: Operation) -> dict[str, Any]:
    """The answer to a register: the operation to poll."""
    return {"operationId": operation.id, "status": "assigning"}


def register_answer(
    operation: Operation,
    state: RegistrationState | None,
    *,
    always_poll: bool,
    chain: Sequence[str] = (),
) -> tuple[int, dict[str, Any]]:
    """DPS's status and body for a register call: the decided RegistrationOperationStatus at
    once (200, ``operationId`` kept, so that a client that polls anyway reads the same answer),
    or 202 and the operation to poll while it is assigning, or always with ``always_poll``
    (``devprov serve --always-poll``: DPS's own sequence, docs/dps-wire.md#one-round-trip).
    ``chain`` is the operational certificate chain issued by the registration, if any."""
    if always_poll or operation.status == "assigning":
        return 202, assigning_body(operation)
    return 200, operation_status_body(operation, state, chain)


def operation_status_body(
    operation: Operation, state: RegistrationState | None, chain: Sequence[str] = ()
) -> dict[str, Any]:
    """RegistrationOperationStatus: the operation, and once decided, the registration state;
    an ``assigned`` one carries ``chain``, the base64 DER certificates issued by this operation
    (leaf first), as ``issuedCertificateChain`` (docs/operational-certificates.md#the-wire)."""
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
        if chain and operation.status == "assigned":
            result["issuedCertificateChain"] = list(chain)
        body["registrationState"] = result
    return body


def status_of(error: DevprovError) -> int:
    """The status DPS answers ``error`` with (HTTP status; MQTT answer topic)."""
    return STATUS[error.kind]


def retry_after_of(error: DevprovError) -> int | None:
    """The retry hint of an error answer (``Retry-After``; ``retry-after`` in an MQTT answer
    topic): 503s have one, other errors none."""
    return UNAVAILABLE_RETRY_AFTER_SECONDS if error.kind is ErrorKind.UNAVAILABLE else None


def device_message(error: DevprovError) -> str:
    """What a device is told: DPS's generic words for a failed authentication (the precise
    reason goes to the log and the audit trail), the precise message otherwise."""
    if isinstance(error, OperationalCertificateRevokedError):
        return error.device_message
    if isinstance(error, DeviceAttestationError):
        return "Invalid certificate"
    if isinstance(error, AuthenticationError):
        return "Unauthorized"
    return error.message


def error_body(
    error: DevprovError, tracking_id: str, now: datetime, *, message: str | None = None
) -> dict[str, Any]:
    """DPS's error body (docs/dps-wire.md#service-error-body)."""
    return {
        "errorCode": error.number,
        "trackingId": tracking_id,
        "message": message or error.message,
        "timestampUtc": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
