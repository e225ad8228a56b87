"""Proof-of-possession of a CA certificate's private key.

The flow of DPS's "Verify X.509 CA certificates" page (DOCS how-to-verify-certificates): the service
issues a verification code, the operator signs a certificate whose subject CN is that code with the
CA's private key, and the service checks that signature with the uploaded public key.

DPS documents neither code lifetime nor single use (docs/dps-wire.md#what-dps-does-not-document).
devprov decides, deliberately: a code lives for a configurable lifetime (one hour by default), a new
code supersedes the previous one, and a code that verified once cannot verify again. Each refusal is
its own error so the operator learns exactly which rule failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from devprov.core.certificate import (
    CLOCK_SKEW,
    CertificateFacts,
    common_name,
    describe_certificate,
    format_name,
    parse_certificates,
)
from devprov.core.error import (
    InvalidInputError,
    MalformedVerificationCertificateError,
    NoVerificationCodeError,
    VerificationCertificateExpiredError,
    VerificationCertificateNotYetValidError,
    VerificationCodeExpiredError,
    VerificationCodeMismatchError,
    VerificationCodeSupersededError,
    VerificationCodeUsedError,
    VerificationSignerMismatchError,
)

# Every code seen from DPS is 48 upper-case hex characters, i.e. 24 random bytes
# (docs/dps-wire.md#verification-codes).
VERIFICATION_CODE_BYTES = 24

# How long an issued code may be used. DPS documents none; an hour covers signing by hand with
# openssl while keeping a leaked code short-lived.
DEFAULT_CODE_LIFETIME = timedelta(hours=1)

# How many earlier codes are remembered, so that a superseded or used code is named as such
# instead of as a plain mismatch. Older ones are reported as mismatches.
REMEMBERED_CODES = 16


@dataclass(frozen=True)
class VerificationCodes:
    """The verification-code state of one registered certificate."""

    current: str | None = None
    issued_at: datetime | None = None
    superseded: tuple[str, ...] = field(default_factory=tuple)
    used: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Proof:
    """A verification certificate that proved possession of the CA key."""

    code: str
    verification_certificate: CertificateFacts
    verified_at: datetime


def build_verification_code(nonce: bytes) -> str:
    """Turn 24 random bytes into a DPS-shaped code."""
    if len(nonce) != VERIFICATION_CODE_BYTES:
        raise ValueError(f"a verification code needs {VERIFICATION_CODE_BYTES} random bytes")
    return nonce.hex().upper()


def issue_code(codes: VerificationCodes, nonce: bytes, *, now: datetime) -> VerificationCodes:
    """A new current code; the previous one, if any, becomes superseded."""
    superseded = codes.superseded
    if codes.current is not None:
        superseded = (codes.current, *superseded)[:REMEMBERED_CODES]
    return VerificationCodes(
        current=build_verification_code(nonce),
        issued_at=now,
        superseded=superseded,
        used=codes.used,
    )


def consume_code(codes: VerificationCodes) -> VerificationCodes:
    """The state after a successful verify: the current code becomes used."""
    if codes.current is None:
        return codes
    return VerificationCodes(
        current=None,
        issued_at=None,
        superseded=codes.superseded,
        used=(codes.current, *codes.used)[:REMEMBERED_CODES],
    )


def verify_possession(
    ca_certificate: x509.Certificate,
    proof_data: bytes | str,
    codes: VerificationCodes,
    *,
    now: datetime,
    code_lifetime: timedelta = DEFAULT_CODE_LIFETIME,
) -> Proof:
    """Check a verification certificate against the uploaded CA and its current code.

    The rules, in the order they are checked; the first that fails raises its own error:

    1. the data parses as exactly one certificate (PEM or DER, any of the accepted encodings);
    2. its subject CN equals the current code, a code was issued, it is neither superseded nor
       used, and it is younger than ``code_lifetime``;
    3. its signature verifies with the uploaded certificate's public key and it names the
       uploaded certificate's subject as issuer (RFC 5280 6.1.3 (a)(1) and (a)(4));
    4. it is within its validity period at ``now`` (RFC 5280 4.1.2.5).
    """
    verification = _parse_verification_certificate(proof_data)
    code = _check_code(verification, codes, now=now, code_lifetime=code_lifetime)
    _check_signer(verification, ca_certificate)
    facts = describe_certificate(verification)
    if now > facts.not_after:
        raise VerificationCertificateExpiredError(
            f"the verification certificate expired at {facts.not_after.isoformat()}"
        )
    if now + CLOCK_SKEW < facts.not_before:
        raise VerificationCertificateNotYetValidError(
            f"the verification certificate is not valid before {facts.not_before.isoformat()}"
        )
    return Proof(code=code, verification_certificate=facts, verified_at=now)


def _parse_verification_certificate(data: bytes | str) -> x509.Certificate:
    try:
        certificates = parse_certificates(data)
    except InvalidInputError as exc:
        raise MalformedVerificationCertificateError(
            f"the verification certificate is malformed: {exc.message}"
        ) from exc
    if len(certificates) != 1:
        raise MalformedVerificationCertificateError(
            f"send exactly one verification certificate; the data holds {len(certificates)}"
        )
    return certificates[0]


def _check_code(
    verification: x509.Certificate,
    codes: VerificationCodes,
    *,
    now: datetime,
    code_lifetime: timedelta,
) -> str:
    presented = common_name(verification)
    if presented is None:
        raise VerificationCodeMismatchError(
            f"the verification certificate's subject '{format_name(verification.subject)}' "
            "has no CN; its CN must be the verification code"
        )
    if presented in codes.used:
        raise VerificationCodeUsedError(
            f"verification code {presented} was already used; generate a new code"
        )
    if presented in codes.superseded:
        raise VerificationCodeSupersededError(
            f"verification code {presented} was superseded by a newer code; "
            "sign a certificate for the newest code"
        )
    if codes.current is None or codes.issued_at is None:
        raise NoVerificationCodeError(
            "no verification code was generated for this certificate; generate one first"
        )
    if presented != codes.current:
        raise VerificationCodeMismatchError(
            f"the verification certificate's CN is '{presented}', "
            f"but the current verification code is '{codes.current}'"
        )
    if now - codes.issued_at > code_lifetime:
        raise VerificationCodeExpiredError(
            f"verification code {presented} was issued at {codes.issued_at.isoformat()} and "
            f"expired after {int(code_lifetime.total_seconds())} s; generate a new code"
        )
    return presented


def _check_signer(verification: x509.Certificate, ca_certificate: x509.Certificate) -> None:
    expected = format_name(ca_certificate.subject)
    named = format_name(verification.issuer)
    try:
        verification.verify_directly_issued_by(ca_certificate)
    except ValueError as exc:
        # The issuer name differs, or the signature algorithm does not fit the CA key (an
        # ECDSA signature under an RSA CA, say): either way another key signed it.
        why = (
            f"names issuer '{named}', but the uploaded certificate is '{expected}'"
            if verification.issuer != ca_certificate.subject
            else f"is signed with an algorithm that does not fit the key of '{expected}' "
            "(another kind of key signed it)"
        )
        raise VerificationSignerMismatchError(
            f"the verification certificate {why}: sign it with the private key of '{expected}' "
            "(RFC 5280 6.1.3(a)(1), (a)(4))"
        ) from exc
    except (InvalidSignature, TypeError, UnsupportedAlgorithm) as exc:
        raise VerificationSignerMismatchError(
            f"the verification certificate names issuer '{named}', but its signature does not "
            f"verify with the public key of the uploaded certificate '{expected}': it was signed "
            "by a different key"
        ) from exc
