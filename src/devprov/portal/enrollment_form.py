"""The enrollment forms of the portal: what each kind of enrollment asks for, and the DPS document
a filled-in form stands for.

The form is turned into the same IndividualEnrollment or EnrollmentGroup document the service API
accepts (docs/dps-wire.md#enrollment-models), and that document goes to the same use case
(``EnrollmentService.create_or_update``), so every rule of an enrollment is checked once, by
``core.enrollment.parse_enrollment``. This module only checks what is the form's own business:
which radio button was chosen, that its file or certificate name was given, the twin's JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile

from devprov.core.certificate import parse_single_certificate, to_pem
from devprov.core.enrollment import EnrollmentKind, InvalidEnrollmentError
from devprov.core.error import BodyTooLargeError, InvalidInputError, MalformedCertificateError

# A certificate file is a few kilobytes; 64 KiB leaves room for long PEM comments and stays far
# below the service API's body limit (http.request.MAX_BODY_BYTES).
MAX_CERTIFICATE_FILE_BYTES = 64 * 1024

# Extensions a certificate file may have: PEM (.pem, .crt) or DER/PEM (.cer, .der), as the
# certificate tools write them. The content decides in the end (parse_single_certificate).
CERTIFICATE_EXTENSIONS = (".pem", ".cer", ".crt", ".der")

# The radio values of the attestation fieldset.
REGISTRY_CA = "ca"  # groups: caReferences to a certificate of the registry
UPLOADED_CA = "upload"  # groups: an inline signing certificate
OWN_CERTIFICATE = "certificate"  # individual enrollments: the device's own certificate
SYMMETRIC_KEY = "symmetricKey"

# The allocation policies the form offers; custom needs a webhook and is set through the
# service API or the CLI (docs/portal.md#enrollments).
FORM_ALLOCATION_POLICIES = ("hashed", "geoLatency", "static")


@dataclass(frozen=True)
class Kind:
    """What differs between the pages of enrollment groups and of individual enrollments."""

    kind: EnrollmentKind
    path: str  # the URL segment under /portal/s/{service}/
    title: str  # the list page's h1
    one: str  # "enrollment group" / "individual enrollment"
    id_label: str
    id_field: str  # the DPS document's id member
    file_label: str
    choices: tuple[tuple[str, str], ...]  # attestation radios: (value, label)


GROUPS = Kind(
    EnrollmentKind.GROUP,
    "groups",
    "Enrollment groups",
    "enrollment group",
    "Group ID",
    "enrollmentGroupId",
    "CA certificate file (.pem or .cer)",
    (
        (REGISTRY_CA, "X.509: a CA certificate of this service"),
        (UPLOADED_CA, "X.509: upload a CA certificate"),
        (SYMMETRIC_KEY, "Symmetric key"),
    ),
)
INDIVIDUALS = Kind(
    EnrollmentKind.INDIVIDUAL,
    "enrollments",
    "Individual enrollments",
    "individual enrollment",
    "Registration ID",
    "registrationId",
    "Device certificate file (.pem or .cer)",
    (
        (OWN_CERTIFICATE, "X.509: the device's own certificate"),
        (SYMMETRIC_KEY, "Symmetric key"),
    ),
)


@dataclass(frozen=True)
class Entered:
    """What the operator typed, to show the form again after a refusal (never the file)."""

    id: str = ""
    attestation: str = ""
    ca: str = ""
    enabled: bool = True
    hub: str = ""
    allocation: str = ""
    device_id: str = ""
    initial_twin: str = ""
    credential_policy: str = ""  # "" is none


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def entered(form: FormData, kind: Kind) -> Entered:
    attestation = _text(form, "attestation")
    return Entered(
        id=_text(form, "id"),
        attestation=attestation if attestation in dict(kind.choices) else "",
        ca=_text(form, "ca"),
        enabled=_text(form, "enabled") == "true",
        hub=_text(form, "hub"),
        allocation=_text(form, "allocation"),
        device_id=_text(form, "device_id"),
        initial_twin=_text(form, "initial_twin"),
        credential_policy=_text(form, "credential_policy"),
    )


async def read_certificate_file(form: FormData, label: str) -> str | None:
    """The uploaded certificate as PEM, or None when no file was chosen."""
    upload = form.get("certificate_file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    if not upload.filename.lower().endswith(CERTIFICATE_EXTENSIONS):
        raise MalformedCertificateError(
            f"{label}: '{upload.filename}' is not a certificate file; choose a .pem or .cer file"
        )
    data = await upload.read(MAX_CERTIFICATE_FILE_BYTES + 1)
    if len(data) > MAX_CERTIFICATE_FILE_BYTES:
        raise BodyTooLargeError(
            f"{label}: the file is larger than {MAX_CERTIFICATE_FILE_BYTES // 1024} KiB; "
            "a certificate is a few kilobytes"
        )
    try:
        return to_pem(parse_single_certificate(data))
    except InvalidInputError as exc:
        raise type(exc)(f"{label}: {exc.message}") from exc


def _attestation(kind: Kind, given: Entered, pem: str | None) -> dict[str, Any]:
    if given.attestation == SYMMETRIC_KEY:
        return {"type": SYMMETRIC_KEY}  # the service generates both keys
    if given.attestation == REGISTRY_CA and kind is GROUPS:
        if not given.ca:
            raise InvalidEnrollmentError("choose the CA certificate of this service to use")
        return {"type": "x509", "x509": {"caReferences": {"primary": given.ca}}}
    if given.attestation in (UPLOADED_CA, OWN_CERTIFICATE):
        if pem is None:
            raise InvalidEnrollmentError(f"choose the file for '{kind.file_label}'")
        slot = "signingCertificates" if kind is GROUPS else "clientCertificates"
        return {"type": "x509", "x509": {slot: {"primary": {"certificate": pem}}}}
    raise InvalidEnrollmentError("choose how devices attest (one of the Attestation options)")


def _initial_twin(text: str) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        twin = json.loads(text)
    except ValueError as exc:
        raise InvalidEnrollmentError(f"the initial twin is not valid JSON: {exc}") from exc
    if not isinstance(twin, dict):
        raise InvalidEnrollmentError("the initial twin must be a JSON object")
    return twin


def build_document(kind: Kind, given: Entered, pem: str | None) -> dict[str, Any]:
    """The service API's document for the form: the same the CLI's ``create`` builds."""
    doc: dict[str, Any] = {
        kind.id_field: given.id,
        "attestation": _attestation(kind, given, pem),
        "provisioningStatus": "enabled" if given.enabled else "disabled",
    }
    if kind is INDIVIDUALS and given.device_id:
        doc["deviceId"] = given.device_id
    if given.hub:
        doc["iotHubs"] = [given.hub]
    if given.allocation:
        doc["allocationPolicy"] = given.allocation
    if given.credential_policy:
        doc["credentialPolicyName"] = given.credential_policy
    twin = _initial_twin(given.initial_twin)
    if twin is not None:
        doc["initialTwin"] = twin
    return doc


# What a stored record's document carries that a write does not take back.
_READ_ONLY = ("etag", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "registrationState")

# The members that name a credential policy: the preview's and 2026-11-01's (core.enrollment).
_POLICY_MEMBERS = ("credentialPolicyName", "certificatePolicyName")


def with_status(current: dict[str, Any], enabled: bool) -> dict[str, Any]:
    """A stored record's document (core.document.enrollment, without keys or certificates: the
    use case keeps the stored ones) with its provisioning status changed."""
    doc = {k: v for k, v in current.items() if k not in _READ_ONLY}
    doc["provisioningStatus"] = "enabled" if enabled else "disabled"
    return doc


def with_credential_policy(current: dict[str, Any], policy: str | None) -> dict[str, Any]:
    """A stored record's document, as for :func:`with_status`, naming the credential policy
    ``policy`` instead of the one it names (None: none)."""
    doc = {k: v for k, v in current.items() if k not in _READ_ONLY + _POLICY_MEMBERS}
    if policy:
        doc["credentialPolicyName"] = policy
    return doc
