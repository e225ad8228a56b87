from __future__ import annotations

import base64
import contextlib
from datetime import timedelta

import pytest
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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "no certificate data", id="fail/empty"),
        pytest.param(b"   \n", "no certificate data", id="fail/blank"),
        pytest.param(b"hello world!", "neither PEM", id="fail/garbage"),
        pytest.param(b"-----BEGIN CERTIFICATE-----\nAAAA", "no complete", id="fail/truncated-pem"),
        pytest.param(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "does not parse",
            id="fail/bad-pem-body",
        ),
        pytest.param(b"\x30\x03\x02\x01\x00", "DER certificate does not parse", id="fail/bad-der"),
        pytest.param(
            base64.b64encode(b"\x30\x01\x00"),
            "DER certificate does not parse",
            id="fail/bad-base64-der",
        ),
        pytest.param(
            base64.b64encode(b"not a cert at all"), "neither PEM", id="fail/base64-of-text"
        ),
        pytest.param(b"x" * (c.MAX_ENCODED_CERTIFICATE_BYTES + 1), "limit", id="fail/too-large"),
    ],
)
def test_parse_rejects_malformed(data: bytes, message: str) -> None:
    with pytest.raises(MalformedCertificateError, match=message):
        c.parse_certificates(data)


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


def test_parse_rejects_a_certificate_with_its_key(ca: f.Ca) -> None:
    with pytest.raises(MalformedCertificateError, match="contains a private key"):
        c.parse_certificates(ca.pem + ca.key_pem())


def test_parse_rejects_a_csr_label() -> None:
    data = b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(MalformedCertificateError, match="CERTIFICATE REQUEST"):
        c.parse_certificates(data)


def test_single_rejects_a_bundle_but_parse_keeps_it(ca: f.Ca) -> None:
    other = f.root("Other")
    assert len(c.parse_certificates(ca.pem + other.pem)) == 2
    with pytest.raises(TooManyCertificatesError, match="holds 2 certificates"):
        c.parse_single_certificate(ca.pem + other.pem)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=512), st.text(max_size=512)))
def test_parse_raises_only_our_input_errors(data: bytes | str) -> None:
    with contextlib.suppress(InvalidInputError):
        c.parse_certificates(data)


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
    with pytest.raises(InvalidInputError):
        c.parse_certificates(data)


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


@pytest.mark.parametrize(
    ("make", "error"),
    [
        pytest.param(
            lambda: f.raw_certificate(ca=False), NotACaCertificateError, id="fail/ca-false"
        ),
        pytest.param(
            lambda: f.raw_certificate(ca=None),
            NotACaCertificateError,
            id="fail/no-basic-constraints",
        ),
        pytest.param(
            lambda: f.raw_certificate(
                not_before=f.NOW - timedelta(days=30), not_after=f.NOW - timedelta(seconds=1)
            ),
            CertificateExpiredError,
            id="fail/expired",
        ),
        pytest.param(
            lambda: f.raw_certificate(not_before=f.NOW + timedelta(minutes=6)),
            CertificateNotYetValidError,
            id="fail/not-yet-valid",
        ),
    ],
)
def test_validate_ca_rejects(make, error) -> None:
    with pytest.raises(error):
        c.validate_ca_certificate(make().certificate, now=f.NOW)


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
    with pytest.raises(InvalidCertificateNameError):
        c.validate_certificate_name(name)


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
