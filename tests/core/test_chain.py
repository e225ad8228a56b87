"""Device chain validation, rule by rule: each accepted shape sits next to the rejected one that
differs from it in exactly the rule under test (rule names as in devprov.core.chain)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devprov.core import chain as c
from devprov.core import conformance
from devprov.core.error import AuthenticationError, DevprovError, InvalidDeviceCertificateError
from devprov.core.issuance import build_self_signed_device_certificate
from tests import factory as f
from tests.core import chain_factory as cf
from tests.core.wording import assert_plain_words

SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Pki:
    root: f.Ca
    other_root: f.Ca
    inter: f.Ca
    sibling: f.Ca
    device: f.Ca  # signed by inter
    root_device: f.Ca  # signed by root directly
    certgen_root: f.Ca  # certGen.sh shapes, RSA: built once, key generation is the slow part
    certgen_inter: f.Ca


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = cf.ca("Test Root")
    inter = cf.ca("Test Intermediate", root)
    certgen_root = cf.certgen_root(f.rsa_key())
    return Pki(
        root=root,
        other_root=cf.ca("Test Root"),  # same name, other key: only the key tells them apart
        inter=inter,
        sibling=cf.ca("Sibling Intermediate", root),
        device=cf.leaf(inter),
        root_device=cf.leaf(root),
        certgen_root=certgen_root,
        certgen_inter=cf.certgen_intermediate(certgen_root, f.rsa_key()),
    )


@dataclass(frozen=True)
class Case:
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    anchors: tuple[x509.Certificate, ...]
    at: datetime = f.NOW
    options: dict[str, Any] = field(default_factory=dict)
    chain: tuple[x509.Certificate, ...] | None = None  # the chain an accepted case must build


Build = Callable[[Pki], Case]


def _self_signed(key: ec.EllipticCurvePrivateKey | None = None, **kwargs: Any) -> x509.Certificate:
    return build_self_signed_device_certificate(
        key or f.ec_key(), "my-device", serial=f.serial(), now=f.NOW, days=30, **kwargs
    )


def direct_child(p: Pki) -> Case:
    leaf = p.root_device.certificate
    return Case(leaf, (), (p.root.certificate,), chain=(leaf, p.root.certificate))


def wrong_anchor(p: Pki) -> Case:
    return Case(p.root_device.certificate, (), (p.other_root.certificate,))


def leaf_intermediate_root(p: Pki) -> Case:
    leaf, inter, root = p.device.certificate, p.inter.certificate, p.root.certificate
    return Case(leaf, (inter,), (root,), chain=(leaf, inter, root))


def missing_intermediate(p: Pki) -> Case:
    return Case(p.device.certificate, (), (p.root.certificate,))


def two_intermediates(p: Pki) -> Case:
    upper = cf.ca("Upper", p.root, path_length=1)
    lower = cf.ca("Lower", upper, path_length=0)
    leaf = cf.leaf(lower).certificate
    # sent in the "wrong" order: path building does not depend on it
    return Case(
        leaf,
        (upper.certificate, lower.certificate),
        (p.root.certificate,),
        chain=(leaf, lower.certificate, upper.certificate, p.root.certificate),
    )


def pathlen_exceeded(p: Pki) -> Case:
    upper = cf.ca("Upper", p.root, path_length=0)
    lower = cf.ca("Lower", upper)
    return Case(
        cf.leaf(lower).certificate, (lower.certificate, upper.certificate), (p.root.certificate,)
    )


def leaf_without_san(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, "cn-only-device").certificate
    assert not any(e.oid == x509.OID_SUBJECT_ALTERNATIVE_NAME for e in leaf.extensions)
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,), chain=None)


def leaf_without_san_or_subject(p: Pki) -> Case:
    return Case(cf.leaf(p.inter, "").certificate, (p.inter.certificate,), (p.root.certificate,))


def leaf_with_san(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, san=[x509.DNSName("dev.example.com")]).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def leaf_san_critical_with_subject(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, san=[x509.DNSName("dev.example.com")], san_critical=True).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def empty_subject_critical_san(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, "", san=[x509.DNSName("dev.example.com")], san_critical=True)
    return Case(leaf.certificate, (p.inter.certificate,), (p.root.certificate,))


def empty_subject_noncritical_san(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, "", san=[x509.DNSName("dev.example.com")])
    return Case(leaf.certificate, (p.inter.certificate,), (p.root.certificate,))


def leaf_without_eku(p: Pki) -> Case:
    return Case(
        cf.leaf(p.inter, eku=None).certificate, (p.inter.certificate,), (p.root.certificate,)
    )


def eku_server_only(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, eku=[cf.SERVER_AUTH]).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def eku_client_and_any(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, eku=[cf.ANY_EKU, cf.CLIENT_AUTH]).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def eku_any_only(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, eku=[cf.ANY_EKU]).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def eku_critical(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, eku_critical=True).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def required_eku_server(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, eku=[cf.SERVER_AUTH]).certificate
    return Case(
        leaf,
        (p.inter.certificate,),
        (p.root.certificate,),
        options={"required_eku": cf.SERVER_AUTH},
    )


def required_eku_server_client_leaf(p: Pki) -> Case:
    return Case(
        p.device.certificate,
        (p.inter.certificate,),
        (p.root.certificate,),
        options={"required_eku": cf.SERVER_AUTH},
    )


def self_signed_leaf_is_anchor(_: Pki) -> Case:
    leaf = _self_signed()
    return Case(leaf, (), (leaf,), chain=(leaf,))


def quickstart_self_signed_is_anchor(_: Pki) -> Case:
    # Microsoft's DPS X.509 quickstart (individual enrollment), with RSA-2048 instead of 4096.
    leaf = cf.quickstart_self_signed("my-x509-device", f.rsa_key()).certificate
    return Case(leaf, (), (leaf,), chain=(leaf,))


def self_signed_leaf_not_enrolled(_: Pki) -> Case:
    # The enrollment holds a certificate for the same name and key, re-issued: not this one.
    key = f.ec_key()
    return Case(_self_signed(key), (), (_self_signed(key),))


def self_signed_leaf_expired(_: Pki) -> Case:
    leaf = _self_signed()
    return Case(leaf, (), (leaf,), at=leaf.not_valid_after_utc + SECOND)


def self_signed_ca_leaf_is_anchor(_: Pki) -> Case:
    # `openssl req -x509` with the default config makes this: CA:TRUE, self-signed.
    leaf = cf.ca("my-device").certificate
    return Case(leaf, (), (leaf,))


def intermediate_anchor_leaf_only(p: Pki) -> Case:
    leaf = p.device.certificate
    return Case(leaf, (), (p.inter.certificate,), chain=(leaf, p.inter.certificate))


def intermediate_anchor_leaf_and_intermediate(p: Pki) -> Case:
    leaf = p.device.certificate
    return Case(
        leaf, (p.inter.certificate,), (p.inter.certificate,), chain=(leaf, p.inter.certificate)
    )


def intermediate_anchor_other_branch(p: Pki) -> Case:
    return Case(p.device.certificate, (p.inter.certificate,), (p.sibling.certificate,))


def full_chain_sent(p: Pki) -> Case:
    # DPS's curl examples send leaf + intermediates + root
    # (docs/attestation.md#the-device-presents-its-chain).
    leaf, inter, root = p.device.certificate, p.inter.certificate, p.root.certificate
    return Case(leaf, (inter, root), (root,), chain=(leaf, inter, root))


def full_chain_sent_untrusted_root(p: Pki) -> Case:
    return Case(
        p.device.certificate,
        (p.inter.certificate, p.root.certificate),
        (p.other_root.certificate,),
    )


def leaf_last_valid_second(p: Pki) -> Case:
    leaf = p.device.certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,), at=leaf.not_valid_after_utc)


def expired_leaf(p: Pki) -> Case:
    leaf = p.device.certificate
    return Case(
        leaf, (p.inter.certificate,), (p.root.certificate,), at=leaf.not_valid_after_utc + SECOND
    )


def leaf_first_valid_second(p: Pki) -> Case:
    leaf = p.device.certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,), at=leaf.not_valid_before_utc)


def not_yet_valid_leaf(p: Pki) -> Case:
    leaf = p.device.certificate
    return Case(
        leaf, (p.inter.certificate,), (p.root.certificate,), at=leaf.not_valid_before_utc - SECOND
    )


def _short_lived_intermediate(p: Pki) -> tuple[f.Ca, f.Ca]:
    inter = cf.ca("Short-lived", p.root, not_after=f.NOW + timedelta(hours=1))
    return inter, cf.leaf(inter)


def intermediate_last_valid_hour(p: Pki) -> Case:
    inter, leaf = _short_lived_intermediate(p)
    return Case(leaf.certificate, (inter.certificate,), (p.root.certificate,))


def expired_intermediate(p: Pki) -> Case:
    inter, leaf = _short_lived_intermediate(p)
    return Case(
        leaf.certificate,
        (inter.certificate,),
        (p.root.certificate,),
        at=f.NOW + timedelta(hours=1) + SECOND,
    )


def expired_root(p: Pki) -> Case:
    root = cf.ca("Short-lived Root", not_after=f.NOW - SECOND)
    return Case(cf.leaf(root).certificate, (), (root.certificate,))


def leaf_without_basic_constraints(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, is_ca=None).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def ca_true_leaf(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, is_ca=True, usage=cf.CA_KEY_USAGE).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def intermediate_without_key_usage(p: Pki) -> Case:
    inter = cf.ca("No KU", p.root, usage=None)
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def intermediate_key_usage_without_keycertsign(p: Pki) -> Case:
    inter = cf.ca("KU without keyCertSign", p.root, usage=cf.key_usage(digital_signature=True))
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def intermediate_not_ca(p: Pki) -> Case:
    inter = cf.ca("Not a CA", p.root, is_ca=False, usage=cf.DEVICE_KEY_USAGE)
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def intermediate_without_basic_constraints(p: Pki) -> Case:
    inter = cf.certificate(cf.name("No BC"), issuer=p.root, usage=cf.CA_KEY_USAGE)
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def intermediate_basic_constraints_not_critical(p: Pki) -> Case:
    inter = cf.ca("BC not critical", p.root, basic_constraints_critical=False)
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def signature_by_other_key(p: Pki) -> Case:
    # Names and AKI say "inter", the signature is someone else's.
    leaf = cf.leaf(p.inter, signer=f.ec_key()).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def _deep(p: Pki, depth: int) -> Case:
    cas = cf.chain_of(p.root, depth)
    leaf = cf.leaf(cas[-1]).certificate
    return Case(leaf, tuple(x.certificate for x in cas), (p.root.certificate,))


def chain_at_max_depth(p: Pki) -> Case:
    return _deep(p, c.DEFAULT_MAX_CHAIN_DEPTH)


def chain_too_deep(p: Pki) -> Case:
    return _deep(p, c.DEFAULT_MAX_CHAIN_DEPTH + 1)


def max_depth_1_one_intermediate(p: Pki) -> Case:
    return Case(
        p.device.certificate,
        (p.inter.certificate,),
        (p.root.certificate,),
        options={"max_chain_depth": 1},
    )


def max_depth_0_one_intermediate(p: Pki) -> Case:
    return Case(
        p.device.certificate,
        (p.inter.certificate,),
        (p.root.certificate,),
        options={"max_chain_depth": 0},
    )


def _intermediate_with_eku(p: Pki, *usages: x509.ObjectIdentifier) -> Case:
    inter = cf.ca("EKU-constrained", p.root, eku=list(usages))
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def ca_eku_client(p: Pki) -> Case:
    return _intermediate_with_eku(p, cf.CLIENT_AUTH)


def ca_eku_any(p: Pki) -> Case:
    return _intermediate_with_eku(p, cf.ANY_EKU)


def ca_eku_server_only(p: Pki) -> Case:
    return _intermediate_with_eku(p, cf.SERVER_AUTH)


def leaf_without_key_usage(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, usage=None).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def leaf_key_usage_keycertsign(p: Pki) -> Case:
    usage = cf.key_usage(digital_signature=True, key_cert_sign=True)
    return Case(
        cf.leaf(p.inter, usage=usage).certificate, (p.inter.certificate,), (p.root.certificate,)
    )


def leaf_key_usage_without_digital_signature(p: Pki) -> Case:
    usage = cf.key_usage(key_encipherment=True)
    return Case(
        cf.leaf(p.inter, usage=usage).certificate, (p.inter.certificate,), (p.root.certificate,)
    )


def _leaf_with_key(p: Pki, key: Any) -> Case:
    leaf = cf.leaf(p.inter, key=key).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def leaf_rsa_2048(p: Pki) -> Case:
    return _leaf_with_key(p, f.rsa_key(2048))


def leaf_rsa_1024(p: Pki) -> Case:
    return _leaf_with_key(p, f.rsa_key(1024))


def leaf_p384(p: Pki) -> Case:
    return _leaf_with_key(p, ec.generate_private_key(ec.SECP384R1()))


def leaf_p192(p: Pki) -> Case:
    return _leaf_with_key(p, ec.generate_private_key(ec.SECP192R1()))


def leaf_ed25519(p: Pki) -> Case:
    return _leaf_with_key(p, ed25519.Ed25519PrivateKey.generate())


def leaf_without_aki(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, aki=False).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def leaf_critical_aki(p: Pki) -> Case:
    leaf = cf.leaf(p.inter, aki_critical=True).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def leaf_unknown_critical_extension(p: Pki) -> Case:
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55738.666.1"), b"\x05\x00")
    leaf = cf.leaf(p.inter, extra=[cf.Extra(odd, critical=True)]).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def certgen_device_from_root(p: Pki) -> Case:
    leaf = cf.certgen_device(p.certgen_root, "certgen-device", f.rsa_key()).certificate
    return Case(leaf, (), (p.certgen_root.certificate,), chain=(leaf, p.certgen_root.certificate))


def certgen_device_from_intermediate(p: Pki) -> Case:
    leaf = cf.certgen_device(p.certgen_inter, "certgen-device", f.rsa_key()).certificate
    return Case(leaf, (p.certgen_inter.certificate,), (p.certgen_root.certificate,))


def certgen_edge_device_ca(p: Pki) -> Case:
    leaf = cf.certgen_edge_device_ca(p.certgen_inter, "edge-device", f.rsa_key()).certificate
    return Case(leaf, (p.certgen_inter.certificate,), (p.certgen_root.certificate,))


def no_anchor(p: Pki) -> Case:
    return Case(p.device.certificate, (p.inter.certificate,), ())


def leaf_with_unreadable_key(p: Pki) -> Case:
    # The certificate parses, its EC point is not on the curve.
    point = p.device.key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    broken = cf.edited(p.device.certificate, point, b"\x04" + b"\x11" * 64)
    return Case(broken, (p.inter.certificate,), (p.root.certificate,))


def leaf_with_empty_issuer(p: Pki) -> Case:
    builder = (
        x509.CertificateBuilder()
        .subject_name(cf.name("my-device"))
        .issuer_name(x509.Name([]))
        .public_key(f.ec_key().public_key())
        .serial_number(f.serial())
        .not_valid_before(f.NOW - timedelta(days=1))
        .not_valid_after(f.NOW + timedelta(days=30))
    )
    leaf = builder.sign(p.inter.key, hashes.SHA256())
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def leaf_with_unreadable_subject(p: Pki) -> Case:
    # The CN's UTF8String holds bytes that are not UTF-8; cryptography reads names lazily.
    leaf = cf.edited(p.device.certificate, b"\x0c\x09my-device", b"\x0c\x09\xff\xfe-device")
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def chain_reaches_unverified_root(p: Pki) -> Case:
    unrelated = cf.ca("Unrelated Root").certificate
    return Case(p.device.certificate, (p.inter.certificate, p.root.certificate), (unrelated,))


def self_issued_not_self_signed(p: Pki) -> Case:
    # A CA re-keyed under its old name: the new certificate is signed by the old key, which the
    # device does not send.
    old = cf.ca("Rollover CA")
    new = cf.ca("Rollover CA", old)
    return Case(cf.leaf(new).certificate, (new.certificate,), (p.root.certificate,))


def issued_by_ed25519_ca(p: Pki) -> Case:
    inter = cf.ca("Ed25519 CA", p.root, key=ed25519.Ed25519PrivateKey.generate())
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def issued_by_rsa_1024_ca(p: Pki) -> Case:
    inter = cf.ca("Weak CA", p.root, key=f.rsa_key(1024))
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def intermediate_critical_aki(p: Pki) -> Case:
    inter = cf.ca("Critical AKI", p.root, aki_critical=True)
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def intermediate_aki_without_key_id(p: Pki) -> Case:
    aki = x509.AuthorityKeyIdentifier(
        key_identifier=None,
        authority_cert_issuer=[x509.DirectoryName(p.root.certificate.subject)],
        authority_cert_serial_number=p.root.certificate.serial_number,
    )
    inter = cf.ca("AKI without key id", p.root, aki=False, extra=[cf.Extra(aki)])
    return Case(cf.leaf(inter).certificate, (inter.certificate,), (p.root.certificate,))


def _leaf_with_extra(p: Pki, value: x509.ExtensionType, *, critical: bool) -> Case:
    leaf = cf.leaf(p.inter, extra=[cf.Extra(value, critical=critical)]).certificate
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def leaf_with_name_constraints(p: Pki) -> Case:
    constraints = x509.NameConstraints([x509.DNSName("example.com")], None)
    return _leaf_with_extra(p, constraints, critical=True)


def leaf_with_critical_aia(p: Pki) -> Case:
    ocsp = x509.AccessDescription(
        x509.oid.AuthorityInformationAccessOID.OCSP,
        x509.UniformResourceIdentifier("http://ocsp.example"),
    )
    return _leaf_with_extra(p, x509.AuthorityInformationAccess([ocsp]), critical=True)


def leaf_with_two_sans(p: Pki) -> Case:
    # issuerAltName (2.5.29.18) renamed subjectAltName (2.5.29.17).
    names = [x509.DNSName("other.example")]
    leaf = cf.leaf(
        p.inter,
        san=[x509.DNSName("dev.example")],
        extra=[cf.Extra(x509.IssuerAlternativeName(names))],
    )
    twice = cf.edited(leaf.certificate, bytes.fromhex("0603551d12"), bytes.fromhex("0603551d11"))
    return Case(twice, (p.inter.certificate,), (p.root.certificate,))


def leaf_with_malformed_extension(p: Pki) -> Case:
    # An unknown extension holding NULL, renamed keyUsage (2.5.29.15), which is a BIT STRING.
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("2.5.29.126"), b"\x05\x00")
    leaf = cf.leaf(p.inter, usage=None, extra=[cf.Extra(odd)]).certificate
    broken = cf.edited(leaf, bytes.fromhex("0603551d7e"), bytes.fromhex("0603551d0f"))
    return Case(broken, (p.inter.certificate,), (p.root.certificate,))


def leaf_with_mismatched_signature_algorithms(p: Pki) -> Case:
    leaf = cf.edited(p.device.certificate, cf.ECDSA_SHA256_DER, cf.ECDSA_SHA384_DER, last=True)
    return Case(leaf, (p.inter.certificate,), (p.root.certificate,))


def leaf_version_1(p: Pki) -> Case:
    return Case(
        cf.as_version_1(p.device.certificate), (p.inter.certificate,), (p.root.certificate,)
    )


def name_constraints_exclude_the_device(p: Pki) -> Case:
    constraints = x509.NameConstraints([x509.DNSName("example.com")], None)
    inter = cf.ca("Constrained CA", p.root, extra=[cf.Extra(constraints, critical=True)])
    leaf = cf.leaf(inter, san=[x509.DNSName("device.other.org")]).certificate
    return Case(leaf, (inter.certificate,), (p.root.certificate,))


def ok(build: Build, case_id: str) -> Any:
    return pytest.param(build, None, id=f"ok/{case_id}")


@dataclass(frozen=True)
class Refusal:
    """What a refusal must say: the rule (docs/chain-validation.md), the subject of the
    certificate at fault, and a phrase of its explanation."""

    rule: str
    subject: str
    text: str


def fail(build: Build, case_id: str, rule: str, subject: str, text: str) -> Any:
    return pytest.param(build, Refusal(rule, subject, text), id=f"fail/{case_id}")


DEVICE = "CN=my-device"

CASES = [
    # P1: anchors
    ok(direct_child, "direct-child-of-anchor"),
    fail(
        no_anchor, "no-anchor", "P1", DEVICE, "no trust anchor (verified certificate) is configured"
    ),
    fail(
        wrong_anchor,
        "wrong-anchor",
        "P2",
        DEVICE,
        "does not verify with the key of anchor 'CN=Test Root'",
    ),
    ok(leaf_intermediate_root, "leaf-intermediate-root"),
    fail(
        missing_intermediate,
        "missing-intermediate",
        "P1",
        DEVICE,
        "it names the issuer 'CN=Test Intermediate', which was not sent and is not a trust anchor",
    ),
    ok(intermediate_anchor_leaf_only, "intermediate-as-anchor"),
    ok(intermediate_anchor_leaf_and_intermediate, "intermediate-as-anchor-intermediate-sent"),
    fail(
        intermediate_anchor_other_branch,
        "intermediate-anchor-other-branch",
        "P1",
        "CN=Test Intermediate",
        "ends the chain: its issuer 'CN=Test Root' was not sent and is not a trust anchor",
    ),
    ok(full_chain_sent, "full-chain-sent"),
    fail(
        full_chain_sent_untrusted_root,
        "full-chain-sent-untrusted-root",
        "P1",
        "CN=Test Root",
        "sent by the device ends the chain and is not a trust anchor (a verified certificate); "
        "anchor 'CN=Test Root' has its name but is another certificate",
    ),
    fail(
        chain_reaches_unverified_root,
        "chain-reaches-unverified-root",
        "P1",
        "CN=Test Root",
        "root 'CN=Test Root' sent by the device ends the chain and is not a trust anchor",
    ),
    fail(
        self_issued_not_self_signed,
        "self-issued-not-self-signed",
        "P1",
        "CN=Rollover CA",
        "is self-issued but not self-signed, and no certificate of its name whose key signed it",
    ),
    ok(self_signed_leaf_is_anchor, "self-signed-leaf-is-anchor"),
    ok(quickstart_self_signed_is_anchor, "dps-quickstart-self-signed-is-anchor"),
    fail(
        self_signed_leaf_not_enrolled,
        "self-signed-leaf-not-enrolled",
        "P1",
        DEVICE,
        "it is self-signed and is not itself a trust anchor",
    ),
    fail(self_signed_leaf_expired, "self-signed-leaf-expired", "P3", DEVICE, "it expired at"),
    fail(
        self_signed_ca_leaf_is_anchor,
        "self-signed-ca-leaf-is-anchor",
        "E1",
        DEVICE,
        "`openssl req -x509` with OpenSSL's default configuration makes such a certificate; "
        "add -extensions usr_cert",
    ),
    # P2: signatures, algorithms and issuer keys
    fail(
        signature_by_other_key,
        "signature-by-other-key",
        "P2",
        DEVICE,
        "its signature does not verify with the key of intermediate 'CN=Test Intermediate'",
    ),
    fail(issued_by_ed25519_ca, "issued-by-ed25519-ca", "P2", DEVICE, "it is signed with ed25519"),
    fail(issued_by_rsa_1024_ca, "issued-by-rsa-1024-ca", "P2", "CN=Weak CA", "has an RSA-1024 key"),
    # P3: validity
    ok(leaf_last_valid_second, "leaf-last-valid-second"),
    fail(expired_leaf, "expired-leaf", "P3", DEVICE, "it expired at"),
    ok(leaf_first_valid_second, "leaf-first-valid-second"),
    fail(not_yet_valid_leaf, "not-yet-valid-leaf", "P3", DEVICE, "it is not valid before"),
    ok(intermediate_last_valid_hour, "intermediate-last-valid-hour"),
    fail(
        expired_intermediate,
        "expired-intermediate",
        "P3",
        "CN=Short-lived",
        "intermediate 'CN=Short-lived' expired at",
    ),
    fail(
        expired_root,
        "expired-root",
        "P3",
        "CN=Short-lived Root",
        "anchor 'CN=Short-lived Root' expired at",
    ),
    # P4: names
    fail(
        leaf_with_empty_issuer,
        "leaf-with-empty-issuer",
        "P4",
        DEVICE,
        "it has an empty issuer name",
    ),
    # P5: depth
    ok(chain_at_max_depth, "chain-at-max-depth"),
    fail(
        chain_too_deep,
        "chain-too-deep",
        "P5",
        "CN=Intermediate 1",
        "would be intermediate number 6 between the device and a trust anchor; at most 5",
    ),
    ok(max_depth_1_one_intermediate, "max-depth-1-one-intermediate"),
    fail(
        max_depth_0_one_intermediate,
        "max-depth-0-one-intermediate",
        "P5",
        "CN=Test Intermediate",
        "would be intermediate number 1 between the device and a trust anchor; at most 0",
    ),
    # P6: pathLen
    ok(two_intermediates, "two-intermediates"),
    fail(
        pathlen_exceeded,
        "pathlen-exceeded",
        "P6",
        "CN=Upper",
        "allows 0 intermediate(s) below it (pathLenConstraint), but 1 lie between it and the "
        "device",
    ),
    # P7: name constraints (the verifier's reason, cleaned, naming the constraining CA)
    fail(
        name_constraints_exclude_the_device,
        "name-constraints-exclude-the-device",
        "P7",
        "CN=Constrained CA",
        "the verifier refused it: no permitted name constraints matched SAN",
    ),
    # P8: certificate format
    ok(certgen_device_from_root, "certgen-device-from-root"),
    fail(
        leaf_unknown_critical_extension,
        "leaf-unknown-critical-extension",
        "P8",
        DEVICE,
        "it marks the extension 1.3.6.1.4.1.55738.666.1 critical, which the profile does not know",
    ),
    fail(
        leaf_with_two_sans,
        "leaf-with-two-sans",
        "P8",
        DEVICE,
        "carries the subjectAltName extension twice",
    ),
    fail(
        leaf_with_malformed_extension,
        "leaf-with-malformed-extension",
        "P8",
        DEVICE,
        "it has extensions that do not parse",
    ),
    fail(
        leaf_with_mismatched_signature_algorithms,
        "leaf-with-mismatched-signature-algorithms",
        "P8",
        DEVICE,
        "names one signature algorithm in its signed part and another beside its signature",
    ),
    fail(leaf_version_1, "leaf-version-1", "P8", DEVICE, "it is an X.509 v1 certificate"),
    fail(
        leaf_with_unreadable_subject,
        "leaf-with-unreadable-subject",
        "P8",
        "(unreadable subject)",
        "the verifier refused it: a certificate's DER does not parse: a field holds an invalid value",
    ),
    # C1: basicConstraints on issuers
    fail(
        intermediate_not_ca,
        "intermediate-not-ca",
        "C1",
        "CN=Not a CA",
        "is not a CA certificate (basicConstraints CA:FALSE), so it cannot have issued "
        "'CN=my-device'",
    ),
    fail(
        intermediate_without_basic_constraints,
        "intermediate-without-bc",
        "C1",
        "CN=No BC",
        "has no basicConstraints extension",
    ),
    fail(
        intermediate_basic_constraints_not_critical,
        "intermediate-bc-not-critical",
        "C1",
        "CN=BC not critical",
        "has a basicConstraints extension that is not critical",
    ),
    # C2: keyUsage on issuers
    ok(intermediate_without_key_usage, "intermediate-without-key-usage"),
    fail(
        intermediate_key_usage_without_keycertsign,
        "intermediate-ku-no-keycertsign",
        "C2",
        "CN=KU without keyCertSign",
        "has a keyUsage without keyCertSign",
    ),
    # C3: EKU on issuers
    ok(ca_eku_client, "ca-eku-client"),
    ok(ca_eku_any, "ca-eku-any"),
    fail(
        ca_eku_server_only,
        "ca-eku-server-only",
        "C3",
        "CN=EKU-constrained",
        "extendedKeyUsage (serverAuth) that allows neither clientAuth nor anyExtendedKeyUsage",
    ),
    # C4: identifiers on issuers
    fail(
        intermediate_critical_aki,
        "intermediate-critical-aki",
        "C4",
        "CN=Critical AKI",
        "marks its authorityKeyIdentifier extension critical",
    ),
    fail(
        intermediate_aki_without_key_id,
        "intermediate-aki-without-key-id",
        "C4",
        "CN=AKI without key id",
        "has an authorityKeyIdentifier without a keyIdentifier",
    ),
    # E1: CA certificates are not devices
    ok(leaf_without_basic_constraints, "leaf-without-basic-constraints"),
    fail(
        ca_true_leaf,
        "ca-true-leaf",
        "E1",
        DEVICE,
        "it is a CA certificate (basicConstraints CA:TRUE)",
    ),
    ok(certgen_device_from_intermediate, "certgen-device-from-intermediate"),
    fail(
        certgen_edge_device_ca,
        "certgen-edge-device-ca",
        "E1",
        "CN=edge-device.ca",
        "certGen's create_edge_device_certificate makes such a certificate, for IoT Edge's module "
        "CA; a device registers with a leaf certificate: certGen's create_device_certificate, or "
        "devprov ca device",
    ),
    # E2: keyUsage on the device
    ok(leaf_without_key_usage, "leaf-without-key-usage"),
    fail(
        leaf_key_usage_keycertsign, "leaf-ku-keycertsign", "E2", DEVICE, "keyUsage with keyCertSign"
    ),
    fail(
        leaf_key_usage_without_digital_signature,
        "leaf-ku-no-digital-signature",
        "E2",
        DEVICE,
        "keyUsage without digitalSignature",
    ),
    # E3: EKU on the device
    ok(leaf_without_eku, "leaf-without-eku"),
    fail(eku_server_only, "eku-server-only", "E3", DEVICE, "(serverAuth) without clientAuth"),
    ok(eku_client_and_any, "eku-client-and-any"),
    fail(eku_any_only, "eku-any-only", "E3", DEVICE, "(anyExtendedKeyUsage) without clientAuth"),
    fail(
        eku_critical, "eku-critical", "E3", DEVICE, "marks its extendedKeyUsage extension critical"
    ),
    ok(required_eku_server, "required-eku-server"),
    fail(
        required_eku_server_client_leaf,
        "required-eku-server-client-leaf",
        "E3",
        DEVICE,
        "(clientAuth) without serverAuth",
    ),
    # E4: SAN optional
    ok(leaf_without_san, "leaf-without-san"),
    fail(
        leaf_without_san_or_subject,
        "leaf-without-san-or-subject",
        "E4",
        "(empty subject)",
        "empty subject and no subjectAltName",
    ),
    ok(leaf_with_san, "leaf-with-san"),
    fail(
        leaf_san_critical_with_subject,
        "leaf-san-critical-with-subject",
        "E4",
        DEVICE,
        "the subjectAltName must not be critical when the subject is present",
    ),
    ok(empty_subject_critical_san, "empty-subject-critical-san"),
    fail(
        empty_subject_noncritical_san,
        "empty-subject-noncritical-san",
        "E4",
        "(empty subject)",
        "with an empty subject the subjectAltName must be critical",
    ),
    # E5: AKI optional
    ok(leaf_without_aki, "leaf-without-aki"),
    fail(
        leaf_critical_aki,
        "leaf-critical-aki",
        "E5",
        DEVICE,
        "marks its authorityKeyIdentifier extension critical",
    ),
    # E6: CA-only extensions
    fail(
        leaf_with_name_constraints,
        "leaf-with-name-constraints",
        "E6",
        DEVICE,
        "carries nameConstraints, which only a CA certificate may carry",
    ),
    fail(
        leaf_with_critical_aia,
        "leaf-with-critical-aia",
        "E6",
        DEVICE,
        "marks its authorityInfoAccess extension critical",
    ),
    # E7: device keys
    ok(leaf_rsa_2048, "leaf-rsa-2048"),
    fail(leaf_rsa_1024, "leaf-rsa-1024", "E7", DEVICE, "it has an RSA-1024 key"),
    ok(leaf_p384, "leaf-p384"),
    fail(leaf_p192, "leaf-p192", "E7", DEVICE, "it has an EC key on secp192r1"),
    fail(leaf_ed25519, "leaf-ed25519", "E7", DEVICE, "it has an Ed25519 key"),
    fail(
        leaf_with_unreadable_key,
        "leaf-with-unreadable-key",
        "E7",
        DEVICE,
        "it has a public key that cannot be read",
    ),
]


@pytest.mark.parametrize(("build", "refusal"), CASES)
def test_device_profile(pki: Pki, build: Build, refusal: Refusal | None) -> None:
    case = build(pki)
    if refusal is None:
        result = c.validate_device_chain(
            case.leaf, case.intermediates, case.anchors, at=case.at, **case.options
        )
        assert result.leaf == case.leaf
        assert result.anchor == result.chain[-1]
        assert result.anchor in case.anchors
        if case.chain is not None:
            assert result.chain == case.chain
    else:
        with pytest.raises(InvalidDeviceCertificateError) as caught:
            c.validate_device_chain(
                case.leaf, case.intermediates, case.anchors, at=case.at, **case.options
            )
        assert caught.value.code == "InvalidCertificate"
        assert caught.value.number == 401002
        assert_names_certificate_and_rule(caught.value.message, case.leaf, refusal)


def assert_names_certificate_and_rule(
    message: str, leaf: x509.Certificate, refusal: Refusal
) -> None:
    """The message opens with the device, names the certificate at fault by its subject and the
    rule it breaks, says what is wrong, and carries no foreign debug output."""
    device = conformance.subject_of(leaf)
    assert message.startswith(f"device certificate '{device}' does not validate: "), message
    assert f"'{refusal.subject}'" in message, message
    assert f"(rule {refusal.rule}, " in message, message
    assert refusal.text in message, message
    assert_plain_words(message)


def test_every_accept_has_a_reject_twin() -> None:
    ids = [param.id for param in CASES]
    assert len(ids) == len(set(ids))
    accepted = sum(1 for i in ids if i.startswith("ok/"))
    assert accepted and len(ids) - accepted >= accepted


def test_error_is_a_dps_401002_authentication_failure() -> None:
    assert issubclass(InvalidDeviceCertificateError, AuthenticationError)
    assert InvalidDeviceCertificateError.code == "InvalidCertificate"
    assert InvalidDeviceCertificateError.number == 401002


def test_naive_time_is_a_programming_error(pki: Pki) -> None:
    with pytest.raises(ValueError, match="aware"):
        c.validate_device_chain(
            pki.device.certificate, [], [pki.root.certificate], at=f.NOW.replace(tzinfo=None)
        )


@pytest.mark.parametrize("depth", [-1, 256])
def test_depth_out_of_range_is_a_programming_error(pki: Pki, depth: int) -> None:
    with pytest.raises(ValueError, match="max_chain_depth"):
        c.DeviceChainValidator([pki.root.certificate], max_chain_depth=depth)


def test_validator_is_reusable_across_times(pki: Pki) -> None:
    validator = c.DeviceChainValidator([pki.root.certificate])
    leaf, inter = pki.device.certificate, pki.inter.certificate
    assert validator.validate(leaf, [inter], at=f.NOW).anchor == pki.root.certificate
    with pytest.raises(InvalidDeviceCertificateError, match="expired at"):
        validator.validate(leaf, [inter], at=leaf.not_valid_after_utc + SECOND)
    assert validator.validate(leaf, [inter], at=f.NOW).chain[0] == leaf


def test_log_message_is_bounded(pki: Pki) -> None:
    # A device picks its subject; cryptography's reason quotes it. Neither floods the log.
    units = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "u" * 60) for _ in range(40)]
    subject = x509.Name([*units, x509.NameAttribute(NameOID.COMMON_NAME, "my-device")])
    leaf = cf.certificate(
        subject,
        issuer=pki.inter,
        basic_constraints=x509.BasicConstraints(ca=False, path_length=None),
        eku=[cf.SERVER_AUTH],
    ).certificate
    with pytest.raises(InvalidDeviceCertificateError, match="clientAuth") as caught:
        c.validate_device_chain(leaf, [pki.inter.certificate], [pki.root.certificate], at=f.NOW)
    assert len(leaf.subject.rfc4514_string()) > 2000
    assert len(caught.value.message) < 2 * conformance.MAX_SUBJECT_IN_MESSAGE + 200
    assert_plain_words(caught.value.message)


# --- arbitrary input ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_cases(pki: Pki) -> list[Case]:
    return [build(pki) for build, _ in (param.values for param in CASES)]


@pytest.fixture(scope="module")
def pool(pki: Pki, built_cases: list[Case]) -> list[x509.Certificate]:
    """Certificates of every shape the profile judges, related and unrelated."""
    certificates = {pki.root.certificate, pki.other_root.certificate, pki.inter.certificate}
    certificates.add(pki.sibling.certificate)
    for case in built_cases:
        certificates.add(case.leaf)
        certificates.update(case.intermediates)
        certificates.update(case.anchors)
    return sorted(certificates, key=lambda cert: cert.fingerprint(hashes.SHA256()))


_CHANGES = ("leaf", "reorder", "drop", "add", "anchors", "time", "depth", "eku")
_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.just(f.NOW.tzinfo),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_arbitrary_certificate_lists_raise_only_devprov_errors(
    built_cases: list[Case], pool: list[x509.Certificate], data: st.DataObject
) -> None:
    # Start from a table case (about half of them validate) and disturb it in up to three ways.
    base = data.draw(st.sampled_from(built_cases))
    changes = data.draw(st.sets(st.sampled_from(_CHANGES), max_size=3))
    pick = st.sampled_from(pool)
    leaf = data.draw(pick) if "leaf" in changes else base.leaf
    intermediates = list(base.intermediates)
    if "reorder" in changes:
        intermediates = data.draw(st.permutations(intermediates))
    if "drop" in changes:
        intermediates = intermediates[: data.draw(st.integers(0, len(intermediates)))]
    if "add" in changes:
        intermediates += data.draw(st.lists(pick, min_size=1, max_size=4))
    anchors = list(base.anchors)
    if "anchors" in changes:
        anchors = anchors[: data.draw(st.integers(0, len(anchors)))]
        anchors += data.draw(st.lists(pick, max_size=3))
    at = base.at
    if "time" in changes:
        edges = [leaf.not_valid_after_utc, leaf.not_valid_before_utc]
        at = data.draw(st.one_of(st.sampled_from(edges), _TIMES))
    depth = base.options.get("max_chain_depth", c.DEFAULT_MAX_CHAIN_DEPTH)
    if "depth" in changes:
        depth = data.draw(st.integers(min_value=0, max_value=8))
    eku = base.options.get("required_eku", cf.CLIENT_AUTH)
    if "eku" in changes:
        eku = data.draw(st.sampled_from([cf.CLIENT_AUTH, cf.SERVER_AUTH, cf.ANY_EKU]))
    try:
        result = c.validate_device_chain(
            leaf, intermediates, anchors, at=at, max_chain_depth=depth, required_eku=eku
        )
    except DevprovError as exc:
        assert isinstance(exc, InvalidDeviceCertificateError)
        assert exc.message.startswith("device certificate '")
        assert re.search(r"\(rule [PCEN]\d, ", exc.message), exc.message
        assert_plain_words(exc.message)
    else:
        assert result.chain[0] == leaf
        assert result.anchor in anchors
        assert len(result.chain) <= depth + 2


# --- issuer_path: which certificates a device's chain names, nearest first ---------------------


def test_issuer_path_follows_what_the_device_sent(pki: Pki) -> None:
    path = c.issuer_path(pki.device.certificate, [pki.root.certificate, pki.inter.certificate])
    assert path == (pki.inter.certificate, pki.root.certificate)


def test_issuer_path_is_completed_from_known_certificates(pki: Pki) -> None:
    sent = c.issuer_path(pki.device.certificate, [pki.inter.certificate])
    assert sent == (pki.inter.certificate,)
    known = c.issuer_path(
        pki.device.certificate,
        [pki.inter.certificate],
        [pki.sibling.certificate, pki.root.certificate],
    )
    assert known == (pki.inter.certificate, pki.root.certificate)
    assert c.issuer_path(pki.device.certificate, [], [pki.inter.certificate]) == (
        pki.inter.certificate,
    )


def test_issuer_path_of_a_self_signed_or_orphan_certificate_is_empty(pki: Pki) -> None:
    solo = cf.leaf(None, "solo")
    assert c.issuer_path(solo.certificate, [pki.root.certificate]) == ()
    assert c.issuer_path(pki.device.certificate, [pki.sibling.certificate]) == ()


def test_issuer_path_takes_the_signer_among_certificates_of_one_name(pki: Pki) -> None:
    # other_root has the root's name and another key: sent first, it must not take the path.
    path = c.issuer_path(
        pki.device.certificate,
        [pki.inter.certificate, pki.other_root.certificate],
        [pki.root.certificate],
    )
    assert path == (pki.inter.certificate, pki.root.certificate)


def test_issuer_path_with_only_a_look_alike_names_it_and_validation_refuses_it(pki: Pki) -> None:
    """The reject twin: a single candidate by name is taken unchecked (validation checks it)."""
    sent = [pki.inter.certificate, pki.other_root.certificate]
    assert c.issuer_path(pki.device.certificate, sent) == (
        pki.inter.certificate,
        pki.other_root.certificate,
    )
    with pytest.raises(InvalidDeviceCertificateError):
        c.validate_device_chain(
            pki.device.certificate, sent, [pki.other_root.certificate], at=f.NOW
        )


def test_issuer_path_stops_at_a_loop_and_at_its_length(pki: Pki) -> None:
    a_key, b_key = f.ec_key(), f.ec_key()
    a = cf.ca("Loop A", f.Ca(cf.ca("Loop B", key=b_key).certificate, b_key), key=a_key)
    b = cf.ca("Loop B", f.Ca(a.certificate, a_key), key=b_key)
    leaf = cf.leaf(a)
    assert c.issuer_path(leaf.certificate, [a.certificate, b.certificate]) == (
        a.certificate,
        b.certificate,
    )
    deep = cf.chain_of(pki.root, 8)
    device = cf.leaf(deep[-1])
    sent = [ca.certificate for ca in deep]
    assert len(c.issuer_path(device.certificate, sent, max_length=3)) == 3
    assert len(c.issuer_path(device.certificate, sent)) == c.DEFAULT_MAX_CHAIN_DEPTH + 1
