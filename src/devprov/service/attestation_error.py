"""Why a device could not be attested: the reasons counted by the attestation-failure metric and
the errors device attestation raises (service.attestation, service.renewal).

Kept apart from service.attestation so that the renewal of an operational certificate
(service.renewal), which attestation calls, raises the same errors.
"""

from __future__ import annotations

from devprov.core.error import AuthenticationError, InvalidDeviceCertificateError

# Why attestation failed, in a word from a fixed set: the label of the attestation-failure metric
# (docs/operations.md#metrics). Never client text: the message has the details.
NO_CREDENTIALS = "no_credentials"  # neither a client certificate nor a SAS token
MALFORMED_CREDENTIALS = "malformed_credentials"  # a chain or token that does not parse
ID_MISMATCH = "registration_id_mismatch"  # the CN or the token's resource names another device
NO_ENROLLMENT = "no_enrollment"  # no enrollment governs the device
WRONG_ATTESTATION = "wrong_attestation"  # the enrollment uses the other attestation type
UNKNOWN_CERTIFICATE = "unknown_certificate"  # not the enrolled (or registering) certificate
UNTRUSTED_CHAIN = "untrusted_chain"  # does not validate to a verified CA certificate
EXPIRED = "expired"  # a SAS token past its expiry, an operational certificate past its validity
BAD_SIGNATURE = "bad_signature"  # no enrolled key signed the SAS token
INVALID_REGISTRATION_ID = "invalid_registration_id"  # not an id DPS accepts
REVOKED = "revoked_certificate"  # an operational certificate an operator revoked
ATTESTATION_FAILURE_REASONS = (
    NO_CREDENTIALS,
    MALFORMED_CREDENTIALS,
    ID_MISMATCH,
    NO_ENROLLMENT,
    WRONG_ATTESTATION,
    UNKNOWN_CERTIFICATE,
    UNTRUSTED_CHAIN,
    EXPIRED,
    BAD_SIGNATURE,
    INVALID_REGISTRATION_ID,
    REVOKED,
)


class DeviceAttestationError(InvalidDeviceCertificateError):
    """The device could not be attested. The message is for logs and the audit trail only; the
    number is DPS's 401002, its answer to every failed X.509 attestation
    (docs/attestation.md#errors-when-attestation-fails)."""

    code = "DeviceAttestationFailed"

    # ``reason``: one of ATTESTATION_FAILURE_REASONS, the label it is counted under.
    def __init__(self, message: str, reason: str = UNTRUSTED_CHAIN) -> None:
        super().__init__(message)
        self.reason = reason


class DeviceSasError(AuthenticationError):
    """A symmetric-key device could not be attested; it inherits DPS's 401000 "Unauthorized"
    (docs/dps-wire.md#error-codes-seen)."""

    code = "DeviceUnauthorized"

    # ``reason``: one of ATTESTATION_FAILURE_REASONS, the label it is counted under.
    def __init__(self, message: str, reason: str = BAD_SIGNATURE) -> None:
        super().__init__(message)
        self.reason = reason


class OperationalCertificateRevokedError(DeviceAttestationError):
    """A device presented an operational certificate that an operator revoked; it registers with
    its onboarding credential instead (docs/operational-certificates.md#renewal)."""

    code = "OperationalCertificateRevoked"
    number = 401680

    # What the device is told (service.device_answer.device_message): unlike other attestation
    # failures it names the cause, which only the holder of the certificate's key can learn
    # (the TLS handshake proved it) and which tells it what to do.
    device_message = "Operational certificate revoked; register with the onboarding credential"

    def __init__(self, message: str) -> None:
        super().__init__(message, REVOKED)
