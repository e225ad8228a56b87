from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs7, pkcs12
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from devprov.core import certificate as c
from devprov.core.error import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    InvalidCertificateNameError,
    InvalidInputError,
    MalformedCertificateError,
    NotACaCertificateError,
    TooManyCertificatesError,
)
from tests import factory as f
from tests.core.wording import assert_plain_words


@pytest.fixture(scope="module")
def ca() -> f.Ca:
    return f.root("Encodings Root")


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda ca: ca.pem, id="ok/pem-bytes"),
        pytest.param(lambda ca: ca.pem.decode(), id="ok/pem-text"),
        pytest.param(lambda ca: base64.b64encode(ca.pem).decode(), id="ok/base64-of-pem"),
        pytest.param(lambda ca: base64.b64encode(ca.der).decode(), id="ok/base64-of-der"),
        pytest.param(lambda ca: base64.encodebytes(ca.der).decode(), id="ok/base64-of-der-wrapped"),
        pytest.param(lambda ca: ca.der, id="ok/raw-der"),
        pytest.param(lambda ca: b"\r\n" + ca.pem.replace(b"\n", b"\r\n"), id="ok/pem-crlf"),
    ],
)
def test_parse_accepts_every_encoding(ca: f.Ca, encode) -> None:
    parsed = c.parse_single_certificate(encode(ca))
    assert parsed == ca.certificate


# --- refusals: what was found instead of a certificate, and what to upload ---------------------


def _pem_block(label: str, body: bytes) -> bytes:
    lines = base64.encodebytes(body).decode().strip()
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode()


def _csr(ca: f.Ca) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "my-device")])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(ca.key, SHA256())


def _crl(ca: f.Ca) -> x509.CertificateRevocationList:
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(f.NOW)
        .next_update(f.NOW + timedelta(days=1))
        .sign(ca.key, SHA256())
    )


def _protection(password: bytes | None) -> serialization.KeySerializationEncryption:
    if password is None:
        return serialization.NoEncryption()
    return serialization.BestAvailableEncryption(password)


def _pfx(ca: f.Ca, password: bytes | None = b"1234") -> bytes:
    # certGen.sh exports each device certificate so, with the password 1234.
    return pkcs12.serialize_key_and_certificates(
        b"x", ca.key, ca.certificate, None, _protection(password)
    )


def _key_der(ca: f.Ca, form: serialization.PrivateFormat, password: bytes | None = None) -> bytes:
    return ca.key.private_bytes(Encoding.DER, form, _protection(password))


def _unknown_version(der: bytes) -> bytes:
    """The certificate with its version field saying 6 (value 5), which no X.509 version is."""
    version_v3 = bytes.fromhex("a003020102")
    assert der.count(version_v3) == 1
    return der.replace(version_v3, bytes.fromhex("a003020105"))


def _unreadable_subject(der: bytes) -> bytes:
    """The certificate with its subject CN (a UTF8String) holding bytes that are not UTF-8: the
    name comes first in the subject, after the issuer (the same name, self-signed)."""
    cn = b"\x0c\x0eEncodings Root"
    assert der.count(cn) == 2
    at = der.rindex(cn)
    return der[:at] + b"\x0c\x0e\xff\xfe" + der[at + 4 :]


@dataclass(frozen=True)
class Refusal:
    """A parser refusal names what it found instead of a certificate and says what to do."""

    found: str
    remedy: str


_ACCEPTED = "upload the certificate as PEM (.pem, .crt) or DER (.cer)"
_COPY_AGAIN = "copy the block again, from its BEGIN line to its END line"
_NO_KEYS = "never send a private key: upload the certificate that belongs to it"


def refused(make: Callable[[f.Ca], bytes | str], found: str, remedy: str, case_id: str) -> Any:
    return pytest.param(make, Refusal(found, remedy), id=f"fail/{case_id}")


PARSER_REFUSALS = [
    refused(lambda ca: b"", "no certificate data was supplied (it is empty)", _ACCEPTED, "empty"),
    refused(lambda ca: "   \n", "no certificate data was supplied", _ACCEPTED, "blank"),
    refused(
        lambda ca: b"x" * (c.MAX_ENCODED_CERTIFICATE_BYTES + 1),
        "bytes; the limit is 98304",
        "upload the CA certificate alone",
        "too-large",
    ),
    refused(
        lambda ca: bytes(range(256)),
        "the data is neither PEM text nor base64",
        _ACCEPTED,
        "random-bytes",
    ),
    refused(lambda ca: b"hello world!", "neither PEM text nor base64", _ACCEPTED, "garbage"),
    refused(
        lambda ca: base64.b64encode(b"not a cert at all"),
        "the data is text, but neither PEM nor base64",
        _ACCEPTED,
        "base64-of-text",
    ),
    refused(
        lambda ca: b"-----BEGIN CERTIFICATE-----\nAAAA",
        "no complete BEGIN/END block",
        "copy it again whole",
        "truncated-pem",
    ),
    refused(
        lambda ca: ca.key_pem(), "the data is a private key, not a certificate", _NO_KEYS, "key-pem"
    ),
    refused(
        lambda ca: ca.pem + ca.key_pem(),
        "contains a private key besides the certificate",
        "send the certificate only",
        "certificate-and-key-pem",
    ),
    refused(
        lambda ca: _csr(ca).public_bytes(Encoding.PEM),
        "holds a CERTIFICATE REQUEST: a certificate signing request (CSR), not a certificate",
        "have the CA sign it and upload the certificate it issues",
        "csr-pem",
    ),
    refused(
        lambda ca: pkcs7.serialize_certificates([ca.certificate], Encoding.PEM),
        "holds a PKCS7: a PKCS#7 bundle (.p7b), not a certificate",
        "openssl pkcs7 -in f.p7b -print_certs -out certs.pem",
        "pkcs7-pem",
    ),
    refused(
        lambda ca: ca.key.public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
        ),
        "holds a PUBLIC KEY: a public key, not a certificate",
        "upload the certificate that carries it",
        "public-key-pem",
    ),
    refused(
        lambda ca: _crl(ca).public_bytes(Encoding.PEM),
        "holds a X509 CRL: a certificate revocation list (CRL), not a certificate",
        "upload the CA certificate itself",
        "crl-pem",
    ),
    refused(
        lambda ca: _pem_block("TRUSTED CERTIFICATE", ca.der),
        "an OpenSSL TRUSTED CERTIFICATE",
        "openssl x509 -in f.pem -out cert.pem",
        "trusted-certificate-pem",
    ),
    refused(
        lambda ca: _pem_block("SSH2 PUBLIC KEY", b"\x00" * 30),
        "the PEM data holds SSH2 PUBLIC KEY, not a CERTIFICATE",
        _ACCEPTED,
        "unknown-pem-label",
    ),
    refused(
        lambda ca: b"-----BEGIN CERTIFICATE-----\n!!!notbase64***\n-----END CERTIFICATE-----\n",
        "PEM block 1 (CERTIFICATE) has a broken base64 body: '!' at position 0",
        _COPY_AGAIN,
        "pem-body-not-base64",
    ),
    refused(
        lambda ca: b"-----BEGIN CERTIFICATE-----\nMIIBAAAAB\n-----END CERTIFICATE-----\n",
        "PEM block 1 (CERTIFICATE) has a broken base64 body: its",
        _COPY_AGAIN,
        "pem-body-cut",
    ),
    refused(
        lambda ca: ca.pem + b"-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n",
        "PEM block 2 (CERTIFICATE) has a broken base64 body: '@'",
        _COPY_AGAIN,
        "second-pem-block-broken",
    ),
    refused(
        lambda ca: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "PEM block 1 (CERTIFICATE) is not an X.509 certificate",
        _ACCEPTED,
        "pem-body-not-a-certificate",
    ),
    refused(
        lambda ca: _pem_block("CERTIFICATE", _pfx(ca)),
        "PEM block 1 (CERTIFICATE) is a PKCS#12 (.pfx/.p12) file",
        "openssl pkcs12 -in f.pfx -nokeys -clcerts -out cert.pem",
        "pfx-in-a-pem-block",
    ),
    refused(
        _pfx,
        "the DER data is a PKCS#12 (.pfx/.p12) file, not a certificate",
        "upload the certificate alone as .pem or .cer "
        "(openssl pkcs12 -in f.pfx -nokeys -clcerts -out cert.pem)",
        "pfx",
    ),
    refused(
        lambda ca: base64.b64encode(_pfx(ca, None)),
        "PKCS#12 (.pfx/.p12) file",
        "openssl pkcs12 -in f.pfx -nokeys -clcerts -out cert.pem",
        "base64-of-pfx-without-password",
    ),
    refused(
        lambda ca: _key_der(ca, serialization.PrivateFormat.PKCS8),
        "the DER data is a private key, not a certificate",
        _NO_KEYS,
        "key-der-pkcs8",
    ),
    refused(
        lambda ca: _key_der(ca, serialization.PrivateFormat.TraditionalOpenSSL),
        "the DER data is a private key, not a certificate",
        _NO_KEYS,
        "key-der-sec1",
    ),
    refused(
        lambda ca: _key_der(ca, serialization.PrivateFormat.PKCS8, b"secret"),
        "the DER data is an encrypted private key, not a certificate",
        _NO_KEYS,
        "encrypted-key-der",
    ),
    refused(
        lambda ca: _csr(ca).public_bytes(Encoding.DER),
        "the DER data is a certificate signing request (CSR), not a certificate",
        "openssl x509 -req -in f.csr",
        "csr-der",
    ),
    refused(
        lambda ca: pkcs7.serialize_certificates([ca.certificate], Encoding.DER),
        "the DER data is a PKCS#7 bundle (.p7b), not a certificate",
        "openssl pkcs7 -inform DER -in f.p7b -print_certs",
        "pkcs7-der",
    ),
    refused(
        lambda ca: ca.key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        ),
        "the DER data is a public key, not a certificate",
        "upload the certificate that carries it",
        "public-key-der",
    ),
    refused(
        lambda ca: _crl(ca).public_bytes(Encoding.DER),
        "the DER data is a certificate revocation list (CRL), not a certificate",
        "upload the CA certificate itself",
        "crl-der",
    ),
    refused(
        lambda ca: ca.der[:-10],
        "the DER data is not an X.509 certificate: the data ends early (it is truncated)",
        _ACCEPTED,
        "der-truncated",
    ),
    refused(
        lambda ca: ca.der + b"\x00\x00",
        "the DER data has 2 bytes after its certificate 1 that are not a certificate",
        _ACCEPTED,
        "der-with-trailing-bytes",
    ),
    refused(
        lambda ca: _unknown_version(ca.der),
        "the DER data is an X.509 certificate of an unknown version (6)",
        "RFC 5280 4.1.2.1 knows v1 to v3 and devprov accepts v3",
        "der-unknown-version",
    ),
    refused(
        lambda ca: _pem_block("CERTIFICATE", _unknown_version(ca.der)),
        "PEM block 1 (CERTIFICATE) is an X.509 certificate of an unknown version (6)",
        "re-issue it",
        "pem-unknown-version",
    ),
    refused(
        lambda ca: _unreadable_subject(ca.der),
        "the DER certificate has a subject name that does not parse: a field holds an invalid "
        "value (RFC 5280 4.1.2.6)",
        "re-issue it",
        "der-unreadable-subject",
    ),
    refused(
        lambda ca: _pem_block("CERTIFICATE", _unreadable_subject(ca.der)),
        "PEM certificate 1 has a subject name that does not parse",
        "re-issue it",
        "pem-unreadable-subject",
    ),
    refused(
        lambda ca: b"\x30\x03\x02\x01\x00",
        "the DER data is not an X.509 certificate",
        _ACCEPTED,
        "der-not-a-certificate",
    ),
    refused(
        lambda ca: base64.b64encode(b"\x30\x01\x00"),
        "the DER data is not an X.509 certificate",
        _ACCEPTED,
        "base64-of-bad-der",
    ),
]


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def cli_cer(data: bytes) -> bytes:
    """What the Azure CLI extension sends for a file: the text when the bytes are UTF-8, else
    base64 of them, trailing white space removed, then base64-encoded once more by the SDK, the
    field being ``bytes`` (docs/management-answers.md#what-the-azure-cli-sends)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = base64.b64encode(data).decode("utf-8")
    return b64(text.rstrip().encode("utf-8"))


@pytest.fixture(scope="module")
def other() -> f.Ca:
    return f.root("Other Encodings Root")


# Every encoding a client sends, each accept beside the refusal it must not be mistaken for.
@pytest.mark.parametrize(
    ("encode", "error", "message"),
    [
        pytest.param(lambda ca, o: ca.pem, None, None, id="ok/pem"),
        pytest.param(
            lambda ca, o: ca.pem + o.pem, TooManyCertificatesError, "holds 2", id="fail/bundle-pem"
        ),
        pytest.param(lambda ca, o: ca.der, None, None, id="ok/der"),
        pytest.param(
            lambda ca, o: ca.der + o.der, TooManyCertificatesError, "holds 2", id="fail/bundle-der"
        ),
        pytest.param(
            lambda ca, o: ca.der + b"\x00\x01",
            MalformedCertificateError,
            "2 bytes after its certificate 1 that are not a certificate",
            id="fail/der-trailing-bytes",
        ),
        pytest.param(lambda ca, o: b64(ca.pem), None, None, id="ok/b64-pem"),
        pytest.param(
            lambda ca, o: b64(ca.pem + o.pem),
            TooManyCertificatesError,
            "holds 2",
            id="fail/bundle-b64-pem",
        ),
        pytest.param(lambda ca, o: b64(ca.der), None, None, id="ok/b64-der"),
        pytest.param(
            lambda ca, o: b64(ca.der + o.der),
            TooManyCertificatesError,
            "holds 2",
            id="fail/bundle-b64-der",
        ),
        pytest.param(lambda ca, o: b64(b64(ca.der)), None, None, id="ok/b64-b64-der"),
        pytest.param(
            lambda ca, o: b64(b64(b64(ca.der))),
            MalformedCertificateError,
            "nested more than twice",
            id="fail/b64-b64-b64-der",
        ),
        pytest.param(
            lambda ca, o: b64(b64(ca.der + o.der)),
            TooManyCertificatesError,
            "holds 2",
            id="fail/bundle-b64-b64-der",
        ),
        pytest.param(
            lambda ca, o: b64(base64.encodebytes(ca.der)), None, None, id="ok/b64-b64-der-wrapped"
        ),
        pytest.param(
            lambda ca, o: b64(b64(ca.pem)),
            MalformedCertificateError,
            "base64 of base64 of PEM",
            id="fail/b64-b64-pem",
        ),
        pytest.param(lambda ca, o: cli_cer(ca.der), None, None, id="ok/cli-binary-cer"),
        pytest.param(lambda ca, o: cli_cer(ca.pem), None, None, id="ok/cli-pem-file"),
        pytest.param(lambda ca, o: cli_cer(b64(ca.der)), None, None, id="ok/cli-base64-text-file"),
        pytest.param(
            lambda ca, o: cli_cer(b64(b64(ca.der))),
            MalformedCertificateError,
            "nested more than twice",
            id="fail/cli-base64-of-base64-file",
        ),
        pytest.param(
            lambda ca, o: b64(b64(b"\x31\x00garbage")),
            MalformedCertificateError,
            "neither PEM",
            id="fail/b64-b64-not-der",
        ),
    ],
)
def test_encodings_accept_exactly_one_certificate(ca: f.Ca, other: f.Ca, encode, error, message):
    data = encode(ca, other)
    if error is None:
        assert c.parse_single_certificate(data) == ca.certificate
        if data.isascii():  # what arrives in a JSON string
            assert c.parse_single_certificate(data.decode("ascii")) == ca.certificate
    else:
        with pytest.raises(error, match=message):
            c.parse_single_certificate(data)


def test_parse_keeps_a_der_bundle_in_order(ca: f.Ca, other: f.Ca) -> None:
    assert c.parse_certificates(ca.der + other.der) == [ca.certificate, other.certificate]


def test_parse_rejects_a_private_key(ca: f.Ca) -> None:
    with pytest.raises(MalformedCertificateError, match="private key, not a certificate"):
        c.parse_certificates(ca.key_pem())


@pytest.mark.parametrize(("make", "refusal"), PARSER_REFUSALS)
def test_parse_refuses_in_plain_words(ca: f.Ca, make, refusal: Refusal) -> None:
    with pytest.raises(MalformedCertificateError) as caught:
        c.parse_certificates(make(ca))
    message = caught.value.message
    assert refusal.found in message
    assert refusal.remedy in message
    assert_plain_words(message)


def test_parse_der_certificate_takes_der_only(ca: f.Ca) -> None:
    assert c.parse_der_certificate(ca.der) == ca.certificate
    with pytest.raises(MalformedCertificateError, match="PKCS#12"):
        c.parse_der_certificate(_pfx(ca))


def test_single_rejects_a_bundle_but_parse_keeps_it(ca: f.Ca) -> None:
    other = f.root("Other")
    assert len(c.parse_certificates(ca.pem + other.pem)) == 2
    with pytest.raises(TooManyCertificatesError) as caught:
        c.parse_single_certificate(ca.pem + other.pem)
    message = caught.value.message
    assert "holds 2 certificates ('CN=Encodings Root', 'CN=Other')" in message
    assert "upload exactly one" in message
    assert_plain_words(message)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=512), st.text(max_size=512)))
def test_parse_raises_only_our_input_errors(data: bytes | str) -> None:
    try:
        c.parse_certificates(data)
    except InvalidInputError as exc:
        assert_plain_words(exc.message)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=3))
def test_parse_of_nested_base64_raises_only_our_input_errors(payload: bytes, layers: int) -> None:
    data = payload
    for _ in range(layers):
        data = base64.b64encode(data)
    with contextlib.suppress(InvalidInputError):
        c.parse_certificates(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"\x30", b"\x30\x82", b"\x30\x84\xff"]))
def test_parse_of_der_lookalikes_raises_only_our_input_errors(noise: bytes, prefix: bytes) -> None:
    """Bytes that start like a DER SEQUENCE, alone, after a real certificate, and base64'd."""
    for data in (prefix + noise, f.root("Prefix").der + prefix + noise):
        for form in (data, base64.b64encode(data), base64.b64encode(base64.b64encode(data))):
            with contextlib.suppress(InvalidInputError):
                c.parse_certificates(form)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_parse_of_mangled_pem_raises_only_input_errors(noise: bytes) -> None:
    data = (
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.b64encode(noise)
        + b"\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(InvalidInputError) as caught:
        c.parse_certificates(data)
    assert_plain_words(caught.value.message)


def test_describe_reports_dps_facts(ca: f.Ca) -> None:
    facts = c.describe_certificate(ca.certificate)
    assert facts.subject == "CN=Encodings Root"
    assert facts.issuer == "CN=Encodings Root"
    assert facts.common_name == "Encodings Root"
    assert len(facts.thumbprint) == 40 and facts.thumbprint == facts.thumbprint.upper()
    assert len(facts.sha256_thumbprint) == 64
    assert facts.is_ca and facts.self_signed and facts.version == 3
    assert facts.not_after == ca.certificate.not_valid_after_utc


def test_describe_orders_rdns_most_specific_first() -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Thing"),
        ]
    )
    odd = f.raw_certificate(subject=name)
    assert c.describe_certificate(odd.certificate).subject == "CN=Thing, C=DE"


def test_describe_of_leaf_without_common_name_or_constraints() -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    odd = f.raw_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org")]), ca=None
    )
    facts = c.describe_certificate(odd.certificate)
    assert facts.common_name is None and not facts.is_ca and facts.path_length is None


def _with_extension_renamed(
    extension: x509.ExtensionType, encoded_oid: bytes, renamed_to: bytes
) -> x509.Certificate:
    """A CA certificate carrying ``extension`` whose OID is then rewritten in the DER (the
    signature no longer matches; these certificates are for the parser, not for validation)."""
    key = f.ec_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd Extensions")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(f.serial())
        .not_valid_before(f.NOW - timedelta(days=1))
        .not_valid_after(f.NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("ca.example")]), critical=False)
        .add_extension(extension, critical=False)
        .sign(key, SHA256())
    )
    der = certificate.public_bytes(Encoding.DER)
    assert der.count(encoded_oid) == 1
    return x509.load_der_x509_certificate(der.replace(encoded_oid, renamed_to))


def duplicate_san() -> x509.Certificate:
    # issuerAltName (2.5.29.18) renamed subjectAltName (2.5.29.17): two SANs.
    issuer_names = x509.IssuerAlternativeName([x509.DNSName("other.example")])
    return _with_extension_renamed(issuer_names, b"\x06\x03\x55\x1d\x12", b"\x06\x03\x55\x1d\x11")


def malformed_key_usage() -> x509.Certificate:
    # An unknown extension holding NULL, renamed keyUsage (2.5.29.15), which is a BIT STRING.
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.126"), b"\x05\x00")
    return _with_extension_renamed(odd, b"\x06\x03\x55\x1d\x7e", b"\x06\x03\x55\x1d\x0f")


@dataclass(frozen=True)
class CertificateRefusal:
    """A refusal of a certificate that parsed: it names the certificate and the rule."""

    error: type[InvalidInputError]
    subject: str
    rule: str
    remedy: str


CA_REFUSALS = [
    pytest.param(
        lambda: f.raw_certificate(ca=False).certificate,
        CertificateRefusal(
            NotACaCertificateError,
            "'CN=Odd' is an end-entity (device) certificate, not a CA certificate",
            "basicConstraints CA:TRUE is required, RFC 5280 4.2.1.9",
            "a device's own certificate belongs in an individual enrollment",
        ),
        id="fail/ca-false",
    ),
    pytest.param(
        lambda: (
            f.raw_certificate(
                subject=x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org")]), ca=None
            ).certificate
        ),
        CertificateRefusal(
            NotACaCertificateError,
            "'O=Org' is not a CA certificate",
            "RFC 5280 4.2.1.9",
            "upload the root or intermediate that signs your devices",
        ),
        id="fail/no-basic-constraints-no-cn",
    ),
    pytest.param(
        lambda: (
            f.raw_certificate(
                not_before=f.NOW - timedelta(days=30), not_after=f.NOW - timedelta(seconds=1)
            ).certificate
        ),
        CertificateRefusal(
            CertificateExpiredError,
            "'CN=Odd' expired at",
            "RFC 5280 4.1.2.5",
            "renew the CA (same name and key)",
        ),
        id="fail/expired",
    ),
    pytest.param(
        lambda: f.raw_certificate(not_before=f.NOW + timedelta(minutes=6)).certificate,
        CertificateRefusal(
            CertificateNotYetValidError,
            "'CN=Odd' is not valid before",
            "RFC 5280 4.1.2.5; devprov allows 5 minutes of clock skew",
            "check the clock of the machine that issued it",
        ),
        id="fail/not-yet-valid",
    ),
    pytest.param(
        duplicate_san,
        CertificateRefusal(
            MalformedCertificateError,
            "'CN=Odd Extensions' carries the subjectAltName extension twice",
            "RFC 5280 4.2 allows each extension once",
            "re-issue it",
        ),
        id="fail/duplicate-extension",
    ),
    pytest.param(
        malformed_key_usage,
        CertificateRefusal(
            MalformedCertificateError,
            "'CN=Odd Extensions' has extensions that do not parse",
            "(RFC 5280 4.2)",
            "re-issue it",
        ),
        id="fail/malformed-extension",
    ),
]


@pytest.mark.parametrize(("make", "refusal"), CA_REFUSALS)
def test_validate_ca_refuses_naming_the_certificate_and_the_rule(
    make: Callable[[], x509.Certificate], refusal: CertificateRefusal
) -> None:
    certificate = make()
    with pytest.raises(refusal.error) as caught:
        c.validate_ca_certificate(certificate, now=f.NOW)
    message = caught.value.message
    assert refusal.subject in message
    assert refusal.rule in message
    assert refusal.remedy in message
    assert_plain_words(message)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: f.raw_certificate(ca=True), id="ok/ca-true"),
        pytest.param(lambda: f.intermediate(f.root()), id="ok/intermediate"),
        pytest.param(
            lambda: f.raw_certificate(not_before=f.NOW + timedelta(minutes=4)),
            id="ok/within-clock-skew",
        ),
        pytest.param(lambda: f.raw_certificate(not_after=f.NOW), id="ok/expires-this-instant"),
    ],
)
def test_validate_ca_accepts(make) -> None:
    assert c.validate_ca_certificate(make().certificate, now=f.NOW).is_ca


@pytest.mark.parametrize(
    "name",
    ["root", "my-root.v2_ca", "A" * 256, "0"],
    ids=["simple", "punctuation", "max-length", "digit"],
)
def test_certificate_name_accepts(name: str) -> None:
    assert c.validate_certificate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A" * 257, "has space", "slash/name", "ünïcode", "semi;colon"],
    ids=["empty", "too-long", "space", "slash", "unicode", "semicolon"],
)
def test_certificate_name_rejects(name: str) -> None:
    with pytest.raises(InvalidCertificateNameError) as caught:
        c.validate_certificate_name(name)
    message = caught.value.message
    rule = "1 to 256 characters" if not name or len(name) > 256 else "letters, digits, '-', '.'"
    assert rule in message and (name in message or not name or len(name) > 256)
    assert_plain_words(message)


def test_pem_and_der_round_trip(ca: f.Ca) -> None:
    assert c.parse_single_certificate(c.to_pem(ca.certificate)) == ca.certificate
    assert c.parse_single_certificate(c.to_der(ca.certificate)) == ca.certificate


def _named(*attributes: tuple[object, str]) -> f.Ca:
    from cryptography import x509

    return f.raw_certificate(subject=x509.Name([x509.NameAttribute(o, v) for o, v in attributes]))


# docs/management-answers.md#the-subject-rule: the CN value; without a CN, the whole subject.
@pytest.mark.parametrize(
    ("attributes", "shown"),
    [
        pytest.param(
            [("CN", "TESTCERTp52ge6w33t3wbmnd")], "TESTCERTp52ge6w33t3wbmnd", id="ok/cn-only"
        ),
        pytest.param([("O", "Contoso"), ("CN", "Contoso Root")], "Contoso Root", id="ok/cn-and-o"),
        pytest.param([("CN", "Outer"), ("CN", "Inner")], "Inner", id="ok/last-of-two-cns"),
        pytest.param(
            [("O", "Contoso"), ("OU", "Devices")], "OU=Devices, O=Contoso", id="no-cn/whole"
        ),
        pytest.param([("O", "Org")], "O=Org", id="no-cn/one-attribute"),
    ],
)
def test_resource_subject(attributes: list[tuple[str, str]], shown: str) -> None:
    from cryptography.x509.oid import NameOID

    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME}
    oids["OU"] = NameOID.ORGANIZATIONAL_UNIT_NAME
    odd = _named(*[(oids[key], value) for key, value in attributes])
    facts = c.describe_certificate(odd.certificate)
    assert c.resource_subject(facts) == shown


def test_resource_subject_of_an_empty_cn_is_the_whole_subject() -> None:
    from dataclasses import replace

    facts = c.describe_certificate(f.root("Named").certificate)
    assert c.resource_subject(replace(facts, common_name="")) == "CN=Named"
    assert c.resource_subject(facts) == "Named"
