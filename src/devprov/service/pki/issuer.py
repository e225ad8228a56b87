"""Issuer checks: an issuer signs only if it can, and what it signs stays within its chain.

An issuer is loaded only as a CA whose keyUsage allows signing, holding the matching key, valid
now, with a chain whose every link verifies (its own file or ``X-chain.pem``). A child asks for a
pathLen and a validity; the issuer's chain may lower both, with a warning, or refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from devprov.core.certificate import CLOCK_SKEW, describe_certificate, format_name
from devprov.core.error import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    NotACaCertificateError,
)
from devprov.core.issuance import Issuer
from devprov.service.pki.error import (
    InvalidIssuerChainError,
    IssuerExpiresTooSoonError,
    IssuerKeyMismatchError,
    PathLengthExceededError,
)
from devprov.service.pki.file import load_certificates, load_private_key


@dataclass(frozen=True)
class LoadedIssuer:
    """An issuer checked to be able to sign now, with its chain (itself first) as far as known."""

    issuer: Issuer
    chain: tuple[x509.Certificate, ...]
    warnings: tuple[str, ...] = ()


def load_issuer(
    certificate_path: Path, key_path: Path, password: bytes | None, *, now: datetime
) -> LoadedIssuer:
    """Load and check an issuer; the chain comes from the file itself or ``X-chain.pem``."""
    certificates = load_certificates(certificate_path)
    certificate = certificates[0]
    verify_can_sign(certificate, certificate_path, now=now)
    key = load_private_key(key_path, password, flag="--issuer-password-file")
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(
        serialization.Encoding.DER, public
    ) != certificate.public_key().public_bytes(serialization.Encoding.DER, public):
        raise IssuerKeyMismatchError(
            f"the key {key_path} does not belong to the certificate {certificate_path}"
        )
    if len(certificates) == 1 and certificate.issuer != certificate.subject:
        certificates = _sibling_chain(certificate, certificate_path)
    warnings = verify_chain(certificates, certificate_path, now=now)
    return LoadedIssuer(Issuer(certificate, key), tuple(certificates), warnings)


def verify_can_sign(certificate: x509.Certificate, path: Path | str, *, now: datetime) -> None:
    """Raise unless ``certificate`` is a CA (basicConstraints CA:TRUE) whose keyUsage, if any,
    allows keyCertSign, valid at ``now``; ``path`` names it in the message (a file, or words
    such as "the issuing CA")."""
    facts = describe_certificate(certificate)
    if not facts.is_ca:
        raise NotACaCertificateError(
            f"{path} ('{facts.subject}') is not a CA certificate: signing needs basicConstraints "
            "CA:TRUE (RFC 5280 4.2.1.9); name a root or an intermediate as the issuer"
        )
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise NotACaCertificateError(
            f"{path} ('{facts.subject}') may not sign certificates: its keyUsage lacks "
            "keyCertSign (RFC 5280 4.2.1.3)"
        )
    if now >= facts.not_after:
        raise CertificateExpiredError(
            f"{path} ('{facts.subject}') expired at {facts.not_after.isoformat()}"
        )
    if now + CLOCK_SKEW < facts.not_before:
        raise CertificateNotYetValidError(
            f"{path} ('{facts.subject}') is not valid before {facts.not_before.isoformat()}"
        )


def _sibling_chain(certificate: x509.Certificate, path: Path) -> list[x509.Certificate]:
    """``X-chain.pem`` beside ``X.pem``, when there is one and it starts with ``certificate``."""
    if path.suffix != ".pem" or path.stem.endswith("-chain"):
        return [certificate]
    chain_path = path.with_name(f"{path.stem}-chain.pem")
    if not chain_path.exists():
        return [certificate]
    chain = load_certificates(chain_path)
    if chain[0] != certificate:
        raise InvalidIssuerChainError(f"{chain_path} does not start with the certificate {path}")
    return chain


def verify_chain(
    chain: Sequence[x509.Certificate], path: Path | str, *, now: datetime
) -> tuple[str, ...]:
    """Raise unless each certificate of ``chain`` is signed by the next (RFC 5280 6.1.3) and
    each signer may sign now (``verify_can_sign``); a warning when the chain stops short of a
    root."""
    for child, parent in pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise InvalidIssuerChainError(
                f"in the chain of {path}, '{format_name(child.subject)}' is not signed by "
                f"'{format_name(parent.subject)}' (RFC 5280 6.1.3)"
            ) from exc
        verify_can_sign(parent, path, now=now)
    top = chain[-1]
    if top.issuer == top.subject:
        return ()
    return (
        f"the chain of {path} stops at '{format_name(top.subject)}', which is not a root: the "
        f"chain files written now stop there too; append '{format_name(top.issuer)}' by hand",
    )


def clamp_validity_days(
    days: int, issuer: LoadedIssuer, now: datetime
) -> tuple[int, tuple[str, ...]]:
    """Clamp ``days`` so the new certificate does not outlive any certificate of its chain."""
    limit = min(c.not_valid_after_utc for c in issuer.chain)
    if now + timedelta(days=days) <= limit:
        return days, ()
    whole = (limit - now) // timedelta(days=1)
    if whole < 1:
        raise IssuerExpiresTooSoonError(
            f"the issuer's chain expires at {limit.isoformat()}, less than a day from now; "
            "renew it before signing with it"
        )
    return whole, (
        f"validity shortened from {days} to {whole} days: a certificate should not outlive its "
        f"issuer, whose chain expires at {limit.isoformat()}",
    )


def clamp_path_length(
    requested: int | None, issuer: LoadedIssuer
) -> tuple[int | None, tuple[str, ...]]:
    """Room left under each pathLen of the chain for one more CA (RFC 5280 6.1.4 (l), (m))."""
    room: int | None = None
    for depth, certificate in enumerate(issuer.chain):
        limit = describe_certificate(certificate).path_length
        if limit is not None:
            left = limit - depth - 1
            room = left if room is None else min(room, left)
    if room is not None and room < 0:
        raise PathLengthExceededError(
            f"'{format_name(issuer.issuer.certificate.subject)}' may not sign another CA: a "
            "pathLen in its chain allows no further intermediate (RFC 5280 4.2.1.9)"
        )
    if room is None or requested is None or requested <= room:
        return requested, ()
    return room, (
        f"pathLen lowered from {requested} to {room}, the most the issuer's chain allows",
    )
