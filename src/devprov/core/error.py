"""The one error tree of devprov.

Every error is a leaf of :class:`DevprovError`, grouped by :class:`ErrorKind`. Each leaf has a
stable string ``code`` (for humans, logs and the CLI) and a stable six-digit ``number`` that
follows DPS's ``<HTTP status><3-digit sub-code>`` pattern (see dps-api.md section 5.3), so that
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
    kind = ErrorKind.INVALID_INPUT
    code = "InvalidInput"
    number = 400000


class AuthenticationError(DevprovError):
    kind = ErrorKind.AUTHENTICATION_FAILED
    code = "Unauthorized"
    number = 401000


class NotPermittedError(DevprovError):
    kind = ErrorKind.NOT_PERMITTED
    code = "Forbidden"
    number = 403000


class NotFoundError(DevprovError):
    kind = ErrorKind.NOT_FOUND
    code = "NotFound"
    number = 404000


class ConflictError(DevprovError):
    kind = ErrorKind.CONFLICT
    code = "Conflict"
    number = 409000


class PreconditionFailedError(DevprovError):
    kind = ErrorKind.PRECONDITION_FAILED
    code = "PreconditionFailed"
    number = 412000


class TooLargeError(DevprovError):
    kind = ErrorKind.TOO_LARGE
    code = "PayloadTooLarge"
    number = 413000


class UnavailableError(DevprovError):
    kind = ErrorKind.UNAVAILABLE
    code = "ServiceUnavailable"
    number = 503000


class InternalError(DevprovError):
    kind = ErrorKind.INTERNAL
    code = "InternalError"
    number = 500000


# --- invalid input: certificates ------------------------------------------------------------


class MalformedCertificateError(InvalidInputError):
    code = "MalformedCertificate"
    number = 400101


class TooManyCertificatesError(InvalidInputError):
    code = "TooManyCertificatesInUpload"
    number = 400102


class NotACaCertificateError(InvalidInputError):
    code = "NotACaCertificate"
    number = 400103


class CertificateExpiredError(InvalidInputError):
    code = "CertificateExpired"
    number = 400104


class CertificateNotYetValidError(InvalidInputError):
    code = "CertificateNotYetValid"
    number = 400105


class InvalidCertificateNameError(InvalidInputError):
    code = "InvalidCertificateName"
    number = 400106


class MalformedRequestError(InvalidInputError):
    code = "MalformedRequest"
    number = 400001


class InvalidNameError(InvalidInputError):
    code = "InvalidName"
    number = 400002


# --- invalid input: proof-of-possession -------------------------------------------------------


class PossessionError(InvalidInputError):
    """A verification certificate was refused; the leaf says exactly why."""

    code = "ProofOfPossessionFailed"
    number = 400500


class MalformedVerificationCertificateError(PossessionError):
    code = "MalformedVerificationCertificate"
    number = 400501


class NoVerificationCodeError(PossessionError):
    code = "NoVerificationCode"
    number = 400502


class VerificationCodeMismatchError(PossessionError):
    code = "VerificationCodeMismatch"
    number = 400503


class VerificationCodeSupersededError(PossessionError):
    code = "VerificationCodeSuperseded"
    number = 400504


class VerificationCodeExpiredError(PossessionError):
    code = "VerificationCodeExpired"
    number = 400505


class VerificationCodeUsedError(PossessionError):
    code = "VerificationCodeAlreadyUsed"
    number = 400506


class VerificationSignerMismatchError(PossessionError):
    code = "VerificationSignerMismatch"
    number = 400507


class VerificationCertificateExpiredError(PossessionError):
    code = "VerificationCertificateExpired"
    number = 400508


class VerificationCertificateNotYetValidError(PossessionError):
    code = "VerificationCertificateNotYetValid"
    number = 400509


class AlreadyVerifiedError(PossessionError):
    code = "CertificateAlreadyVerified"
    number = 400510


# --- authentication / authorization --------------------------------------------------------


class MissingCredentialsError(AuthenticationError):
    code = "MissingCredentials"
    number = 401001


class InvalidCredentialsError(AuthenticationError):
    code = "InvalidCredentials"
    number = 401003


# --- not found ------------------------------------------------------------------------------


class ServiceNotFoundError(NotFoundError):
    code = "ProvisioningServiceNotFound"
    number = 404101


class CertificateNotFoundError(NotFoundError):
    code = "CertificateNotFound"
    number = 404102


class RouteNotFoundError(NotFoundError):
    code = "ResourceNotFound"
    number = 404001


# --- conflict / precondition / limits -------------------------------------------------------


class AlreadyExistsError(ConflictError):
    code = "AlreadyExists"
    number = 409001


class CertificateLimitError(ConflictError):
    code = "CertificateLimitExceeded"
    number = 409101


class EtagMismatchError(PreconditionFailedError):
    # DPS and IoT Hub report a stale or missing etag as IH412001 (Azure/azure-cli #13098).
    code = "IH412001"
    number = 412001


class BodyTooLargeError(TooLargeError):
    code = "RequestBodyTooLarge"
    number = 413001


class StorageUnavailableError(UnavailableError):
    code = "StorageUnavailable"
    number = 503001


# --- device attestation ----------------------------------------------------------------------


class InvalidDeviceCertificateError(AuthenticationError):
    """A device's X.509 chain does not validate under devprov's device profile (core.chain).

    DPS answers every such failure, a missing intermediate included, with 401002 "Invalid
    certificate" (dps-api.md 4 rule 7 and 5.3); the message names the precise rule for the log.
    """

    code = "InvalidCertificate"
    number = 401002


# --- SAS tokens, registration ids, allocation ---------------------------------------------------


class MalformedSasTokenError(AuthenticationError):
    """Not a ``SharedAccessSignature sr=..&sig=..&se=..[&skn=..]`` token (core.sas)."""

    code = "MalformedSasToken"
    number = 401004


class SasTokenExpiredError(AuthenticationError):
    code = "SasTokenExpired"
    number = 401005


class InvalidSasSignatureError(AuthenticationError):
    code = "InvalidSasSignature"
    number = 401006


class MissingRightError(NotPermittedError):
    """A shared access policy lacks the right an operation needs (dps-api.md 2.2)."""

    code = "MissingRight"
    number = 403001


class InvalidSymmetricKeyError(InvalidInputError):
    code = "InvalidSymmetricKey"
    number = 400301


class InvalidRegistrationIdError(InvalidInputError):
    # Moved here from service.pki with its code and number, which `devprov ca` already reports.
    code = "InvalidRegistrationId"
    number = 400155


class InvalidEnrollmentGroupIdError(InvalidInputError):
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


class NoHubError(InvalidInputError):
    # DPS reports "hub not specified" as registrationState.errorCode 400208, which the C SDK maps
    # to PROV_DEVICE_RESULT_HUB_NOT_SPECIFIED (dps-api.md 5.3); a device must see that number.
    code = "IotHubNotSpecified"
    number = 400208
