"""DPS's JSON documents for enrollments and registration states (docs/dps-wire.md#enrollment-models,
docs/dps-wire.md#registration-states and docs/dps-wire.md#device-request-and-response-models).

Pure rendering, shared by the HTTP adapters and the custom allocation request.

Records carry certificate *info* (subject, thumbprints, issuer, validity, serial, version), never
certificates' private material. Symmetric keys appear where Azure's DPS shows them
(docs/dps-wire.md#symmetric-keys-in-answers): in the attestation mechanism, a separate call
(the Azure CLI's ``--show-keys``), and in the answer to the PUT that created or updated the
record, so a caller learns the keys the server generated. A GET, a query or a bulk result shows
``"attestation": {"type": "symmetricKey"}`` and nothing more, as Azure's recorded answers do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from devprov.core.enrollment import (
    Attestation,
    AttestationType,
    EnrolledCertificate,
    Enrollment,
    EnrollmentKind,
)
from devprov.core.registration import (
    AttestationMethod,
    CertificateSummary,
    RegistrationState,
    device_error,
    summarize_certificate,
)


def _present(body: dict[str, Any]) -> dict[str, Any]:
    """DPS leaves out members that have no value."""
    return {key: value for key, value in body.items() if value is not None}


def timestamp(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with seven fractional digits, as DPS writes them."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def certificate_info(summary: CertificateSummary) -> dict[str, Any]:
    return {
        "subjectName": summary.subject_name,
        "sha1Thumbprint": summary.sha1_thumbprint,
        "sha256Thumbprint": summary.sha256_thumbprint,
        "issuerName": summary.issuer_name,
        "notBeforeUtc": timestamp(summary.not_before),
        "notAfterUtc": timestamp(summary.not_after),
        "serialNumber": summary.serial_number,
        "version": summary.version,
    }


def _enrolled(certificate: EnrolledCertificate | None) -> dict[str, Any] | None:
    if certificate is None:
        return None
    facts = certificate.facts
    return {"info": certificate_info(summarize_certificate(facts))}


def attestation(value: Attestation, kind: EnrollmentKind, *, with_keys: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"type": value.type.value}
    if value.type is AttestationType.X509:
        pair = {
            "primary": _enrolled(value.primary_certificate),
            "secondary": _enrolled(value.secondary_certificate),
        }
        if value.ca_references:
            body["x509"] = {
                "caReferences": _present(
                    {"primary": value.ca_primary, "secondary": value.ca_secondary}
                )
            }
        elif kind is EnrollmentKind.INDIVIDUAL:
            body["x509"] = {"clientCertificates": pair}
        else:
            body["x509"] = {"signingCertificates": pair}
    elif value.type is AttestationType.SYMMETRIC_KEY and with_keys:
        body["symmetricKey"] = {
            "primaryKey": value.primary_key,
            "secondaryKey": value.secondary_key,
        }
    elif value.type is AttestationType.TPM:
        body["tpm"] = {
            "endorsementKey": value.endorsement_key,
            "storageRootKey": value.storage_root_key,
        }
    return body


def enrollment(
    value: Enrollment, *, state: RegistrationState | None = None, with_keys: bool = False
) -> dict[str, Any]:
    """IndividualEnrollment or EnrollmentGroup; ``with_keys`` only for the answer to a PUT."""
    body: dict[str, Any] = {}
    if value.kind is EnrollmentKind.INDIVIDUAL:
        body["registrationId"] = value.id
        body["deviceId"] = value.device_id
        if state is not None:
            body["registrationState"] = registration_state(state)
        if value.optional_device_information is not None:
            body["optionalDeviceInformation"] = value.optional_device_information
    else:
        body["enrollmentGroupId"] = value.id
    body.update(
        {
            "attestation": attestation(value.attestation, value.kind, with_keys=with_keys),
            "capabilities": {"iotEdge": value.iot_edge},
            "iotHubHostName": value.iot_hub_host_name,
            "initialTwin": value.initial_twin,
            "etag": value.etag,
            "provisioningStatus": value.provisioning_status.value,
            "reprovisionPolicy": {
                "updateHubAssignment": value.reprovision.update_hub_assignment,
                "migrateDeviceData": value.reprovision.migrate_device_data,
            },
            "createdDateTimeUtc": timestamp(value.created_at),
            "lastUpdatedDateTimeUtc": timestamp(value.updated_at),
            "allocationPolicy": value.allocation_policy.value if value.allocation_policy else None,
            "iotHubs": list(value.iot_hubs),
        }
    )
    if value.credential_policy is not None:
        # The preview's field and 2026-11-01's, so that a client of either version reads it.
        body["credentialPolicyName"] = value.credential_policy
        body["certificatePolicyName"] = value.credential_policy
    if value.custom_allocation is not None:
        body["customAllocationDefinition"] = {
            "webhookUrl": value.custom_allocation.webhook_url,
            "apiVersion": value.custom_allocation.api_version,
        }
    return {k: v for k, v in body.items() if v is not None}


def registration_state(state: RegistrationState) -> dict[str, Any]:
    """DeviceRegistrationState (service API)."""
    body = {
        "registrationId": state.registration_id,
        "createdDateTimeUtc": timestamp(state.created_at),
        "assignedHub": state.assigned_hub,
        "deviceId": state.device_id,
        "status": state.status.value,
        "substatus": state.substatus.value if state.substatus else None,
        "errorCode": state.error_code,
        "errorMessage": state.error_message,
        "lastUpdatedDateTimeUtc": timestamp(state.updated_at),
        "etag": state.etag,
        "payload": state.payload,
    }
    return {k: v for k, v in body.items() if v is not None}


def registration_result(state: RegistrationState) -> dict[str, Any]:
    """DeviceRegistrationResult (device API): the state plus the attestation's sub-object, with
    the error a device is shown (``device_error``)."""
    body = registration_state(state)
    if state.error_code is not None:
        body["errorCode"], body["errorMessage"] = device_error(
            state.error_code, state.error_message
        )
    group_id = state.enrollment_id if state.enrollment_kind is EnrollmentKind.GROUP else None
    if state.method is AttestationMethod.X509:
        x509_body: dict[str, Any] = {}
        if state.certificate:
            x509_body["certificateInfo"] = certificate_info(state.certificate)
        if group_id:
            x509_body["enrollmentGroupId"] = group_id
        if state.signing_certificate:
            x509_body["signingCertificateInfo"] = certificate_info(state.signing_certificate)
        body["x509"] = x509_body
    else:
        body["symmetricKey"] = {"enrollmentGroupId": group_id} if group_id else {}
    return body
