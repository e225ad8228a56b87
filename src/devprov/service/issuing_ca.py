"""A credential policy's issuing CA: the one devprov generates, or the one an operator imports.

Generating draws what the pure core must not (a key, a serial) and has
:func:`devprov.core.issuance.build_root_certificate` make a self-signed CA. Importing checks the
operator's chain and key before anything is stored: the first certificate is the issuing CA, a
CA that may sign certificates now (service.pki.issuer.verify_can_sign); each following one
signed the one before it (service.pki.issuer.verify_chain) and leaves room under its pathLen for
the CAs below it; the key is the issuing CA's. Each refusal is its own error, numbered
400621-400628 (docs/errors.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from devprov.core.certificate import (
    describe_certificate,
    format_name,
    parse_certificates,
    to_pem,
)
from devprov.core.chain import DEFAULT_MAX_CHAIN_DEPTH
from devprov.core.credential_policy import InvalidCredentialPolicyError
from devprov.core.encoding import describe_parse_failure
from devprov.core.error import InvalidInputError, MalformedCertificateError
from devprov.core.issuance import MAX_SERIAL_BITS, PrivateKey, build_root_certificate
from devprov.service.pki.ca import KeyType, generate_private_key
from devprov.service.pki.error import PathLengthExceededError
from devprov.service.pki.issuer import verify_can_sign, verify_chain
from devprov.service.port import RandomBytes

# A generated issuing CA is valid for ten years: far longer than any certificate it issues (90
# days at most), so that devices and hubs trusting it need not be told of a new one for years;
# issuance caps each certificate at the CA's notAfter (core.csr) as that date nears.
CA_VALIDITY_DAYS = 3650

# Azure's issuing CAs use P-384 (docs/operational-certificates.md); devprov's default follows.
DEFAULT_KEY_TYPE = KeyType.EC_P384

# The issuing CA and at most this many certificates above it: an issued leaf then has no more
# CAs between it and a root than device chains may have (core.chain.DEFAULT_MAX_CHAIN_DEPTH),
# and issuedCertificateChain stays a few kilobytes in an MQTT or AMQP answer.
MAX_CA_CHAIN_LENGTH = DEFAULT_MAX_CHAIN_DEPTH + 1

# RFC 5280 Appendix A.1: ub-common-name INTEGER ::= 64.
MAX_COMMON_NAME_LENGTH = 64

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class MalformedIssuingCaError(InvalidInputError):
    """The issuing CA's chain to import is not PEM certificates."""

    code = "MalformedIssuingCaChain"
    number = 400621


class IssuingCaChainTooLongError(InvalidInputError):
    """The chain to import holds more certificates than an issued leaf's chain may carry."""

    code = "IssuingCaChainTooLong"
    number = 400622


class MalformedIssuingKeyError(InvalidInputError):
    """The issuing CA's key to import is not a PEM private key devprov can sign with."""

    code = "MalformedIssuingKey"
    number = 400623


class IssuingKeyPassphraseRequiredError(InvalidInputError):
    """The issuing CA's key to import is encrypted, and no passphrase was given."""

    code = "IssuingKeyPassphraseRequired"
    number = 400624


class WrongIssuingKeyPassphraseError(InvalidInputError):
    """The passphrase given does not decrypt the issuing CA's key."""

    code = "WrongIssuingKeyPassphrase"
    number = 400625


class IssuingKeyNotEncryptedError(InvalidInputError):
    """A passphrase was given for an issuing CA key that is not encrypted."""

    code = "IssuingKeyNotEncrypted"
    number = 400626


class IssuingKeyMismatchError(InvalidInputError):
    """The key to import does not belong to the issuing CA (the chain's first certificate)."""

    code = "IssuingKeyMismatch"
    number = 400627


@dataclass(frozen=True)
class IssuingCa:
    """An issuing CA ready to store: its key, and its chain (itself first) as PEM text."""

    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    @property
    def chain_pem(self) -> str:
        return "".join(to_pem(certificate) for certificate in self.chain)


def parse_key_type(value: str | KeyType) -> KeyType:
    """``ec-p384``, ``ec-p256``, ``rsa-2048``, ``rsa-3072`` or ``rsa-4096``."""
    if isinstance(value, KeyType):
        return value
    try:
        return KeyType(value)
    except ValueError as exc:
        known = ", ".join(k.value for k in KeyType)
        raise InvalidCredentialPolicyError(
            f"an issuing CA's key type is one of {known}; got {value!r}"
        ) from exc


def ca_common_name(service: str, policy: str) -> str:
    """``<policy> issuing CA (devprov <service>)``, shortened to fit the 64 characters of a CN:
    first without the service, then the policy's name alone (at most 63 characters)."""
    for candidate in (f"{policy} issuing CA (devprov {service})", f"{policy} issuing CA"):
        if len(candidate) <= MAX_COMMON_NAME_LENGTH:
            return candidate
    return policy


def random_serial(random_bytes: RandomBytes) -> int:
    """A positive serial of at most 159 random bits (RFC 5280 4.1.2.2)."""
    while True:
        serial = int.from_bytes(random_bytes(20), "big") >> (160 - MAX_SERIAL_BITS)
        if serial > 0:
            return serial


def generate_ca(
    service: str,
    policy: str,
    key_type: KeyType,
    random_bytes: RandomBytes,
    *,
    now: datetime,
) -> IssuingCa:
    """A new key and a self-signed CA certificate for it, valid for CA_VALIDITY_DAYS from now
    (less the usual five minutes of back-dating). P-384 keys sign with SHA-384."""
    key = generate_private_key(key_type)
    certificate = build_root_certificate(
        key,
        ca_common_name(service, policy),
        serial=random_serial(random_bytes),
        now=now,
        days=CA_VALIDITY_DAYS,
    )
    return IssuingCa(key, (certificate,))


def check_imported_ca(
    chain_pem: bytes, key_pem: bytes, passphrase: bytes | None, *, now: datetime
) -> IssuingCa:
    """The operator's issuing CA, checked; raises this module's errors, and the CA checks'
    (NotACaCertificate, CertificateExpired, CertificateNotYetValid, InvalidIssuerChain,
    PathLengthExceeded)."""
    try:
        chain = parse_certificates(chain_pem)
    except MalformedCertificateError as exc:
        raise MalformedIssuingCaError(f"the issuing CA's chain: {exc.message}") from exc
    if len(chain) > MAX_CA_CHAIN_LENGTH:
        raise IssuingCaChainTooLongError(
            f"the chain holds {len(chain)} certificates; an issuing CA comes with at most "
            f"{MAX_CA_CHAIN_LENGTH - 1} above it (its issuer, up to a root)"
        )
    issuing = chain[0]
    verify_can_sign(issuing, "the issuing CA (the chain's first certificate)", now=now)
    verify_chain(chain, "the issuing CA", now=now)
    verify_path_lengths(chain)
    key = load_issuing_key(key_pem, passphrase)
    if key.public_key().public_bytes(*_SPKI) != issuing.public_key().public_bytes(*_SPKI):
        raise IssuingKeyMismatchError(
            f"the private key does not belong to the issuing CA '{format_name(issuing.subject)}' "
            "(the chain's first certificate): give that CA's own key"
        )
    return IssuingCa(key, tuple(chain))


def verify_path_lengths(chain: Sequence[x509.Certificate]) -> None:
    """Each CA above the issuing CA allows, in its pathLen, the CAs between it and the leaves the
    issuing CA signs (RFC 5280 4.2.1.9 and 6.1.4 (l), (m): self-issued ones do not count)."""
    below = 0  # the non-self-issued CAs between chain[depth] and an issued leaf
    for depth, certificate in enumerate(chain):
        limit = describe_certificate(certificate).path_length
        if depth > 0 and limit is not None and below > limit:
            raise PathLengthExceededError(
                f"'{format_name(certificate.subject)}' allows {limit} CA(s) below it (pathLen, "
                f"RFC 5280 4.2.1.9), and the issuing CA's chain puts {below} there"
            )
        if certificate.issuer != certificate.subject:
            below += 1


def load_issuing_key(key_pem: bytes, passphrase: bytes | None) -> PrivateKey:
    """The issuing CA's private key from PEM, decrypted with ``passphrase`` when encrypted."""
    try:
        key = serialization.load_pem_private_key(key_pem, passphrase)
    except TypeError as exc:  # cryptography's signal for a missing or a superfluous password
        if passphrase is None:
            raise IssuingKeyPassphraseRequiredError(
                "the issuing CA's private key is encrypted; give its passphrase"
            ) from exc
        raise IssuingKeyNotEncryptedError(
            "the issuing CA's private key is not encrypted; give no passphrase"
        ) from exc
    except ValueError as exc:
        if passphrase is not None and b"ENCRYPTED" in key_pem:
            raise WrongIssuingKeyPassphraseError(
                "the passphrase does not decrypt the issuing CA's private key"
            ) from exc
        detail = (
            describe_parse_failure(exc)
            if b"PRIVATE KEY-----" in key_pem
            else "it has no '-----BEGIN ... PRIVATE KEY-----' block"
        )
        raise MalformedIssuingKeyError(
            f"the issuing CA's private key is not a readable PEM private key: {detail}"
        ) from exc
    except UnsupportedAlgorithm as exc:
        raise MalformedIssuingKeyError(
            "the issuing CA's private key uses an algorithm devprov cannot read"
        ) from exc
    if not isinstance(key, PrivateKey):
        raise MalformedIssuingKeyError(
            f"the issuing CA's private key is a {type(key).__name__}; devprov signs with RSA, "
            "EC or Ed25519 keys"
        )
    return key
