"""One certificate against the device profile, as the device or as an issuer of the chain.

The rules of docs/chain-validation.md#the-device-profile-rule-by-rule that concern a single
certificate (or an issuer and the certificate it issued), as pure checks that return the first
:class:`~devprov.core.profile.Breach` they find. cryptography's verifier enforces these rules;
:mod:`devprov.core.refusal` applies the checks again to say which certificate breaks which rule.
Only rules the verifier of cryptography 50 is known to enforce are checked here: a breach found
here is always a true reason for a refusal.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import ExtensionOID

from devprov.core.encoding import (
    describe_parse_failure,
    oid_name,
    signature_algorithms_agree,
)
from devprov.core.profile import (
    MIN_RSA_KEY_BITS,
    Breach,
    ca_eku_breach,
    ca_key_usage_breach,
    ee_eku_breach,
    ee_key_usage_breach,
    ee_san_breach,
    weak_key,
)

# A device chooses its subject; messages keep at most this much of one.
MAX_SUBJECT_IN_MESSAGE = 200

# The extensions cryptography's policies account for; any other one marked critical is refused
# (P8, RFC 5280 4.2).
_KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.EXTENDED_KEY_USAGE,
    }
)
# Extensions that must not be critical: (rule, source) for a device and for a CA.
_MUST_NOT_BE_CRITICAL = {
    ExtensionOID.EXTENDED_KEY_USAGE: (("E3", "CA/B 7.1.2.7.10"), ("C3", "RFC 5280 4.2.1.12")),
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER: (("E5", "RFC 5280 4.2.1.1"), ("C4", "RFC 5280 4.2.1.1")),
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: (
        ("E6", "RFC 5280 4.2.2.1"),
        ("C4", "RFC 5280 4.2.2.1"),
    ),
    ExtensionOID.SUBJECT_KEY_IDENTIFIER: (None, ("C4", "RFC 5280 4.2.1.2")),
}

RENEW = "renew it (a new certificate for the same name and key) and use the new one"


def subject_of(certificate: x509.Certificate) -> str:
    """The RFC 4514 subject, bounded in length: a device chooses it."""
    try:
        text = certificate.subject.rfc4514_string()
    except ValueError:
        return "(unreadable subject)"
    return shorten(text) or "(empty subject)"


def shorten(text: str) -> str:
    if len(text) > MAX_SUBJECT_IN_MESSAGE:
        return text[:MAX_SUBJECT_IN_MESSAGE] + "..."
    return text


def issuer_key_breach(issuer: x509.Certificate) -> Breach | None:
    """P2: issuer keys are RSA of at least 2048 bits or ECDSA P-256/384/521 (CA/B 6.1.5)."""
    kind: str | None
    try:
        key = issuer.public_key()
    except (ValueError, UnsupportedAlgorithm):
        kind = "a public key that cannot be read"
    else:
        kind = weak_key(key, whose="CAs")
        if kind is None:
            return None
    return Breach(
        "P2",
        "CA/B 6.1.5, 7.1.3.1",
        f"has {kind}; a CA key is RSA of at least "
        f"{MIN_RSA_KEY_BITS} bits or ECDSA on P-256, P-384 or P-521",
        "re-issue the CA with such a key, and the certificates below it",
    )


def _extensions(certificate: x509.Certificate) -> x509.Extensions | Breach:
    try:
        return certificate.extensions
    except x509.DuplicateExtension as exc:
        return Breach(
            "P8",
            "RFC 5280 4.2",
            f"carries the {oid_name(exc.oid)} extension twice",
            "re-issue it with each extension once",
        )
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as exc:
        return Breach(
            "P8",
            "RFC 5280 4.2",
            f"has extensions that do not parse: {describe_parse_failure(exc)}",
            "re-issue it",
        )


def _basic_breach(certificate: x509.Certificate, at: datetime, *, device: bool) -> Breach | None:
    """P8 version and algorithm fields, P4 issuer name and P3 validity, for any certificate of
    the path."""
    if certificate.version is not x509.Version.v3:
        return Breach(
            "P8",
            "CA/B 7.1.1",
            f"is an X.509 {certificate.version.name} certificate; only v3 is accepted",
            "re-issue it as X.509 v3",
        )
    if not signature_algorithms_agree(certificate):
        return Breach(
            "P8",
            "RFC 5280 4.1.1.2",
            "names one signature algorithm in its signed part and another beside its signature",
            "re-issue it",
        )
    if len(certificate.issuer) == 0:
        return Breach(
            "P4",
            "RFC 5280 4.1.2.4",
            "has an empty issuer name",
            "re-issue it from a CA with a name",
        )
    remedy = "issue the device a new certificate" if device else RENEW
    if at > certificate.not_valid_after_utc:
        return Breach(
            "P3",
            "RFC 5280 6.1.3(a)(2), 4.1.2.5",
            f"expired at {certificate.not_valid_after_utc.isoformat()} "
            f"(checked at {at.isoformat()})",
            remedy,
        )
    if at < certificate.not_valid_before_utc:
        return Breach(
            "P3",
            "RFC 5280 6.1.3(a)(2), 4.1.2.5",
            f"is not valid before {certificate.not_valid_before_utc.isoformat()} "
            f"(checked at {at.isoformat()}); is a clock wrong?",
            "wait for its validity period, or correct the issuing clock",
        )
    return None


def _criticality_breach(extensions: x509.Extensions, *, device: bool) -> Breach | None:
    for extension in extensions:
        if extension.oid not in _KNOWN_EXTENSIONS:
            if extension.critical:
                return Breach(
                    "P8",
                    "RFC 5280 4.2",
                    f"marks the extension {oid_name(extension.oid)} critical, which the "
                    "profile does not know and so must refuse",
                    "re-issue it without that extension, or with it non-critical",
                )
            continue
        rules = _MUST_NOT_BE_CRITICAL.get(extension.oid)
        rule = rules and rules[0 if device else 1]
        if extension.critical and rule:
            return Breach(
                rule[0],
                rule[1],
                f"marks its {oid_name(extension.oid)} extension critical; it must not be",
                "re-issue it with that extension non-critical",
            )
    return None


def device_breach(
    leaf: x509.Certificate, at: datetime, required_eku: x509.ObjectIdentifier
) -> Breach | None:
    """The device-certificate rules: P3, P8 and E1-E6 (E7 is checked before validation)."""
    extensions = _extensions(leaf)
    if isinstance(extensions, Breach):
        return extensions
    breach = _basic_breach(leaf, at, device=True)
    if breach is not None:
        return breach
    values = {extension.oid: extension.value for extension in extensions}
    constraints = values.get(ExtensionOID.BASIC_CONSTRAINTS)
    if isinstance(constraints, x509.BasicConstraints) and constraints.ca:
        return _ca_as_device(leaf)
    usage = values.get(ExtensionOID.KEY_USAGE)
    eku = values.get(ExtensionOID.EXTENDED_KEY_USAGE)
    san = values.get(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    breach = (
        _criticality_breach(extensions, device=True)
        or ee_key_usage_breach(usage if isinstance(usage, x509.KeyUsage) else None)
        or ee_eku_breach(eku if isinstance(eku, x509.ExtendedKeyUsage) else None, required_eku)
        or ee_san_breach(leaf, san if isinstance(san, x509.SubjectAlternativeName) else None)
    )
    if breach is None and ExtensionOID.NAME_CONSTRAINTS in values:
        breach = Breach(
            "E6",
            "RFC 5280 4.2.1.10",
            "carries nameConstraints, which only a CA certificate may carry",
            "re-issue it without nameConstraints",
        )
    return breach


def _ca_as_device(leaf: x509.Certificate) -> Breach:
    """E1, with the two ways such certificates are usually made."""
    if leaf.issuer == leaf.subject:
        made = (
            "`openssl req -x509` with OpenSSL's default configuration makes such a certificate; "
            "add -extensions usr_cert, or use devprov ca device NAME --self-signed"
        )
    else:
        made = (
            "certGen's create_edge_device_certificate makes such a certificate, for IoT Edge's "
            "module CA; a device registers with a leaf certificate: certGen's "
            "create_device_certificate, or devprov ca device (IoT Edge itself registers with "
            "the leaf of IoT Edge's create_edge_device_identity_certificate)"
        )
    return Breach(
        "E1",
        "RFC 5280 4.2.1.9",
        "is a CA certificate (basicConstraints CA:TRUE), and a CA certificate is never a "
        "device's identity",
        made,
    )


def issuer_breach(
    issuer: x509.Certificate,
    child: x509.Certificate,
    depth: int,
    at: datetime,
    required_eku: x509.ObjectIdentifier,
) -> Breach | None:
    """The CA rules for ``issuer`` as the issuer of ``child``: P3, P6, P8 and C1-C4."""
    extensions = _extensions(issuer)
    if isinstance(extensions, Breach):
        return extensions
    breach = _basic_breach(issuer, at, device=False)
    if breach is not None:
        return breach
    breach = _basic_constraints_breach(extensions, child, depth)
    if breach is not None:
        return breach
    values = {extension.oid: extension.value for extension in extensions}
    usage = values.get(ExtensionOID.KEY_USAGE)
    eku = values.get(ExtensionOID.EXTENDED_KEY_USAGE)
    aki = values.get(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if isinstance(aki, x509.AuthorityKeyIdentifier) and aki.key_identifier is None:
        return Breach(
            "C4",
            "RFC 5280 4.2.1.1, CA/B 7.1.2.11.1",
            "has an authorityKeyIdentifier without a keyIdentifier",
            "re-issue it with authorityKeyIdentifier=keyid",
        )
    return (
        ca_key_usage_breach(usage if isinstance(usage, x509.KeyUsage) else None)
        or ca_eku_breach(eku if isinstance(eku, x509.ExtendedKeyUsage) else None, required_eku)
        or _criticality_breach(extensions, device=False)
    )


def _basic_constraints_breach(
    extensions: x509.Extensions, child: x509.Certificate, depth: int
) -> Breach | None:
    """C1 and P6 for an issuer of ``child``, which lies ``depth`` intermediates above the device."""
    issued = f"'{subject_of(child)}'"
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return Breach(
            "C1",
            "RFC 5280 4.2.1.9, 6.1.4(k)",
            f"has no basicConstraints extension, so it is not a CA and cannot have issued {issued}",
            "re-issue it with a critical basicConstraints CA:TRUE (OpenSSL's v3_ca section)",
        )
    if not constraints.value.ca:
        return Breach(
            "C1",
            "RFC 5280 4.2.1.9, 6.1.4(k)",
            f"is not a CA certificate (basicConstraints CA:FALSE), so it cannot have issued "
            f"{issued}",
            "issue the certificates below it from a CA certificate",
        )
    if not constraints.critical:
        return Breach(
            "C1",
            "RFC 5280 4.2.1.9",
            "has a basicConstraints extension that is not critical; a CA's must be",
            "re-issue it with a critical basicConstraints CA:TRUE (OpenSSL's v3_ca section)",
        )
    limit = constraints.value.path_length
    if limit is not None and depth > limit:
        return Breach(
            "P6",
            "RFC 5280 4.2.1.9, 6.1.4(l), (m)",
            f"allows {limit} intermediate(s) below it (pathLenConstraint), but {depth} lie "
            "between it and the device",
            "issue the device from a CA the constraint allows",
        )
    return None
