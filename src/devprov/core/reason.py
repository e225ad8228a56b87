"""cryptography's verification reasons, in devprov's words, for refusals the walk of
:mod:`devprov.core.refusal` cannot pin on a certificate.

The verifier's reason names no certificate and quotes Rust structures and Python reprs
(``(encountered processing <Certificate(subject=<Name(CN=x)>, ...)>)``); these functions strip
that, name the rule of docs/chain-validation.md#the-device-profile-rule-by-rule the reason belongs
to, and the certificates of the path it concerns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from devprov.core.encoding import describe_parse_failure, oid_name, strip_debug_output

# cryptography's reasons quote what a device sent; messages keep at most this much of one.
MAX_REASON_IN_MESSAGE = 1000

# Keywords of cryptography's reasons, the rule each belongs to and its source; first match wins.
_REASON_RULES = (
    ("no interior errors", "P1", "RFC 5280 6.1"),
    ("DER does not parse", "P8", "RFC 5280 4.1"),
    ("signature check limit", "P5", "the verifier's path-building limit"),
    ("max depth", "P5", "devprov's path limit (DPS documents none)"),
    ("signatureAlgorithm", "P8", "RFC 5280 4.1.1.2"),
    ("signature", "P2", "RFC 5280 6.1.3(a)(1); CA/B 7.1.3.2"),
    ("public key", "P2", "CA/B 6.1.5, 7.1.3.1"),
    ("RSA key", "P2", "CA/B 6.1.5"),
    ("validation time", "P3", "RFC 5280 6.1.3(a)(2)"),
    ("UtcTime", "P3", "RFC 5280 4.1.2.5"),
    ("Issuer", "P4", "RFC 5280 4.1.2.4"),
    ("authorityKeyIdentifier", "C4", "RFC 5280 4.2.1.1, CA/B 7.1.2.11.1"),
    ("path length", "P6", "RFC 5280 6.1.4(l), (m)"),
    ("directoryName", "N1", "RFC 5280 4.2.1.10 (not implemented: fails closed)"),
    ("name constraint", "P7", "RFC 5280 4.2.1.10, 6.1.3(b), (c)"),
    ("serial", "P8", "RFC 5280 4.1.2.2"),
    ("X509v3", "P8", "CA/B 7.1.1"),
    ("duplicate", "P8", "RFC 5280 4.2"),
    ("unaccounted-for critical", "P8", "RFC 5280 4.2"),
    ("asserted in an EE", "E1", "RFC 5280 4.2.1.9"),
    ("asserted in a CA", "C1", "RFC 5280 4.2.1.9"),
)
# Extensions a reason names by OID: the rule for a device and for a CA.
_EXTENSION_RULES = {
    ExtensionOID.BASIC_CONSTRAINTS: ("E1", "C1", "RFC 5280 4.2.1.9"),
    ExtensionOID.KEY_USAGE: ("E2", "C2", "RFC 5280 4.2.1.3"),
    ExtensionOID.EXTENDED_KEY_USAGE: ("E3", "C3", "RFC 5280 4.2.1.12"),
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME: ("E4", "C4", "RFC 5280 4.2.1.6"),
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER: ("E5", "C4", "RFC 5280 4.2.1.1"),
    ExtensionOID.NAME_CONSTRAINTS: ("E6", "C4", "RFC 5280 4.2.1.10"),
    ExtensionOID.SUBJECT_KEY_IDENTIFIER: ("E6", "C4", "RFC 5280 4.2.1.2"),
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: ("E6", "C4", "RFC 5280 4.2.2.1"),
}
# An OID as cryptography prints one (joint-iso-itu-t or iso arcs), not an RFC section number.
_OID = re.compile(r"\b([12](?:\.\d+){3,})\b")
# A reason raised by devprov's own extension rules (profile.Breach) already names its rule.
_OWN_RULE = re.compile(r"\s*\(rule (?P<rule>[PCEN]\d), (?P<source>[^()]*(?:\([^()]*\)[^()]*)*)\)")
_PATH_MARKS = ("candidates exhausted", "no interior errors", "fatal error")


def clean_reason(reason: str) -> str:
    """cryptography's reason without its prefixes, its repr of the certificate it was
    processing and any Rust or Python debug output; never empty."""
    text = reason.strip()
    text = re.sub(r"\s*\(encountered processing .*\)\s*$", "", text, flags=re.DOTALL)
    for prefix in ("validation failed:", "candidates exhausted:", "fatal error:"):
        while text.startswith(prefix):
            text = text.removeprefix(prefix).strip()
    text = text.replace("Python extension validator failed: ValueError: ", "")
    if "ParseError" in text:
        text = f"a certificate's DER does not parse: {describe_parse_failure(ValueError(text))}"
    text = strip_debug_output(text)
    if len(text) > MAX_REASON_IN_MESSAGE:
        text = text[:MAX_REASON_IN_MESSAGE] + "..."
    return text or "no reason given"


def explain_verifier_reason(
    reason: str,
    path: Sequence[x509.Certificate],
    name: Callable[[x509.Certificate], str],
) -> str:
    """The verifier refused ``path`` (the device first), which the walk found acceptable, for
    ``reason``: that reason cleaned, the rule it belongs to and the certificates it concerns,
    each named by ``name``."""
    text = clean_reason(reason)
    # cryptography checks the device certificate first and reports its faults unwrapped; a
    # fault above it comes as "candidates exhausted: ..." (or a fatal error of path building).
    device_only = not any(mark in reason for mark in _PATH_MARKS)
    leaf = path[0]
    concerned = [leaf] if device_only else list(path)
    rule, source = "P1", "RFC 5280 6.1"
    own = _OWN_RULE.search(text)
    if own is not None:
        rule, source = own.group("rule"), own.group("source")
        text = text[: own.start()].rstrip()
    else:
        for keyword, rule_id, section in _REASON_RULES:
            if keyword in text:
                rule, source = rule_id, section
                break
    oid_text = _OID.search(text)
    carriers: list[x509.Certificate] = []
    if oid_text is not None:
        oid = x509.ObjectIdentifier(oid_text.group(1))
        text = text.replace(oid_text.group(1), oid_name(oid))
        carriers = [c for c in concerned if _has_extension(c, oid)]
        concerned = carriers or concerned
        if oid in _EXTENSION_RULES:
            device_rule, ca_rule, source = _EXTENSION_RULES[oid]
            rule = device_rule if concerned == [leaf] else ca_rule
    if carriers:
        pass
    elif rule in ("P7", "N1"):
        constraining = [c for c in path if _has_extension(c, ExtensionOID.NAME_CONSTRAINTS)]
        concerned = constraining or concerned
    elif rule in ("P2", "C4") and not device_only:
        concerned = list(path[1:]) or concerned  # issuers' keys and identifiers
    names = ", ".join(name(c) for c in concerned[:4])
    return f"the verifier refused it: {text} (rule {rule}, {source}); this concerns {names}"


def _has_extension(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> bool:
    try:
        certificate.extensions.get_extension_for_oid(oid)
    except (
        x509.ExtensionNotFound,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
        ValueError,
        TypeError,
    ):
        return False
    return True
