"""Device certificate chain validation: devprov's one device profile over cryptography's verifier.

A device registering over mutual TLS presents its certificate and the intermediates it chooses to
send; the enrollment supplies the trust anchors (an enrollment group's CA certificate, or an
individual enrollment's own self-signed device certificate). :func:`validate_device_chain` decides
whether the chain validates up to one of those anchors at the time ``at``.

Path building, signatures, validity, pathLen, name constraints and the extension checks are
cryptography's ``x509.verification`` (RFC 5280 section 6 with the CA/B Forum Baseline
Requirements profile); this module writes out which extension rules apply to CA and to device
certificates. "devprov" marks a rule that differs from cryptography's WebPKI defaults, "RFC
deviation" one that differs from RFC 5280; each says why. A refusal's message, naming the
certificate at fault and the rule it breaks, is written by :mod:`devprov.core.refusal`.

Path (cryptography, not configurable)
  * P1  A chain is built from the leaf through the presented intermediates to a certificate in
        the anchor set (6.1; 6.1.1(d): an anchor is trusted as given, its own signature is not
        checked). A leaf that is itself an anchor (byte for byte) is a chain of one: this is how
        an individual enrollment's self-signed device certificate validates.
  * P2  Each certificate is signed by the next one's key (6.1.3(a)(1)) with an algorithm on the
        CA/B 7.1.3.2 list: RSA PKCS#1 v1.5 or PSS with SHA-256/384/512, ECDSA with
        SHA-256/384/512; issuer keys are RSA of at least 2048 bits or P-256/384/521 (CA/B 6.1.5,
        7.1.3.1). The list cannot be changed from Python: Ed25519 and SHA-1 chains are refused.
  * P3  Every certificate, the anchor included, is valid at ``at``, bounds inclusive
        (6.1.3(a)(2), 4.1.2.5). RFC deviation: RFC 5280 does not check the anchor's validity.
  * P4  Issuer and subject names chain (6.1.3(a)(4)); the issuer name is not empty (4.1.2.4).
  * P5  At most ``max_chain_depth`` intermediates lie between leaf and anchor; cryptography also
        stops path building after 128 signature checks, whatever the depth.
  * P6  pathLenConstraint is honoured (6.1.4(l), (m)). RFC deviation (cryptography's, as in Go
        and rustls-webpki): self-issued intermediates count towards it and towards P5.
  * P7  Name constraints apply to DNS, IP and e-mail subjectAltNames (6.1.3(b), (c)). RFC
        deviation (CA/B 7.1.2.10.8): a non-critical nameConstraints extension is honoured too.
  * P8  Certificates are X.509 v3 (CA/B 7.1.1; RFC deviation: RFC 5280 also allows v1 and v2),
        serial numbers are at most 20 octets and not negative (4.1.2.2; RFC deviation: zero is
        accepted, some roots still have it), signatureAlgorithm equals the TBS signature field
        (4.1.1.2), no extension occurs twice and no unknown extension is critical (4.2).

CA certificates (every issuer, the anchor included)
  * C1  basicConstraints present, critical, cA TRUE (4.2.1.9; 6.1.4(k)).
  * C2  devprov: keyUsage, when present, asserts keyCertSign (4.2.1.3; 6.1.4(n)). An absent
        keyUsage is accepted, as in RFC 5280 6.1.4(n); CA/B 7.1.2.10.7 requires it, but
        OpenSSL's default ``v3_ca`` section omits it and many private device PKIs were made
        that way.
  * C3  devprov: extendedKeyUsage, when present, contains ``required_eku`` or
        anyExtendedKeyUsage (EKU chaining, as cryptography does for its fixed EKUs; RFC 5280
        4.2.1.12 leaves a CA's EKU to the application).
  * C4  authorityKeyIdentifier, when present, is non-critical with a keyIdentifier (4.2.1.1;
        CA/B 7.1.2.11.1); subjectKeyIdentifier is optional and non-critical (4.2.1.2);
        nameConstraints, when present, are not empty (4.2.1.10); authorityInfoAccess parses and
        is non-critical (4.2.2.1). RFC deviation (cryptography's): a CA without AKI or SKI is
        accepted; 4.2.1.1 and 4.2.1.2 oblige the issuing CA, and 6.1 uses neither.

Device (leaf) certificates
  * E1  basicConstraints, when present, has cA FALSE (4.2.1.9). RFC deviation: RFC 5280 lets a
        CA certificate be a path's end entity; a CA certificate is not a device identity here.
        DPS devices present client certificates (certGen ``usr_cert``). The C SDK's
        ``create_edge_device_certificate`` makes an IoT Edge *device CA*, which signs Edge's
        module server certificates and is not what Edge registers with: IoT Edge's own
        certGen.sh has ``create_edge_device_identity_certificate`` (a ``usr_cert`` leaf) for
        DPS and ``create_edge_device_ca_certificate`` for the CA.
  * E2  devprov: keyUsage, when present, asserts digitalSignature, since the device signs the
        TLS CertificateVerify (RFC 8446 4.4.3, RFC 5246 7.4.8), and does not assert keyCertSign
        (4.2.1.3). cryptography checks only the second.
  * E3  devprov: extendedKeyUsage, when present, contains ``required_eku`` (4.2.1.12); an
        absent EKU is accepted (CA/B 7.1.2.7.6 requires one, RFC 5280 does not).
        anyExtendedKeyUsage alone does not satisfy it (4.2.1.12 lets applications refuse it);
        beside the required purpose it is accepted (CA/B 7.1.2.7.10 forbids that for TLS
        servers). RFC deviation (CA/B, kept from cryptography): the EKU must be non-critical.
  * E4  devprov: subjectAltName is optional. Deviation from CA/B 7.1.2.7.12, not from RFC 5280
        4.2.1.6: devices are named by subject CN
        (docs/attestation.md#registration-id-and-the-certificate-cn) and certGen.sh device
        certificates carry no SAN. Without a SAN the subject must not be empty (4.1.2.6); with
        one, it is critical exactly when the subject is empty (4.2.1.6, CA/B 7.1.2.7.12).
  * E5  devprov: authorityKeyIdentifier is optional (non-critical when present, 4.2.1.1).
        4.2.1.1 obliges the issuing CA but path validation (6.1) does not use it, and
        self-signed device certificates (devprov's own among them) usually lack it.
  * E6  nameConstraints must not appear (4.2.1.10: CA certificates only); subjectKeyIdentifier
        and authorityInfoAccess as for CAs.
  * E7  devprov: the device key is RSA of at least 2048 bits and a multiple of 8, or ECDSA on
        P-256, P-384 or P-521 (CA/B 6.1.5, 7.1.3.1): the key set cryptography demands of every
        issuer (P2) but does not check for the leaf. The device proves possession of this key in
        the handshake, so a weak one makes the identity forgeable.

Not enforced
  * N1  directoryName name constraints (4.2.1.10 on the subject DN): cryptography does not
        implement them and refuses a chain with a critical one (fails closed). Certificate
        policies (6.1.3(d)-(f), 4.2.1.11) are not processed.
  * N2  Revocation (6.1.3(a)(3)): devprov does not fetch CRLs or OCSP; disabling an enrollment
        or deleting a registration is how a device is cut off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from devprov.core.error import InvalidDeviceCertificateError
from devprov.core.profile import (
    Breach,
    ca_eku_breach,
    ca_key_usage_breach,
    device_key_breach,
    ee_eku_breach,
    ee_key_usage_breach,
    ee_san_breach,
)
from devprov.core.refusal import explain_refusal, name_device

# Intermediates allowed between the device certificate and its anchor (P5). DPS documents no limit
# (docs/attestation.md#chain-depth). certGen.sh chains have one intermediate and DPS's own example
# two (docs/attestation.md#the-device-presents-its-chain); five leaves room for a root, a policy CA
# and per-plant or per-line issuing CAs, while bounding the path an unauthenticated device can make
# us walk (cryptography's own default is 8).
DEFAULT_MAX_CHAIN_DEPTH = 5

# cryptography keeps the depth in a u8.
_MAX_SUPPORTED_DEPTH = 255


@dataclass(frozen=True)
class ValidatedChain:
    """A chain that validated: leaf first, the trust anchor last, as the verifier built it."""

    chain: tuple[x509.Certificate, ...]
    anchor: x509.Certificate

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


def _raise(breach: Breach | None) -> None:
    """cryptography's extension validators report a failure by raising."""
    if breach is not None:
        raise ValueError(f"{breach.problem} ({breach.citation()})")


def _ca_key_usage_rule(
    _policy: Policy, _cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    _raise(ca_key_usage_breach(usage))


def _ca_eku_rule(
    required: x509.ObjectIdentifier,
) -> Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]:
    def check(
        _policy: Policy, _cert: x509.Certificate, usage: x509.ExtendedKeyUsage | None
    ) -> None:
        _raise(ca_eku_breach(usage, required))

    return check


def _ee_eku_rule(
    required: x509.ObjectIdentifier,
) -> Callable[[Policy, x509.Certificate, x509.ExtendedKeyUsage | None], None]:
    def check(
        _policy: Policy, _cert: x509.Certificate, usage: x509.ExtendedKeyUsage | None
    ) -> None:
        _raise(ee_eku_breach(usage, required))

    return check


def _ee_key_usage_rule(
    _policy: Policy, _cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    _raise(ee_key_usage_breach(usage))


def _ee_san_rule(
    _policy: Policy, cert: x509.Certificate, names: x509.SubjectAlternativeName | None
) -> None:
    _raise(ee_san_breach(cert, names))


def _build_extension_policies(
    required_eku: x509.ObjectIdentifier,
) -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """The device profile's CA and EE extension policies (rules C1-C4 and E1-E6)."""
    ca_policy = (
        ExtensionPolicy.webpki_defaults_ca()
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage_rule)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, _ca_eku_rule(required_eku))
    )
    ee_policy = (
        ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ee_key_usage_rule)
        .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, _ee_san_rule)
        .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, _ee_eku_rule(required_eku))
    )
    return ca_policy, ee_policy


class DeviceChainValidator:
    """The device profile bound to a fixed anchor set; build once, validate many times.

    cryptography's PolicyBuilder takes the validation time, so the verifier itself is built per
    call (a few microseconds); the store and the extension policies, which do not depend on the
    time, are built here once.
    """

    def __init__(
        self,
        anchors: Sequence[x509.Certificate],
        *,
        max_chain_depth: int = DEFAULT_MAX_CHAIN_DEPTH,
        required_eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
    ) -> None:
        if not 0 <= max_chain_depth <= _MAX_SUPPORTED_DEPTH:
            raise ValueError(f"max_chain_depth must be 0 to {_MAX_SUPPORTED_DEPTH}")
        self._anchors = tuple(anchors)
        self._store = Store(list(self._anchors)) if self._anchors else None
        self._max_chain_depth = max_chain_depth
        self._required_eku = required_eku
        self._ca_policy, self._ee_policy = _build_extension_policies(required_eku)

    def build_verifier(self, *, at: datetime) -> ClientVerifier:
        """The cryptography verifier for this profile at ``at``."""
        _require_aware(at)
        if self._store is None:
            raise InvalidDeviceCertificateError(
                "no trust anchor (verified certificate) is configured for this enrollment "
                "(rule P1, RFC 5280 6.1)"
            )
        return (
            PolicyBuilder()
            .store(self._store)
            .time(at)
            .max_chain_depth(self._max_chain_depth)
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )

    def validate(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        *,
        at: datetime,
    ) -> ValidatedChain:
        """Validate ``leaf`` with ``intermediates`` up to an anchor; raise on any failure."""
        _require_aware(at)
        if self._store is None:
            raise InvalidDeviceCertificateError(
                f"{name_device(leaf)} does not validate: no trust anchor (verified certificate) "
                "is configured for its enrollment (rule P1, RFC 5280 6.1); verify the "
                "enrollment's CA, or enroll the device's own certificate"
            )
        verifier = self.build_verifier(at=at)
        _check_device_key(leaf)
        try:
            chain = tuple(verifier.verify(leaf, list(intermediates)).chain)
        except (VerificationError, ValueError) as exc:
            message = explain_refusal(
                leaf,
                intermediates,
                self._anchors,
                at=at,
                max_chain_depth=self._max_chain_depth,
                required_eku=self._required_eku,
                reason=str(exc),
            )
            raise InvalidDeviceCertificateError(message) from exc
        return ValidatedChain(chain=chain, anchor=chain[-1])


def validate_device_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    at: datetime,
    max_chain_depth: int = DEFAULT_MAX_CHAIN_DEPTH,
    required_eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
) -> ValidatedChain:
    """Validate a device's chain under the device profile; raise InvalidDeviceCertificateError.

    ``anchors`` are trusted as given (an enrollment group's CA certificate, or an individual
    enrollment's self-signed device certificate). A naive ``at`` or an out-of-range
    ``max_chain_depth`` is a programming error and raises ValueError.
    """
    validator = DeviceChainValidator(
        anchors, max_chain_depth=max_chain_depth, required_eku=required_eku
    )
    return validator.validate(leaf, intermediates, at=at)


def issuer_path(
    leaf: x509.Certificate,
    presented: Sequence[x509.Certificate],
    known: Sequence[x509.Certificate] = (),
    *,
    max_length: int = DEFAULT_MAX_CHAIN_DEPTH + 1,
) -> tuple[x509.Certificate, ...]:
    """The certificates above ``leaf``, nearest first: its issuer, that one's issuer, and so on.

    This answers *which* certificates a device's chain names, not whether they are trusted:
    enrollment groups are looked up on each of them, nearest first (DPS's order of operations,
    docs/attestation.md), and :func:`validate_device_chain` decides trust afterwards. Issuers are
    found by name among the certificates the device ``presented`` first, then among ``known``
    ones (the service's registry), so a device that stops its chain at a verified intermediate
    still names the root above it. Where several certificates carry the issuer's name (a renewed
    CA keeps its name), the one whose key verifies the signature is taken. The walk stops at a
    self-issued certificate, at a name no candidate carries, at a certificate already on the
    path, or after ``max_length`` certificates.
    """
    pool = [*presented, *known]
    path: list[x509.Certificate] = []
    current = leaf
    while len(path) < max_length and current.issuer != current.subject:
        parent = _issuer_of(current, pool)
        if parent is None or parent == leaf or parent in path:
            break
        path.append(parent)
        current = parent
    return tuple(path)


def _issuer_of(
    child: x509.Certificate, pool: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    named = [candidate for candidate in pool if candidate.subject == child.issuer]
    if len(named) <= 1:
        # One candidate needs no signature check here: validation checks every signature of
        # the path it trusts, and a look-alike only fails the device that sent it.
        return named[0] if named else None
    for candidate in named:
        try:
            child.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return candidate
    return None


def _require_aware(at: datetime) -> None:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the validation time must be an aware datetime")


def _check_device_key(leaf: x509.Certificate) -> None:
    """E7: the device's own key meets the strength cryptography demands of issuers."""
    breach = device_key_breach(leaf)
    if breach is not None:
        raise InvalidDeviceCertificateError(
            f"{name_device(leaf)} does not validate: {breach.sentence('it')}"
        )
