"""The one error tree of devprov.

Every error is a leaf of :class:`DevprovError`, grouped by :class:`ErrorKind`. Each leaf has a
stable string ``code`` (for humans, logs and the CLI) and a stable six-digit ``number`` that follows
DPS's ``<HTTP status><3-digit sub-code>`` pattern (see docs/dps-wire.md#error-codes-seen), so that
each transport can map the tree once, in one table, without knowing the leaves.

``message`` is precise and meant for the operator who made the call. Transports that face
devices replace it with a generic text and log the precise one.
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar


class ErrorKind(Enum):
    """What went wrong, at the granularity a transport needs to pick a status."""

    INVALID_INPUT = "invalid_input"
    AUTHENTICATION_FAILED = "authentication_failed"
    NOT_PERMITTED = "not_permitted"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    PRECONDITION_FAILED = "precondition_failed"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


# The status DPS answers each kind with: the HTTP status on HTTPS, and the status in the topic of
# an MQTT answer (``$dps/registrations/res/{status}/...``, docs/dps-wire.md#mqtt), which DPS takes
# from the same table. Each transport maps the tree through this one table.
STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_INPUT: 400,
    ErrorKind.AUTHENTICATION_FAILED: 401,
    ErrorKind.NOT_PERMITTED: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.PRECONDITION_FAILED: 412,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.INTERNAL: 500,
}


class DevprovError(Exception):
    """Root of every error devprov raises on purpose."""

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL
    code: ClassVar[str] = "Error"
    number: ClassVar[int] = 500999

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- kinds -------------------------------------------------------------------------------


class InvalidInputError(DevprovError):
    """The request or command is not valid."""

    kind = ErrorKind.INVALID_INPUT
    code = "InvalidInput"
    number = 400000


class AuthenticationError(DevprovError):
    """Authentication failed (DPS's 401000)."""

    kind = ErrorKind.AUTHENTICATION_FAILED
    code = "Unauthorized"
    number = 401000


class NotPermittedError(DevprovError):
    """The caller lacks a right."""

    kind = ErrorKind.NOT_PERMITTED
    code = "Forbidden"
    number = 403000


class NotFoundError(DevprovError):
    """Something named does not exist."""

    kind = ErrorKind.NOT_FOUND
    code = "NotFound"
    number = 404000


class ConflictError(DevprovError):
    """The request conflicts with the current state."""

    kind = ErrorKind.CONFLICT
    code = "Conflict"
    number = 409000


class PreconditionFailedError(DevprovError):
    """A precondition failed."""

    kind = ErrorKind.PRECONDITION_FAILED
    code = "PreconditionFailed"
    number = 412000


class TooLargeError(DevprovError):
    """The body is too large."""

    kind = ErrorKind.TOO_LARGE
    code = "PayloadTooLarge"
    number = 413000


class UnavailableError(DevprovError):
    """A dependency is unavailable."""

    kind = ErrorKind.UNAVAILABLE
    code = "ServiceUnavailable"
    number = 503000


class InternalError(DevprovError):
    """An unexpected failure; the server log has the details."""

    kind = ErrorKind.INTERNAL
    code = "InternalError"
    number = 500000


# --- invalid input: certificates ------------------------------------------------------------


class MalformedCertificateError(InvalidInputError):
    """The data is not one certificate in PEM, DER, base64 of either, or base64 of base64 of DER."""

    code = "MalformedCertificate"
    number = 400101


class TooManyCertificatesError(InvalidInputError):
    """An upload holds a bundle; upload the CA certificate alone."""

    code = "TooManyCertificatesInUpload"
    number = 400102


class NotACaCertificateError(InvalidInputError):
    """The uploaded certificate lacks basicConstraints CA:TRUE (RFC 5280 4.2.1.9)."""

    code = "NotACaCertificate"
    number = 400103


class CertificateExpiredError(InvalidInputError):
    """The uploaded certificate is past its notAfter."""

    code = "CertificateExpired"
    number = 400104


class CertificateNotYetValidError(InvalidInputError):
    """The uploaded certificate's notBefore is in the future (beyond 5 minutes of clock skew)."""

    code = "CertificateNotYetValid"
    number = 400105


class InvalidCertificateNameError(InvalidInputError):
    """A registry name is not 1 to 256 letters, digits, '-', '.' or '_'."""

    code = "InvalidCertificateName"
    number = 400106


class MalformedRequestError(InvalidInputError):
    """The body is not the JSON the endpoint expects, or a header such as x-ms-continuation
    is not one devprov issued."""

    code = "MalformedRequest"
    number = 400001


class JsonTooDeepError(MalformedRequestError):
    """A JSON body nests arrays and objects deeper than devprov reads (core.json_text)."""

    code = "JsonNestingTooDeep"
    number = 400270


class InvalidNameError(InvalidInputError):
    """A provisioning service or policy name breaks the naming rules."""

    code = "InvalidName"
    number = 400002


# --- invalid input: proof-of-possession -------------------------------------------------------


class PossessionError(InvalidInputError):
    """A verification certificate was refused; the leaf says exactly why."""

    code = "ProofOfPossessionFailed"
    number = 400500


class MalformedVerificationCertificateError(PossessionError):
    """The proof is not exactly one parseable certificate."""

    code = "MalformedVerificationCertificate"
    number = 400501


class NoVerificationCodeError(PossessionError):
    """No verification code was generated for the certificate."""

    code = "NoVerificationCode"
    number = 400502


class VerificationCodeMismatchError(PossessionError):
    """The proof's subject CN is not the current verification code."""

    code = "VerificationCodeMismatch"
    number = 400503


class VerificationCodeSupersededError(PossessionError):
    """The proof carries an older code; a newer one was generated."""

    code = "VerificationCodeSuperseded"
    number = 400504


class VerificationCodeExpiredError(PossessionError):
    """The code is older than the service's code lifetime."""

    code = "VerificationCodeExpired"
    number = 400505


class VerificationCodeUsedError(PossessionError):
    """The code already verified once; codes are single-use."""

    code = "VerificationCodeAlreadyUsed"
    number = 400506


class VerificationSignerMismatchError(PossessionError):
    """The proof was not signed by the uploaded certificate's key; the message names both."""

    code = "VerificationSignerMismatch"
    number = 400507


class VerificationCertificateExpiredError(PossessionError):
    """The proof is past its notAfter."""

    code = "VerificationCertificateExpired"
    number = 400508


class VerificationCertificateNotYetValidError(PossessionError):
    """The proof's notBefore is in the future."""

    code = "VerificationCertificateNotYetValid"
    number = 400509


# --- authentication / authorization --------------------------------------------------------


class MissingCredentialsError(AuthenticationError):
    """No usable Authorization header."""

    code = "MissingCredentials"
    number = 401001


class InvalidCredentialsError(AuthenticationError):
    """The token does not match: wrong admin token, unknown policy, or a SAS token for another resource."""

    code = "InvalidCredentials"
    number = 401003


# --- not found ------------------------------------------------------------------------------


class ServiceNotFoundError(NotFoundError):
    """No provisioning service by that name or ID scope."""

    code = "ProvisioningServiceNotFound"
    number = 404101


class CertificateNotFoundError(NotFoundError):
    """No registry certificate by that name."""

    code = "CertificateNotFound"
    number = 404102


class RouteNotFoundError(NotFoundError):
    """No endpoint at this path."""

    code = "ResourceNotFound"
    number = 404001


# --- conflict / precondition / limits -------------------------------------------------------


class AlreadyExistsError(ConflictError):
    """It already exists (a PUT without If-Match on an existing enrollment, a duplicate name)."""

    code = "AlreadyExists"
    number = 409001


class CertificateLimitError(ConflictError):
    """The service holds its maximum of CA certificates (25 by default)."""

    code = "CertificateLimitExceeded"
    number = 409101


class EtagMismatchError(PreconditionFailedError):
    """If-Match is missing, stale, or does not match: Azure's 'Invalid ETag supplied'."""

    # DPS and IoT Hub report a stale or missing etag as IH412001 (Azure/azure-cli #13098).
    code = "IH412001"
    number = 412001


class BodyTooLargeError(TooLargeError):
    """The body exceeds DPS's 96 KB message limit."""

    code = "RequestBodyTooLarge"
    number = 413001


class StorageUnavailableError(UnavailableError):
    """The database cannot be opened or is locked beyond the busy timeout."""

    code = "StorageUnavailable"
    number = 503001


class StorageBusyError(StorageUnavailableError):
    """A write waited for another writer's lock longer than its bound
    (docs/storage.md#storage-and-the-event-loop); nothing was written."""

    code = "StorageBusy"
    number = 503002


class StorageConflictError(StorageUnavailableError):
    """Writers on other instances kept conflicting with this call (a deadlock the database broke,
    a serialization failure, a device registering elsewhere at the same moment) through every
    retry (docs/storage.md#instances-sharing-one-database); nothing was written."""

    code = "StorageConflict"
    number = 503004


class StorageOverloadedError(UnavailableError):
    """Every storage thread was busy and the call could not wait for one, or not long enough
    (docs/storage.md#storage-and-the-event-loop); the call was not made."""

    code = "StorageOverloaded"
    number = 503003


# --- device attestation ----------------------------------------------------------------------


class InvalidDeviceCertificateError(AuthenticationError):
    """A device's X.509 chain does not validate under devprov's device profile (core.chain).

    DPS answers every such failure, a missing intermediate included, with 401002 "Invalid
    certificate" (docs/attestation.md#errors-when-attestation-fails,
    docs/dps-wire.md#error-codes-seen); the message names the precise rule for the log.
    """

    code = "InvalidCertificate"
    number = 401002


# --- SAS tokens, registration ids, allocation ---------------------------------------------------


class MalformedSasTokenError(AuthenticationError):
    """Not a ``SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`` token (core.sas)."""

    code = "MalformedSasToken"
    number = 401004


class SasTokenExpiredError(AuthenticationError):
    """The SAS token's se is in the past."""

    code = "SasTokenExpired"
    number = 401005


class InvalidSasSignatureError(AuthenticationError):
    """The SAS signature does not verify with the policy's or device's keys."""

    code = "InvalidSasSignature"
    number = 401006


class MissingRightError(NotPermittedError):
    """A shared access policy lacks the right an operation needs
    (docs/dps-wire.md#service-sas-tokens)."""

    code = "MissingRight"
    number = 403001


class InvalidSymmetricKeyError(InvalidInputError):
    """A symmetric key is not base64 of 16 to 64 bytes."""

    code = "InvalidSymmetricKey"
    number = 400301


class InvalidRegistrationIdError(InvalidInputError):
    """A registration ID breaks DPS's rules (characters, length: 128, or 64 for X.509)."""

    # Moved here from service.pki with its code and number, which `devprov ca` already reports.
    code = "InvalidRegistrationId"
    number = 400155


class InvalidEnrollmentGroupIdError(InvalidInputError):
    """An enrollment group ID breaks DPS's rules."""

    code = "InvalidEnrollmentGroupId"
    number = 400302


class InvalidHubError(InvalidInputError):
    """An allocation was asked of hubs that are not linked, or of several under ``static``."""

    code = "InvalidHubAllocation"
    number = 400303


class CustomAllocationError(InvalidInputError):
    """A custom allocation webhook answered with something DPS would not accept (core.allocation)."""

    code = "CustomAllocationFailed"
    number = 400304


class WebhookDestinationRefusedError(NotPermittedError):
    """A custom allocation webhook's host is an address devprov does not call (link-local, cloud
    metadata; core.outbound), and the operator did not allow it; the registration fails."""

    code = "CustomAllocationWebhookRefused"
    number = 403430


class NoHubError(InvalidInputError):
    """No IoT hub could be chosen (none linked, none eligible); DPS's registration errorCode 400208."""

    # DPS reports "hub not specified" as registrationState.errorCode 400208, which the C SDK maps
    # to PROV_DEVICE_RESULT_HUB_NOT_SPECIFIED (docs/dps-wire.md#error-codes-seen); a device must
    # see that number.
    code = "IotHubNotSpecified"
    number = 400208


class WebhookFailedError(UnavailableError):
    """The custom allocation webhook failed, took longer than its deadline (10 s), answered with a
    status other than 2xx, too large a body or no JSON; the registration fails."""

    code = "CustomAllocationWebhookFailed"
    number = 503430


class RegistrationAbandonedError(UnavailableError):
    """A registration left assigning while its custom allocation webhook or its hub was called
    was never decided: the server process making the call stopped or died first; the device
    registers again."""

    code = "RegistrationAbandoned"
    number = 503431
