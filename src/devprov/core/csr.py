"""Certificate signing requests from devices, and what devprov issues for them.

A device that registers under an enrollment with a credential policy may send ``csr``: base64 of
the DER of a PKCS#10 request (RFC 2986) for a key it made. This module reads that text
(:func:`parse_csr`), checks the request against the rules in
docs/operational-certificates.md#the-csr-rules (:func:`verify_csr`), builds the operational
certificate the policy's CA signs (:func:`build_operational_certificate`), the CA's certificate
revocation list (:func:`build_crl`) and the ``issuedCertificateChain`` items
(:func:`certificate_chain_b64`).

Pure: serial numbers, keys and the time are arguments.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devprov.core.credential_policy import MAX_VALIDITY_DAYS, MIN_VALIDITY_DAYS
from devprov.core.error import InvalidInputError
from devprov.core.issuance import (
    BACKDATE,
    MAX_SERIAL_BITS,
    Issuer,
    authority_key_identifier,
    build_leaf_certificate,
    signature_hash,
)
from devprov.core.registration_id import shown_id

__all__ = [
    "ALLOWED_CURVES",
    "MAX_CSR_CHARACTERS",
    "MAX_VALIDITY_DAYS",
    "MIN_RSA_BITS",
    "MIN_VALIDITY_DAYS",
    "CsrAsksForCaError",
    "CsrIsPemError",
    "CsrKeyNotAllowedError",
    "CsrSignatureError",
    "CsrSubjectError",
    "IssuanceProfile",
    "MalformedCsrError",
    "build_crl",
    "build_operational_certificate",
    "certificate_chain_b64",
    "parse_csr",
    "verify_csr",
]

# The longest ``csr`` text read. A request for an RSA-4096 key with a few requested extensions
# is under 2 KiB of base64, one for a P-384 key under 1 KiB; 16 KiB leaves room for odd
# attributes while bounding the work (and memory) a device can make the parser do.
MAX_CSR_CHARACTERS = 16 * 1024

# RSA keys below 2048 bits are no longer considered secure (NIST SP 800-57 Part 1, and the
# CA/Browser Forum Baseline Requirements 6.1.5 for publicly trusted certificates).
MIN_RSA_BITS = 2048

# The NIST curves of RFC 5480 2.1.1.1 that TLS stacks, IoT Hub's among them, accept for client
# certificates (the same three the CA/Browser Forum Baseline Requirements 6.1.5 allow). Azure's
# preview takes P-384 only; devprov also takes the other two.
ALLOWED_CURVES: frozenset[str] = frozenset({"secp256r1", "secp384r1", "secp521r1"})

# RFC 5280 Appendix A.1: ub-common-name, ub-organization-name, ub-organizational-unit-name.
MAX_NAME_CHARACTERS = 64

_ALLOWED_KEYS = "RSA of at least 2048 bits, or EC on P-256, P-384 or P-521"
# Skipped in the base64: tools that wrap it at 64 or 76 characters need not be refused for it.
_WHITESPACE = str.maketrans("", "", " \t\r\n")


class MalformedCsrError(InvalidInputError):
    """The CSR is empty, too long, not base64, or not the DER of one PKCS#10 request."""

    code = "MalformedCsr"
    number = 400610


class CsrIsPemError(MalformedCsrError):
    """The CSR is PEM; DPS takes base64 of the DER, without the PEM header and footer lines."""

    code = "CsrIsPem"
    number = 400611


class CsrSignatureError(InvalidInputError):
    """The request's self-signature does not verify: it does not prove possession of the key."""

    code = "CsrSignatureInvalid"
    number = 400612


class CsrSubjectError(InvalidInputError):
    """The request's subject lacks a common name, has several, or its CN is not the
    registration id."""

    code = "CsrSubjectInvalid"
    number = 400613


class CsrKeyNotAllowedError(InvalidInputError):
    """The request's key is not RSA of at least 2048 bits or EC on an allowed curve."""

    code = "CsrKeyNotAllowed"
    number = 400614


class CsrAsksForCaError(InvalidInputError):
    """The request asks for the rights of a CA (basicConstraints CA:TRUE, keyCertSign, cRLSign)."""

    code = "CsrAsksForCa"
    number = 400615


AllowedPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


# --- reading ---------------------------------------------------------------------------------


def parse_csr(text: str) -> x509.CertificateSigningRequest:
    """The request ``text`` holds: base64 of the DER of a PKCS#10 request (RFC 2986 4).

    Spaces, tabs and line breaks in the base64 are skipped. Raises :class:`CsrIsPemError` for
    PEM and :class:`MalformedCsrError` for anything else that is not such a request.
    """
    if len(text) > MAX_CSR_CHARACTERS:
        raise MalformedCsrError(
            f"the CSR has {len(text)} characters; at most {MAX_CSR_CHARACTERS} are read"
        )
    compact = text.translate(_WHITESPACE)
    if not compact:
        raise MalformedCsrError("the CSR is empty")
    if compact.startswith("-----BEGIN"):
        raise CsrIsPemError(
            "the CSR is PEM; send base64 of its DER, without the PEM header and footer lines "
            "(the '-----BEGIN ...' and '-----END ...' lines) and without line breaks"
        )
    try:
        der = base64.b64decode(compact, validate=True)
    except ValueError as exc:  # binascii.Error, or characters outside ASCII
        raise MalformedCsrError("the CSR is not base64 (RFC 4648 4, with padding)") from exc
    try:
        csr = x509.load_der_x509_csr(der)
        # Read now what is otherwise read lazily, so that a broken subject or extension request
        # is a malformed CSR here rather than a surprise later.
        _ = csr.subject, csr.extensions
    except (ValueError, x509.InvalidVersion, x509.DuplicateExtension) as exc:
        raise MalformedCsrError(
            "the CSR's base64 does not hold the DER of a PKCS#10 certificate request (RFC 2986)"
        ) from exc
    return csr


# --- the rules -------------------------------------------------------------------------------


def verify_csr(csr: x509.CertificateSigningRequest, registration_id: str) -> None:
    """Raise unless ``csr`` may have a certificate for ``registration_id``.

    The rules, in this order (docs/operational-certificates.md#the-csr-rules): the
    self-signature verifies (:class:`CsrSignatureError`; a key that cannot sign, or that
    devprov cannot read, is :class:`CsrKeyNotAllowedError` here already); the subject has one
    CN, equal to ``registration_id`` ignoring case (:class:`CsrSubjectError`); the key is
    allowed (:class:`CsrKeyNotAllowedError`); no CA rights are requested
    (:class:`CsrAsksForCaError`).
    """
    _verify_signature(csr)
    _verify_subject(csr, registration_id)
    _allowed_key(csr)
    _verify_no_ca_rights(csr)


def _key_kind(key: object) -> str:
    kinds: list[tuple[type, str]] = [
        (dsa.DSAPublicKey, "DSA"),
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
        (x25519.X25519PublicKey, "X25519"),
        (x448.X448PublicKey, "X448"),
    ]
    return next((name for cls, name in kinds if isinstance(key, cls)), type(key).__name__)


def _verify_signature(csr: x509.CertificateSigningRequest) -> None:
    """RFC 2986 3: the request is signed with the private key of the public key it carries, so
    that nobody obtains a certificate for somebody else's key."""
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CsrKeyNotAllowedError(
            f"the CSR's public key is of a kind devprov cannot read; allowed: {_ALLOWED_KEYS}"
        ) from exc
    if isinstance(key, x25519.X25519PublicKey | x448.X448PublicKey):
        raise CsrKeyNotAllowedError(
            f"the CSR's key is {_key_kind(key)}, a key that cannot sign, so the request cannot "
            f"prove possession of it; allowed: {_ALLOWED_KEYS}"
        )
    # cryptography answers False, not an exception, for a signature algorithm it does not know.
    if not csr.is_signature_valid:
        raise CsrSignatureError(
            "the CSR's signature does not verify with the public key it carries: the request "
            "does not prove possession of the private key (RFC 2986 3)"
        )


def _same_id(common_name: str, registration_id: str) -> bool:
    # Registration ids are ASCII and compared ignoring case (core.registration_id); ASCII only,
    # so that no other script's letter lower-cases into a match (KELVIN SIGN into 'k').
    return (
        common_name.isascii()
        and registration_id.isascii()
        and common_name.lower() == registration_id.lower()
    )


def _verify_subject(csr: x509.CertificateSigningRequest, registration_id: str) -> None:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise CsrSubjectError(
            "the CSR's subject has no common name (CN); it must be the registration id"
        )
    if len(names) > 1:
        raise CsrSubjectError(
            f"the CSR's subject has {len(names)} common names (CN); it must have one, the "
            "registration id"
        )
    value = names[0].value
    common_name = value if isinstance(value, str) else value.decode("utf-8", "replace")
    if not _same_id(common_name, registration_id):
        raise CsrSubjectError(
            f"the CSR's common name {shown_id(common_name)} is not the registration id "
            f"{shown_id(registration_id)} (compared ignoring case)"
        )
    if len(common_name) > MAX_NAME_CHARACTERS:
        raise CsrSubjectError(
            f"the CSR's common name has {len(common_name)} characters; a certificate's CN "
            f"holds at most {MAX_NAME_CHARACTERS} (RFC 5280 Appendix A.1, ub-common-name)"
        )


def _allowed_key(csr: x509.CertificateSigningRequest) -> AllowedPublicKey:
    key = csr.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CsrKeyNotAllowedError(
                f"the CSR's RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required"
            )
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise CsrKeyNotAllowedError(
                f"the CSR's EC key is on curve {key.curve.name}; allowed: {_ALLOWED_KEYS}"
            )
        return key
    raise CsrKeyNotAllowedError(f"the CSR's key is {_key_kind(key)}; allowed: {_ALLOWED_KEYS}")


def _verify_no_ca_rights(csr: x509.CertificateSigningRequest) -> None:
    """The requested extensions (RFC 2986 4.1, PKCS#9 extensionRequest) are never copied, but a
    request for a CA's rights is refused rather than quietly answered with a leaf."""
    for extension in csr.extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            raise CsrAsksForCaError(
                "the CSR requests basicConstraints CA:TRUE; an operational certificate is an "
                "end-entity certificate (RFC 5280 4.2.1.9)"
            )
        if isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
            raise CsrAsksForCaError(
                "the CSR requests keyUsage keyCertSign or cRLSign, which only a CA may have "
                "(RFC 5280 4.2.1.3)"
            )


# --- issuing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuanceProfile:
    """What a credential policy says about the certificates it issues."""

    validity_days: int
    organization: str | None = None  # O= of the subject
    organizational_unit: str | None = None  # OU=
    server_auth: bool = False  # serverAuth in the EKU beside clientAuth

    def __post_init__(self) -> None:
        if not MIN_VALIDITY_DAYS <= self.validity_days <= MAX_VALIDITY_DAYS:
            raise ValueError(
                f"validity must be {MIN_VALIDITY_DAYS} to {MAX_VALIDITY_DAYS} days; "
                f"got {self.validity_days}"
            )
        for label, value in (("O", self.organization), ("OU", self.organizational_unit)):
            if value is not None and not 1 <= len(value) <= MAX_NAME_CHARACTERS:
                raise ValueError(
                    f"{label} must be 1 to {MAX_NAME_CHARACTERS} characters (RFC 5280 Appendix A.1)"
                )


def _require_aware(at: datetime, name: str) -> None:
    if at.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")


def _subject(registration_id: str, profile: IssuanceProfile) -> x509.Name:
    attributes = []
    if profile.organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, profile.organization))
    if profile.organizational_unit is not None:
        attributes.append(
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, profile.organizational_unit)
        )
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, registration_id))
    return x509.Name(attributes)


def build_operational_certificate(
    csr: x509.CertificateSigningRequest,
    registration_id: str,
    issuer: Issuer,
    profile: IssuanceProfile,
    *,
    serial: int,
    now: datetime,
) -> x509.Certificate:
    """The certificate ``issuer`` signs for the key of ``csr``.

    Checks ``csr`` first with :func:`verify_csr` (and raises its errors). Subject: CN
    ``registration_id`` as given (not the CSR's spelling of it), with the profile's O and OU;
    nothing else of the CSR's subject or requested extensions is copied: the policy decides the
    profile. Valid from ``now`` less BACKDATE (but not before the issuer's notBefore) for
    ``profile.validity_days`` days, **capped at the issuer's notAfter**: a certificate must not
    outlive its CA, so near the CA's expiry the device gets a shorter one. CA:FALSE and keyUsage
    digitalSignature (plus keyEncipherment for RSA), both critical; EKU clientAuth (plus
    serverAuth when the profile says so); SKI; AKI from the issuer. Signed with SHA-384 when the
    issuer's key is P-384 or P-521, SHA-256 otherwise (issuance.signature_hash).

    Raises ValueError when the issuer is not valid at ``now``, or for a serial outside RFC 5280
    4.1.2.2.
    """
    _require_aware(now, "now")
    verify_csr(csr, registration_id)
    public_key = _allowed_key(csr)
    ca = issuer.certificate
    not_before = max(now - BACKDATE, ca.not_valid_before_utc)
    not_after = min(now + timedelta(days=profile.validity_days), ca.not_valid_after_utc)
    if not not_before <= now < not_after:
        raise ValueError(
            f"the issuing CA is valid from {ca.not_valid_before_utc.isoformat()} to "
            f"{ca.not_valid_after_utc.isoformat()}, not at {now.isoformat()}"
        )
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if profile.server_auth:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    return build_leaf_certificate(
        public_key,
        _subject(registration_id, profile),
        issuer,
        usages,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
    )


def _check_serial(serial: int, what: str) -> None:
    if serial <= 0 or serial.bit_length() > MAX_SERIAL_BITS:
        raise ValueError(f"{what} must be positive and at most 159 bits (RFC 5280 4.1.2.2)")


def build_crl(
    issuer: Issuer,
    revoked: Sequence[tuple[int, datetime]],
    *,
    number: int,
    now: datetime,
    next_update: datetime,
) -> x509.CertificateRevocationList:
    """``issuer``'s CRL (RFC 5280 5): one entry per (serial, revocation date) in ``revoked``,
    in that order; thisUpdate ``now`` less BACKDATE (a relying party whose clock is a little
    behind must not find it not yet valid), nextUpdate ``next_update`` (5.1.2.5: always
    present); the CRL number ``number`` (5.2.3: non-critical, at most 20 octets, raised for
    every new CRL) and the issuer's AKI (5.2.1). Signed like the certificates.

    Raises ValueError for a duplicate or out-of-range serial, a negative or too large number,
    a naive time, or ``next_update`` not after ``now``.
    """
    _require_aware(now, "now")
    _require_aware(next_update, "next_update")
    if next_update <= now:
        raise ValueError("next_update must be after now")
    if number < 0 or number.bit_length() > MAX_SERIAL_BITS:
        raise ValueError("the CRL number must be 0 or more and at most 20 octets (RFC 5280 5.2.3)")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now - BACKDATE)
        .next_update(next_update)
    )
    seen: set[int] = set()
    for serial, revoked_at in revoked:
        _check_serial(serial, "a revoked serial")
        _require_aware(revoked_at, "a revocation date")
        if serial in seen:
            raise ValueError(f"serial {serial:X} is listed twice")
        seen.add(serial)
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(revoked_at)
            .build()
        )
    builder = builder.add_extension(x509.CRLNumber(number), critical=False).add_extension(
        authority_key_identifier(issuer), critical=False
    )
    return builder.sign(issuer.key, signature_hash(issuer.key))


def certificate_chain_b64(chain: Sequence[x509.Certificate]) -> list[str]:
    """``issuedCertificateChain``: base64 of each certificate's DER, in the order given (the
    leaf first, then each issuer)."""
    return [
        base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in chain
    ]
