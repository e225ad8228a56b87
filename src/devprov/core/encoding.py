"""What encoded data holds when it is not a certificate, and foreign parsers' complaints in
plain words.

An operator uploads what a tool wrote: a PKCS#12 file, a key, a CSR, a PKCS#7 bundle. These
functions recognise such data (by PEM label, RFC 7468 section 2, or by the shape of its DER,
X.690 section 8.1) so that :mod:`devprov.core.certificate` can say what was sent and what to
upload instead. cryptography's parse errors quote Rust structures (``ParseError { kind: ... }``);
:func:`describe_parse_failure` turns them into words.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

ACCEPTED = "upload the certificate as PEM (.pem, .crt) or DER (.cer)"
NO_KEYS = "never send a private key: upload the certificate that belongs to it, as .pem or .cer"

# Things uploaded instead of a certificate: what each is, and what to upload instead.
_CSR = (
    "a certificate signing request (CSR)",
    "have the CA sign it and upload the certificate it issues "
    "(openssl x509 -req -in f.csr -CA ca.pem -CAkey ca.key -out cert.pem)",
)
_PKCS7_PEM = (
    "a PKCS#7 bundle (.p7b)",
    "extract the certificates (openssl pkcs7 -in f.p7b -print_certs -out certs.pem) and upload "
    "the one you mean alone",
)
_PKCS7_DER = (
    _PKCS7_PEM[0],
    _PKCS7_PEM[1].replace("pkcs7 -in", "pkcs7 -inform DER -in"),
)
_PUBLIC_KEY = ("a public key", "upload the certificate that carries it")
_CRL = ("a certificate revocation list (CRL)", "upload the CA certificate itself")
_PRIVATE_KEY = ("a private key", NO_KEYS)
_ENCRYPTED_KEY = ("an encrypted private key", NO_KEYS)
# A PFX as certGen.sh exports beside each device certificate
# (docs/sdk-clients.md#certgensh-keys-extensions-and-validity).
_PKCS12 = (
    "a PKCS#12 (.pfx/.p12) file",
    "it bundles a private key with the certificate: upload the certificate alone as .pem or .cer "
    "(openssl pkcs12 -in f.pfx -nokeys -clcerts -out cert.pem)",
)
# PEM labels other than CERTIFICATE (RFC 7468 section 2 lists them).
PEM_LABELS = {
    "CERTIFICATE REQUEST": _CSR,
    "NEW CERTIFICATE REQUEST": _CSR,
    "PKCS7": _PKCS7_PEM,
    "CMS": _PKCS7_PEM,
    "PUBLIC KEY": _PUBLIC_KEY,
    "RSA PUBLIC KEY": _PUBLIC_KEY,
    "X509 CRL": _CRL,
    "TRUSTED CERTIFICATE": (
        "an OpenSSL TRUSTED CERTIFICATE (a certificate with trust settings added)",
        "convert it to a plain certificate (openssl x509 -in f.pem -out cert.pem)",
    ),
}
# DER of the PKCS#7 ContentInfo types, OID 1.2.840.113549.1.7.x (RFC 2315 section 14): the OID
# value without its last arc.
_PKCS7_OID_PREFIX = bytes.fromhex("2a864886f70d0107")

# The kinds of the ASN.1 parser's errors that cryptography reports for DER it cannot read (the
# Rust asn1 crate's ParseErrorKind), in words.
_ASN1_PROBLEMS = {
    "ShortData": "the data ends early (it is truncated)",
    "ExtraData": "extra bytes follow the certificate",
    "UnexpectedTag": "an element is not the one a certificate has at that place",
    "InvalidValue": "a field holds an invalid value",
    "InvalidLength": "a length is invalid",
    "InvalidTag": "a tag is invalid",
    "InvalidSize": "a list or string has a size out of range (an empty one, say)",
    "IntegerOverflow": "a number is too large",
    "InvalidSetOrdering": "a SET is not in DER order",
    "EncodedDefault": "a default value is encoded, which DER forbids",
    "OidTooLong": "an object identifier is too long",
    "UnknownDefinedBy": "an algorithm identifier is not known",
}
_ASN1_KIND = re.compile(r"ParseError \{ kind: (\w+)")
# Where a foreign exception's text turns into debug output: a Rust structure or tuple struct, an
# Option, a Python repr.
_DEBUG_OUTPUT = re.compile(
    r"\s*(?:\b[A-Z]\w*\s*)?(?:\{|<|\bSome\(|\bName\(|\bParseError\b|kind:)"
    r"|\s*\b[A-Z][a-z0-9]+[A-Z]\w*\("
)


def identify_der(data: bytes) -> tuple[str, str] | None:
    """The kind of a DER structure that is not a certificate, with what to do, when known."""
    children = _der_sequence_heads(data)
    if children[:1] == [(0x02, b"\x03")] and children[1:2] and children[1][0] == 0x30:
        return _PKCS12  # PFX: SEQUENCE { version INTEGER 3, authSafe ContentInfo, ... }
    if children[:1] and children[0][0] == 0x06 and children[0][1][:-1] == _PKCS7_OID_PREFIX:
        return _PKCS7_DER
    try:
        serialization.load_der_private_key(data, None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        return _ENCRYPTED_KEY
    except (ValueError, UnsupportedAlgorithm):
        pass
    else:
        return _PRIVATE_KEY
    loaders: tuple[tuple[Callable[[bytes], object], tuple[str, str]], ...] = (
        (x509.load_der_x509_csr, _CSR),
        (x509.load_der_x509_crl, _CRL),
        (serialization.load_der_public_key, _PUBLIC_KEY),
    )
    for load, kind in loaders:
        try:
            load(data)
        except (ValueError, UnsupportedAlgorithm):
            continue
        return kind
    return None


def signature_algorithms_agree(certificate: x509.Certificate) -> bool:
    """Whether the outer signatureAlgorithm equals the TBS signature field (RFC 5280 4.1.1.2);
    cryptography parses a certificate where they differ, and then cannot verify its signature."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    outer = _der_children(der, 2)
    if len(outer) < 2:
        return False
    tbs = _der_children(outer[0][1], 3)
    fields = tbs[1:] if tbs and tbs[0][0] == 0xA0 else tbs  # [0] version is optional
    return len(fields) >= 2 and fields[1][1] == outer[1][1]


def _der_sequence_heads(data: bytes) -> list[tuple[int, bytes]]:
    """The tag and content of the first two elements of a DER SEQUENCE; [] when ``data`` is not
    one."""
    return [(tag, content) for tag, _, content in _der_children(data, 2)]


def _der_children(data: bytes, limit: int) -> list[tuple[int, bytes, bytes]]:
    """Tag, whole encoding and content of the first ``limit`` elements inside the DER SEQUENCE
    at the start of ``data`` (X.690 section 8.1: tag, definite length, content)."""
    outer = _der_element(data, 0)
    if outer is None or outer[0] != 0x30:
        return []
    _, start, end = outer
    children: list[tuple[int, bytes, bytes]] = []
    position = start
    while position < end and len(children) < limit:
        element = _der_element(data[:end], position)
        if element is None:
            break
        tag, content, after = element
        children.append((tag, data[position:after], data[content:after]))
        position = after
    return children


def _der_element(data: bytes, position: int) -> tuple[int, int, int] | None:
    """(tag, content start, content end) of the element at ``position``, if it is well formed."""
    if position + 2 > len(data):
        return None
    tag, length = data[position], data[position + 1]
    start = position + 2
    if length & 0x80:
        octets = length & 0x7F
        if not 0 < octets <= 4 or start + octets > len(data):
            return None
        length = int.from_bytes(data[start : start + octets], "big")
        start += octets
    end = start + length
    return (tag, start, end) if end <= len(data) else None


def oid_name(oid: x509.ObjectIdentifier) -> str:
    """An extension's (or any OID's) name as RFC 5280 spells it, else its dotted form:
    cryptography calls the OIDs it does not know "Unknown OID"."""
    name = getattr(oid, "_name", "")
    return name if name and name != "Unknown OID" else oid.dotted_string


def describe_parse_failure(exc: Exception) -> str:
    """A foreign parser's complaint in plain words, without its debug output; never empty."""
    text = str(exc)
    kind = _ASN1_KIND.search(text)
    if kind is not None:
        return _ASN1_PROBLEMS.get(kind.group(1), "its ASN.1 structure is invalid")
    return strip_debug_output(text) or "it does not parse"


def strip_debug_output(text: str) -> str:
    """``text`` up to where Rust or Python debug output starts, trimmed of dangling punctuation
    and of an unclosed parenthesis."""
    cut = _DEBUG_OUTPUT.search(text)
    if cut is not None:
        text = text[: cut.start()]
        text = re.sub(r"\s*\([^)]*$", "", text)
    return text.strip(" :;,.")
