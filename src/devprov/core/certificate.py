"""X.509 certificate parsing and the facts devprov keeps about a certificate.

Certificates reach devprov in every encoding the Azure tools produce
(docs/dps-wire.md#certificate-upload-bodies-and-encodings): PEM text, base64 of PEM text (the
current ARM SDK base64-encodes a ``bytes`` field), base64 of DER (older Azure CLIs for a binary
``.cer``), base64 of the base64 text of DER (newer Azure CLIs for a binary ``.cer``) and raw DER.
:func:`parse_certificates` accepts all of them and raises :class:`MalformedCertificateError` with
a message that says, in devprov's words, what it found instead (a PKCS#12 file, a private key, a
CSR, a PKCS#7 bundle, a broken PEM block) and what to upload; cryptography's own texts, which
quote Rust structures, never reach the message.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from devprov.core.encoding import (
    ACCEPTED,
    NO_KEYS,
    PEM_LABELS,
    describe_parse_failure,
    identify_der,
    oid_name,
)
from devprov.core.error import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    InvalidCertificateNameError,
    MalformedCertificateError,
    NotACaCertificateError,
    TooManyCertificatesError,
)

# DPS rejects messages over 96 KB (docs/dps-wire.md#limits-and-quotas); an encoded certificate is
# at most that.
MAX_ENCODED_CERTIFICATE_BYTES = 96 * 1024

# An upload to the certificate registry names one CA certificate (DPS's CertificateBodyDescription
# carries "the certificate", singular); a bundle would leave it unclear which one is trusted.
MAX_CERTIFICATES_PER_UPLOAD = 1

# Clocks of an operator's workstation and of the server drift; a certificate made a moment ago
# by `openssl` carries notBefore = now on the operator's clock. Five minutes is the tolerance
# Kerberos and most TLS stacks use.
CLOCK_SKEW = timedelta(minutes=5)

# Certificate names in the DPS registry: "alphanumerics and -._, no whitespace"
# (DOCS iot-dps-https-x509-support) and at most 256 characters (ARM spec maxLength).
MAX_CERTIFICATE_NAME_LENGTH = 256
_CERTIFICATE_NAME = re.compile(r"[A-Za-z0-9._-]+")

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/=\s]+")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")


@dataclass(frozen=True)
class CertificateFacts:
    """What devprov records and shows about one certificate."""

    subject: str
    issuer: str
    common_name: str | None
    thumbprint: str  # SHA-1 of the DER, 40 upper-case hex characters, as DPS shows it
    sha256_thumbprint: str
    serial_number: str  # upper-case hex
    not_before: datetime
    not_after: datetime
    version: int
    is_ca: bool
    path_length: int | None
    self_signed: bool


def parse_certificates(data: bytes | str) -> list[x509.Certificate]:
    """Parse one or more certificates from PEM, DER, base64 of either, or base64(base64(DER)).

    Base64 is peeled at most twice, and twice only over DER: the Azure CLI sends a binary
    ``.cer`` as base64 of its base64 text
    (docs/management-answers.md#what-the-azure-cli-sends). Deeper nesting is refused rather than
    guessed at.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_ENCODED_CERTIFICATE_BYTES:
        raise MalformedCertificateError(
            f"certificate data is {len(raw)} bytes; the limit is {MAX_ENCODED_CERTIFICATE_BYTES} "
            "(DPS's message limit); upload the CA certificate alone"
        )
    stripped = raw.strip()
    if not stripped:
        raise MalformedCertificateError(
            f"no certificate data was supplied (it is empty); {ACCEPTED}"
        )
    if b"-----BEGIN" in stripped:
        return _parse_pem(stripped)
    if _is_base64_text(stripped):
        return _parse_base64(stripped)
    if stripped[:1] == b"\x30":
        # DER is binary: only leading whitespace can be told apart from its content.
        return _parse_der(raw.lstrip())
    raise MalformedCertificateError(_NOT_A_CERTIFICATE)


_NOT_A_CERTIFICATE = (
    "the data is neither PEM text nor base64 of a PEM or DER certificate (nor base64 of base64 of "
    f"DER), nor DER; {ACCEPTED}"
)
_TEXT_NOT_A_CERTIFICATE = (
    "the data is text, but neither PEM nor base64 of a PEM or DER certificate (nor base64 of "
    f"base64 of DER); {ACCEPTED}"
)


def _is_base64_text(data: bytes) -> bool:
    stripped = data.strip()
    return bool(stripped) and _BASE64_TEXT.fullmatch(stripped) is not None


def _unbase64(text: bytes) -> bytes:
    """The bytes of base64 text (line breaks allowed), or b"" when it is not valid base64."""
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return b""


def _parse_base64(text: bytes) -> list[x509.Certificate]:
    decoded = _unbase64(text)
    if decoded.strip().startswith(b"-----BEGIN"):
        return _parse_pem(decoded.strip())
    if _is_base64_text(decoded):  # base64 of base64 text: the Azure CLI's binary .cer
        inner = _unbase64(decoded)
        if inner.strip().startswith(b"-----BEGIN"):
            raise MalformedCertificateError(
                "the data is base64 of base64 of PEM text; send the PEM text or base64 of it"
            )
        if _is_base64_text(inner):
            raise MalformedCertificateError(
                "the data is base64 nested more than twice; send PEM, DER, base64 of either, or "
                "base64 of base64 of DER"
            )
        if inner[:1] == b"\x30":
            return _parse_der(inner)
        raise MalformedCertificateError(_TEXT_NOT_A_CERTIFICATE)
    if decoded[:1] == b"\x30":
        return _parse_der(decoded)
    raise MalformedCertificateError(_TEXT_NOT_A_CERTIFICATE)


def parse_single_certificate(data: bytes | str) -> x509.Certificate:
    """Parse exactly one certificate; a bundle or a key is refused with a precise error."""
    certificates = parse_certificates(data)
    if len(certificates) > MAX_CERTIFICATES_PER_UPLOAD:
        subjects = ", ".join(f"'{format_name(c.subject)}'" for c in certificates[:4])
        raise TooManyCertificatesError(
            f"the data holds {len(certificates)} certificates ({subjects}); upload exactly one "
            "(the CA certificate itself, without its chain)"
        )
    return certificates[0]


def parse_der_certificate(der: bytes) -> x509.Certificate:
    """Parse one DER certificate (a device's TLS chain holds DER); refuse it in plain words."""
    return _load_der(der)


def _parse_pem(data: bytes) -> list[x509.Certificate]:
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        raise MalformedCertificateError(
            "the PEM data has no complete BEGIN/END block (a '-----BEGIN ...-----' line "
            "without its '-----END ...-----' line: the file is cut short); copy it again whole"
        )
    labels = [label.decode("ascii") for label, _ in blocks]
    if "CERTIFICATE" not in labels:
        if any("PRIVATE KEY" in label for label in labels):
            raise MalformedCertificateError(
                f"the data is a private key, not a certificate; {NO_KEYS}"
            )
        known = next((label for label in labels if label in PEM_LABELS), None)
        if known is not None:
            what, remedy = PEM_LABELS[known]
            raise MalformedCertificateError(
                f"the PEM data holds a {known}: {what}, not a certificate; {remedy}"
            )
        found = ", ".join(sorted(set(labels)))
        raise MalformedCertificateError(
            f"the PEM data holds {found}, not a CERTIFICATE; {ACCEPTED}"
        )
    if any("PRIVATE KEY" in label for label in labels):
        raise MalformedCertificateError(
            "the PEM data contains a private key besides the certificate; send the certificate "
            "only (its BEGIN CERTIFICATE to END CERTIFICATE block), never a private key"
        )
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion) as exc:
        for index, (label, body) in enumerate(blocks, start=1):
            if label == b"CERTIFICATE":
                _check_pem_block(index, body)
        raise MalformedCertificateError(
            f"the PEM certificates do not parse: {describe_parse_failure(exc)}; {ACCEPTED}"
        ) from exc
    for index, certificate in enumerate(certificates, start=1):
        _check_names(certificate, f"PEM certificate {index}")
    return certificates


def _check_pem_block(index: int, body: bytes) -> None:
    """Refuse PEM block number ``index`` (a CERTIFICATE block) precisely, if it is broken."""
    where = f"PEM block {index} (CERTIFICATE)"
    compact = b"".join(body.split())
    bad = _NOT_BASE64.search(compact)
    if bad is not None:
        character = bad.group().decode("latin-1")
        shown = f"'{character}'" if character.isprintable() else f"byte 0x{ord(character):02x}"
        raise MalformedCertificateError(
            f"{where} has a broken base64 body: {shown} at position {bad.start()} is not a "
            "base64 character (RFC 7468 section 2); copy the block again, from its BEGIN line "
            "to its END line"
        )
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedCertificateError(
            f"{where} has a broken base64 body: its {len(compact)} characters do not decode "
            "(a line is missing or cut, or the padding is wrong); copy the block again, from "
            "its BEGIN line to its END line"
        ) from exc
    try:
        x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise MalformedCertificateError(_der_problem(where, der, exc)) from exc


def _parse_der(data: bytes) -> list[x509.Certificate]:
    """One DER certificate, or several back to back (a DER bundle, refused on upload as one)."""
    certificates: list[x509.Certificate] = []
    rest = data
    while rest:
        size = _der_size(rest)
        if size is None and certificates:
            raise MalformedCertificateError(
                f"the DER data has {len(rest)} bytes after its certificate "
                f"{len(certificates)} that are not a certificate; {ACCEPTED}"
            )
        chunk, rest = (rest, b"") if size is None else (rest[:size], rest[size:])
        certificates.append(_load_der(chunk))
    return certificates


def _load_der(der: bytes) -> x509.Certificate:
    """Exactly one DER certificate whose names parse."""
    try:
        certificate = x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise MalformedCertificateError(_der_problem("the DER data", der, exc)) from exc
    _check_names(certificate, "the DER certificate")
    return certificate


def _der_size(data: bytes) -> int | None:
    """The length of the DER SEQUENCE that ``data`` starts with (X.690 8.1.3), or None when it
    does not start with a complete one."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:  # short form
        size = 2 + first
    else:  # long form: the low bits count the length octets; DER allows at most what fits
        count = first & 0x7F
        if not 1 <= count <= 4 or len(data) < 2 + count:
            return None
        size = 2 + count + int.from_bytes(data[2 : 2 + count], "big")
    return size if size <= len(data) else None


def _check_names(certificate: x509.Certificate, where: str) -> None:
    """cryptography reads a certificate's names only when asked; a name that does not parse (a
    UTF8String that is not UTF-8, say) would fail later, far from the upload."""
    for field, section in (("subject", "4.1.2.6"), ("issuer", "4.1.2.4")):
        try:
            getattr(certificate, field)
        except ValueError as exc:
            raise MalformedCertificateError(
                f"{where} has a {field} name that does not parse: "
                f"{describe_parse_failure(exc)} (RFC 5280 {section}); re-issue it"
            ) from exc


def _der_problem(where: str, data: bytes, exc: ValueError | x509.InvalidVersion) -> str:
    """What DER data that is not a certificate is, and what to upload instead."""
    if isinstance(exc, x509.InvalidVersion):
        # cryptography refuses at load time a version field other than v1, v2 or v3.
        return (
            f"{where} is an X.509 certificate of an unknown version ({exc.parsed_version + 1}); "
            "RFC 5280 4.1.2.1 knows v1 to v3 and devprov accepts v3; re-issue it"
        )
    kind = identify_der(data)
    if kind is not None:
        what, remedy = kind
        return f"{where} is {what}, not a certificate; {remedy}"
    return f"{where} is not an X.509 certificate: {describe_parse_failure(exc)}; {ACCEPTED}"


# Records are read far more often than certificates change; the facts of a DER encoding never
# change, so the last few hundred are kept (about 1 KB each).
DESCRIBE_CACHE_SIZE = 512


@functools.lru_cache(maxsize=DESCRIBE_CACHE_SIZE)
def load_der(der: bytes) -> x509.Certificate:
    """Parse a certificate devprov stored itself (already validated DER)."""
    return x509.load_der_x509_certificate(der)


@functools.lru_cache(maxsize=DESCRIBE_CACHE_SIZE)
def describe_der(der: bytes) -> CertificateFacts:
    return describe_certificate(load_der(der))


def describe_certificate(certificate: x509.Certificate) -> CertificateFacts:
    """Extract the facts devprov shows and stores."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca, path_length = constraints.ca, constraints.path_length
    except x509.ExtensionNotFound:
        is_ca, path_length = False, None
    except x509.DuplicateExtension as exc:
        raise MalformedCertificateError(
            f"the certificate '{format_name(certificate.subject)}' carries the "
            f"{oid_name(exc.oid)} extension twice (RFC 5280 4.2 allows each extension "
            "once); re-issue it"
        ) from exc
    except (ValueError, TypeError, x509.UnsupportedGeneralNameType) as exc:
        raise MalformedCertificateError(
            f"the certificate '{format_name(certificate.subject)}' has extensions that do not "
            f"parse: {describe_parse_failure(exc)} (RFC 5280 4.2); re-issue it"
        ) from exc
    return CertificateFacts(
        subject=format_name(certificate.subject),
        issuer=format_name(certificate.issuer),
        common_name=common_name(certificate),
        thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
        sha256_thumbprint=certificate.fingerprint(hashes.SHA256()).hex().upper(),
        serial_number=format(certificate.serial_number, "X"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        version=certificate.version.value + 1,
        is_ca=is_ca,
        path_length=path_length,
        self_signed=certificate.issuer == certificate.subject,
    )


def format_name(name: x509.Name) -> str:
    """Render a distinguished name as DPS shows it: most specific RDN first, ``CN=...``."""
    return ", ".join(rdn.rfc4514_string() for rdn in reversed(name.rdns))


def resource_subject(facts: CertificateFacts) -> str:
    """``properties.subject`` of the certificate resource
    (docs/management-answers.md#the-subject-rule): the value of the subject's common name, as
    the real service answers; a subject without one (or with an empty one) shows whole, most
    specific RDN first."""
    return facts.common_name if facts.common_name else facts.subject


def common_name(certificate: x509.Certificate) -> str | None:
    """The subject's last common name, or None where there is none."""
    attributes = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    value = attributes[-1].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def to_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def to_der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def validate_ca_certificate(certificate: x509.Certificate, *, now: datetime) -> CertificateFacts:
    """Check that an uploaded certificate can act as a CA now (RFC 5280 4.2.1.9)."""
    facts = describe_certificate(certificate)
    if not facts.is_ca:
        found = "is an end-entity (device) certificate, not" if facts.common_name else "is not"
        raise NotACaCertificateError(
            f"'{facts.subject}' {found} a CA certificate (basicConstraints CA:TRUE is required, "
            "RFC 5280 4.2.1.9); upload the root or intermediate that signs your devices (a "
            "device's own certificate belongs in an individual enrollment)"
        )
    if now > facts.not_after:
        raise CertificateExpiredError(
            f"'{facts.subject}' expired at {facts.not_after.isoformat()} (RFC 5280 4.1.2.5); "
            "upload a certificate that is valid now: renew the CA (same name and key)"
        )
    if now + CLOCK_SKEW < facts.not_before:
        raise CertificateNotYetValidError(
            f"'{facts.subject}' is not valid before {facts.not_before.isoformat()} (RFC 5280 "
            f"4.1.2.5; devprov allows {int(CLOCK_SKEW.total_seconds() // 60)} minutes of clock "
            "skew); wait until then, or check the clock of the machine that issued it"
        )
    return facts


def validate_certificate_name(name: str) -> str:
    """DPS registry names: 1-256 of alphanumerics and ``-._``."""
    if not name or len(name) > MAX_CERTIFICATE_NAME_LENGTH:
        raise InvalidCertificateNameError(
            f"a certificate name has 1 to {MAX_CERTIFICATE_NAME_LENGTH} characters"
        )
    if not _CERTIFICATE_NAME.fullmatch(name):
        raise InvalidCertificateNameError(
            f"certificate name {name!r} may contain only letters, digits, '-', '.' and '_'"
        )
    return name
