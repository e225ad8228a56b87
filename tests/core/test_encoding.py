"""Recognising what encoded data holds, and foreign parse errors in words (core.encoding)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from devprov.core import encoding as e
from tests import factory as f
from tests.core import chain_factory as cf


@pytest.fixture(scope="module")
def ca() -> f.Ca:
    return f.root("Encoding Root")


def test_identify_der_knows_a_pfx_and_not_a_certificate(ca: f.Ca) -> None:
    pfx = pkcs12.serialize_key_and_certificates(
        b"x", ca.key, ca.certificate, None, serialization.NoEncryption()
    )
    kind = e.identify_der(pfx)
    assert kind is not None and kind[0] == "a PKCS#12 (.pfx/.p12) file"
    assert e.identify_der(ca.der) is None  # the reject twin: a certificate is none of these


@pytest.mark.parametrize(
    "data",
    [b"", b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x30\x85\x01\x02\x03\x04\x05", b"\x02\x01\x03"],
    ids=["empty", "tag-only", "length-beyond-data", "length-of-five-octets", "not-a-sequence"],
)
def test_identify_der_of_broken_der_is_none(data: bytes) -> None:
    assert e.identify_der(data) is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param(
            "error parsing asn1 value: ParseError { kind: ShortData { needed: 10 } }",
            "the data ends early (it is truncated)",
            id="asn1-kind",
        ),
        pytest.param(
            "error parsing asn1 value: ParseError { kind: SomethingNew }",
            "its ASN.1 structure is invalid",
            id="asn1-unknown-kind",
        ),
        pytest.param(
            "Could not deserialize key data. Details: ASN.1 parsing error: unexpected tag "
            "(got Tag { value: 2, constructed: false, class: Universal })",
            "Could not deserialize key data. Details: ASN.1 parsing error: unexpected tag",
            id="unclosed-parenthesis",
        ),
        pytest.param(
            "Unable to load PEM file. InvalidData(Invalid symbol 33, offset 0.)",
            "Unable to load PEM file",
            id="rust-tuple-struct",
        ),
        pytest.param(
            "DNSName name constraints must not contain the '*' wildcard character",
            "DNSName name constraints must not contain the '*' wildcard character",
            id="plain-text-kept",
        ),
        pytest.param("{}", "it does not parse", id="nothing-left"),
    ],
)
def test_describe_parse_failure(text: str, words: str) -> None:
    assert e.describe_parse_failure(ValueError(text)) == words


def test_signature_algorithms_agree(ca: f.Ca) -> None:
    assert e.signature_algorithms_agree(ca.certificate)
    mismatched = cf.edited(ca.certificate, cf.ECDSA_SHA256_DER, cf.ECDSA_SHA384_DER, last=True)
    assert not e.signature_algorithms_agree(mismatched)


def test_oid_name() -> None:
    assert e.oid_name(x509.oid.ExtensionOID.KEY_USAGE) == "keyUsage"
    assert e.oid_name(x509.ObjectIdentifier("1.3.6.1.4.1.55738.1")) == "1.3.6.1.4.1.55738.1"


def test_der_encoding_is_what_cf_edits(ca: f.Ca) -> None:
    assert cf.ECDSA_SHA256_DER in ca.certificate.public_bytes(Encoding.DER)
