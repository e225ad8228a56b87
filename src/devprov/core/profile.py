"""The device profile's own rules as pure checks, each returning the breach it finds or None.

:mod:`devprov.core.chain` hands these checks to cryptography's verifier as extension validators
(which must raise) and :mod:`devprov.core.refusal` applies them again to say which certificate
breaks which rule, since cryptography's reason does not name the certificate. Rule ids (E2, C3,
...) are those of the chain module's docstring and of
docs/chain-validation.md#the-device-profile-rule-by-rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

# E7: CA/B 6.1.5. RSA moduli of at least 2048 bits, evenly divisible by 8; NIST P-256/384/521.
MIN_RSA_KEY_BITS = 2048
# cryptography names some purposes "Unknown OID" (anyExtendedKeyUsage among them); an operator
# reads the names OpenSSL's configuration files use.
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}

_KEY_NAMES: tuple[tuple[type, str], ...] = (
    (ed25519.Ed25519PublicKey, "an Ed25519 key"),
    (ed448.Ed448PublicKey, "an Ed448 key"),
    (dsa.DSAPublicKey, "a DSA key"),
)

_REISSUE_DEVICE = "issue the device a new certificate"


@dataclass(frozen=True)
class Breach:
    """A rule of the device profile that one certificate breaks, in words an operator acts on.

    ``problem`` is said of the certificate ("has an RSA-1024 key"), so that a message can put
    the certificate's name in front of it.
    """

    rule: str  # the rule id: "E1"
    source: str  # the section it enforces: "RFC 5280 4.2.1.9"
    problem: str
    remedy: str = ""

    def citation(self) -> str:
        return f"rule {self.rule}, {self.source}"

    def sentence(self, who: str) -> str:
        """``who`` (a named certificate) followed by the problem, the rule and the remedy."""
        text = f"{who} {self.problem} ({self.citation()})"
        return f"{text}; {self.remedy}" if self.remedy else text


def eku_name(oid: x509.ObjectIdentifier) -> str:
    return _EKU_NAMES.get(oid, oid.dotted_string)


def eku_names(usage: x509.ExtendedKeyUsage) -> str:
    return ", ".join(eku_name(oid) for oid in usage) or "none"


def ca_key_usage_breach(usage: x509.KeyUsage | None) -> Breach | None:
    """C2: RFC 5280 6.1.4(n) checks keyCertSign only when keyUsage is present."""
    if usage is not None and not usage.key_cert_sign:
        return Breach(
            "C2",
            "RFC 5280 4.2.1.3, 6.1.4(n)",
            "has a keyUsage without keyCertSign, so it may not sign certificates",
            "re-issue the CA with keyUsage keyCertSign (OpenSSL's v3_ca section has it)",
        )
    return None


def ca_eku_breach(
    usage: x509.ExtendedKeyUsage | None, required: x509.ObjectIdentifier
) -> Breach | None:
    """C3: a CA restricted to other purposes cannot vouch for a device's ``required`` one."""
    if usage is None or required in usage or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usage:
        return None
    return Breach(
        "C3",
        "RFC 5280 4.2.1.12",
        f"has an extendedKeyUsage ({eku_names(usage)}) that allows neither {eku_name(required)} "
        "nor anyExtendedKeyUsage, so it cannot vouch for devices",
        f"re-issue the CA without extendedKeyUsage, or with {eku_name(required)}",
    )


def ee_key_usage_breach(usage: x509.KeyUsage | None) -> Breach | None:
    """E2: a device authenticates by signing the TLS handshake; it never signs certificates."""
    if usage is None:
        return None
    if usage.key_cert_sign:
        return Breach(
            "E2",
            "RFC 5280 4.2.1.3",
            "has a keyUsage with keyCertSign, which only a CA certificate may assert",
            "re-issue it with keyUsage digitalSignature (OpenSSL's usr_cert section)",
        )
    if not usage.digital_signature:
        return Breach(
            "E2",
            "RFC 5280 4.2.1.3, RFC 8446 4.4.3",
            "has a keyUsage without digitalSignature, which TLS client authentication needs",
            "re-issue it with keyUsage digitalSignature (OpenSSL's usr_cert section)",
        )
    return None


def ee_eku_breach(
    usage: x509.ExtendedKeyUsage | None, required: x509.ObjectIdentifier
) -> Breach | None:
    """E3: RFC 5280 4.2.1.12, "the certificate MUST only be used for one of the purposes
    indicated"; anyExtendedKeyUsage alone does not name the purpose (CA/B 7.1.2.7.10)."""
    if usage is None or required in usage:
        return None
    return Breach(
        "E3",
        "RFC 5280 4.2.1.12",
        f"has an extendedKeyUsage ({eku_names(usage)}) without {eku_name(required)}",
        f"re-issue it with extendedKeyUsage {eku_name(required)}",
    )


def ee_san_breach(
    certificate: x509.Certificate, names: x509.SubjectAlternativeName | None
) -> Breach | None:
    """E4: the SAN is optional for devices; RFC 5280's rules that tie it to the subject remain."""
    subject_empty = len(certificate.subject) == 0
    if names is None:
        if not subject_empty:
            return None
        return Breach(
            "E4",
            "RFC 5280 4.1.2.6",
            "has an empty subject and no subjectAltName, so it names no device",
            "re-issue it with the subject CN=<registration id>",
        )
    critical = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    if subject_empty and not critical:
        return Breach(
            "E4",
            "RFC 5280 4.2.1.6",
            "has an empty subject and a non-critical subjectAltName; with an empty subject the "
            "subjectAltName must be critical",
            "re-issue it with the subject CN=<registration id>",
        )
    if not subject_empty and critical:
        return Breach(
            "E4",
            "RFC 5280 4.2.1.6, CA/B 7.1.2.7.12",
            "has a subject and a critical subjectAltName; the subjectAltName must not be critical "
            "when the subject is present",
            "re-issue it with a non-critical subjectAltName",
        )
    return None


def other_key_name(key: object) -> str:
    """A key that is neither RSA nor EC, named for a message: "an Ed25519 key"."""
    return next((name for kind, name in _KEY_NAMES if isinstance(key, kind)), "a key")


# The keys CA/B 6.1.5 allows, the set cryptography demands of every issuer (P2) and devprov of
# devices (E7): RSA of at least 2048 bits, ECDSA on these curves.
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def weak_key(key: object, *, whose: str, rsa_multiple_of: int = 1) -> str | None:
    """What is wrong with ``key`` under CA/B 6.1.5 ("an RSA-1024 key"), or None when it is
    allowed. Devices' RSA moduli must also be a multiple of 8 bits (``rsa_multiple_of``)."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size >= MIN_RSA_KEY_BITS and key.key_size % rsa_multiple_of == 0:
            return None
        return f"an RSA-{key.key_size} key"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ALLOWED_CURVES):
            return None
        return f"an EC key on {key.curve.name}"
    return f"{other_key_name(key)} of a kind {whose} may not use"


def device_key_breach(leaf: x509.Certificate) -> Breach | None:
    """E7: the device's own key meets the strength cryptography demands of issuers."""
    try:
        key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return Breach(
            "E7",
            "RFC 5280 4.1.2.7",
            "has a public key that cannot be read (malformed, or of an algorithm devprov does "
            "not know)",
            _REISSUE_DEVICE,
        )
    problem = weak_key(key, whose="devices", rsa_multiple_of=8)
    if problem is None:
        return None
    return Breach(
        "E7",
        "CA/B 6.1.5",
        f"has {problem}; a device key is RSA of at least {MIN_RSA_KEY_BITS} bits (a multiple "
        "of 8) or ECDSA on P-256, P-384 or P-521",
        f"{_REISSUE_DEVICE}, with a new key",
    )
