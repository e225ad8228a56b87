"""What the certificate pages show about a registry certificate, worked out without I/O.

The status words, the expiry warning, the key and CA descriptions, the verification code's expiry,
the commands that sign a verification certificate, and the one-sentence name of the
proof-of-possession check that failed. Times are passed in (``now``), as in the core.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from devprov.core.certificate import CertificateFacts
from devprov.core.error import (
    MalformedVerificationCertificateError,
    NoVerificationCodeError,
    PossessionError,
    VerificationCertificateExpiredError,
    VerificationCertificateNotYetValidError,
    VerificationCodeExpiredError,
    VerificationCodeMismatchError,
    VerificationCodeSupersededError,
    VerificationCodeUsedError,
    VerificationSignerMismatchError,
)
from devprov.service.model import CertificateRecord, VerificationMethod

# The list warns this long before a certificate expires: devices chaining to an expired CA are
# refused, and renewing a CA (same name and key) takes planning.
EXPIRY_WARNING = timedelta(days=30)

# The files the verification commands name: the tour in README makes its test PKI in ./pki
# (`devprov ca demo pki`); ca.pem and ca.key stand for the CA being proved.
CA_CERT_FILE = "pki/ca.pem"
CA_KEY_FILE = "pki/ca.key"
PROOF_FILE = "pki/proof.pem"
PROOF_KEY_FILE = "pki/proof.key"
PROOF_CSR_FILE = "pki/proof.csr"

# Friendly names of the NIST curves (FIPS 186-4 D.1.2), as the Azure portal and openssl show them.
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

_STATUS_WORDS = {
    VerificationMethod.PROOF_OF_POSSESSION: "proof-of-possession",
    VerificationMethod.SELF_ATTESTED: "self-attested",
}

# Which check of core.possession.verify_possession failed, in one sentence the operator can act
# on; the error's own message follows it with the details.
_FAILED_CHECK: dict[type[PossessionError], str] = {
    MalformedVerificationCertificateError: "The file is not one readable certificate.",
    NoVerificationCodeError: "No verification code was generated for this certificate.",
    VerificationCodeMismatchError: (
        "The verification certificate's subject CN is not the current verification code."
    ),
    VerificationCodeSupersededError: (
        "The verification certificate is for an earlier code, which a newer code replaced."
    ),
    VerificationCodeExpiredError: "The verification code has expired.",
    VerificationCodeUsedError: "The verification code was already used.",
    VerificationSignerMismatchError: (
        "The verification certificate was not signed by this certificate's key."
    ),
    VerificationCertificateExpiredError: "The verification certificate has expired.",
    VerificationCertificateNotYetValidError: "The verification certificate is not valid yet.",
}


@dataclass(frozen=True)
class Expiry:
    """The warning shown beside a certificate's expiry date, if any."""

    kind: str  # a badge class: "warn" or "bad"
    text: str


@dataclass(frozen=True)
class Code:
    """The current verification code and when it stops being accepted."""

    value: str
    expires_at: datetime
    minutes_left: int  # whole minutes, rounded up; 0 once it has expired

    @property
    def expired(self) -> bool:
        return self.minutes_left == 0


@dataclass(frozen=True)
class CertificateView:
    record: CertificateRecord
    facts: CertificateFacts
    expiry: Expiry | None
    key: str
    ca: str
    status: str  # "Verified" or "Unverified"
    method: str | None  # "proof-of-possession" or "self-attested" when verified
    code: Code | None

    @property
    def name(self) -> str:
        return self.record.name


def view_certificate(
    record: CertificateRecord, *, now: datetime, code_lifetime: timedelta | None = None
) -> CertificateView:
    """The view of ``record``; its verification code only when ``code_lifetime`` is given."""
    facts = record.facts
    return CertificateView(
        record=record,
        facts=facts,
        expiry=expiry_warning(facts.not_after, now=now),
        key=describe_key(record),
        ca=describe_ca(facts),
        status="Verified" if record.is_verified else "Unverified",
        method=(
            _STATUS_WORDS[record.verification_method]
            if record.is_verified and record.verification_method
            else None
        ),
        code=_code(record, now=now, code_lifetime=code_lifetime) if code_lifetime else None,
    )


def expiry_warning(not_after: datetime, *, now: datetime) -> Expiry | None:
    if now > not_after:
        return Expiry("bad", "Expired")
    left = not_after - now
    if left > EXPIRY_WARNING:
        return None
    days = math.ceil(left / timedelta(days=1))
    return Expiry("warn", f"Expires in {days} day{'' if days == 1 else 's'}")


def describe_key(record: CertificateRecord) -> str:
    key = record.certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def describe_ca(facts: CertificateFacts) -> str:
    """The basicConstraints of the certificate (RFC 5280 4.2.1.9)."""
    if not facts.is_ca:
        return "No (CA:FALSE)"
    if facts.path_length is None:
        return "Yes (CA:TRUE, no path length limit)"
    return f"Yes (CA:TRUE, path length {facts.path_length})"


def _code(record: CertificateRecord, *, now: datetime, code_lifetime: timedelta) -> Code | None:
    codes = record.codes
    if record.is_verified or codes.current is None or codes.issued_at is None:
        return None
    expires_at = codes.issued_at + code_lifetime
    minutes = max(0, math.ceil((expires_at - now) / timedelta(minutes=1)))
    return Code(codes.current, expires_at, minutes)


def devprov_command(code: str) -> str:
    """``devprov ca verification`` (cli/ca.py) signing a certificate for ``code`` with the CA's
    certificate and key files."""
    return shlex.join(
        [
            "devprov", "ca", "verification", code,
            "--issuer-cert", CA_CERT_FILE,
            "--issuer-key", CA_KEY_FILE,
            "--out", PROOF_FILE,
        ]
    )  # fmt: skip


def openssl_commands(code: str) -> str:
    """The same with openssl alone: a throwaway key, a request whose subject CN is the code, and
    the CA signing it for one day (the certificate is needed only for one upload)."""
    commands = [
        [
            "openssl", "genpkey", "-algorithm", "EC",
            "-pkeyopt", "ec_paramgen_curve:P-256", "-out", PROOF_KEY_FILE,
        ],
        ["openssl", "req", "-new", "-key", PROOF_KEY_FILE, "-subj", f"/CN={code}",
         "-out", PROOF_CSR_FILE],
        [
            "openssl", "x509", "-req", "-in", PROOF_CSR_FILE,
            "-CA", CA_CERT_FILE, "-CAkey", CA_KEY_FILE, "-CAcreateserial",
            "-days", "1", "-out", PROOF_FILE,
        ],
    ]  # fmt: skip
    return "\n".join(shlex.join(command) for command in commands)


def failed_check(error: PossessionError) -> str:
    """The check a refused verification certificate failed, in one sentence."""
    for kind in type(error).__mro__:
        if kind in _FAILED_CHECK:
            return _FAILED_CHECK[kind]
    return "The verification certificate does not prove possession of this certificate's key."
