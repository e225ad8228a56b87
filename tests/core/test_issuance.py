"""The certificate profiles of core.issuance: extensions per kind, chain links, validity, bounds."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devprov.core.issuance import (
    BACKDATE,
    MAX_SERIAL_BITS,
    Issuer,
    PrivateKey,
    build_device_certificate,
    build_intermediate_certificate,
    build_leaf_certificate,
    build_root_certificate,
    build_self_signed_device_certificate,
    build_server_certificate,
    build_verification_certificate,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
CODE = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"


@cache
def key(role: str) -> PrivateKey:
    """One key per role for the whole module: RSA generation is too slow to repeat."""
    if role == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if role == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if role == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


@cache
def root() -> Issuer:
    certificate = build_root_certificate(key("root"), "Root", serial=1, now=NOW, days=30)
    return Issuer(certificate, key("root"))


@cache
def intermediate() -> Issuer:
    certificate = build_intermediate_certificate(
        key("intermediate").public_key(),
        "Intermediate",
        root(),
        serial=2,
        now=NOW,
        days=30,
        path_length=0,
    )
    return Issuer(certificate, key("intermediate"))


def extension_value(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> object:
    return certificate.extensions.get_extension_for_class(kind).value


def is_critical(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> bool:
    return certificate.extensions.get_extension_for_class(kind).critical


def has_extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> bool:
    try:
        certificate.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return False
    return True


# --- the certificates under test, one builder call each -----------------------------------------


def root_with_path_length() -> x509.Certificate:
    return build_root_certificate(key("root"), "Root", serial=3, now=NOW, days=1, path_length=2)


def device_ec() -> x509.Certificate:
    return build_device_certificate(
        key("device").public_key(), "my-device", intermediate(), serial=4, now=NOW, days=1
    )


def device_rsa() -> x509.Certificate:
    return build_device_certificate(
        key("rsa").public_key(), "rsa-device", intermediate(), serial=5, now=NOW, days=1
    )


def device_self_signed() -> x509.Certificate:
    return build_self_signed_device_certificate(key("device"), "lonely", serial=6, now=NOW, days=1)


def verification() -> x509.Certificate:
    return build_verification_certificate(
        key("device").public_key(), CODE, root(), serial=7, now=NOW
    )


def server() -> x509.Certificate:
    return build_server_certificate(
        key("device").public_key(),
        ["localhost", "127.0.0.1", "::1", "localhost"],
        root(),
        serial=8,
        now=NOW,
        days=1,
    )


@dataclass(frozen=True)
class Profile:
    ca: bool
    path_length: int | None
    key_cert_sign: bool
    key_encipherment: bool
    eku: tuple[x509.ObjectIdentifier, ...] | None  # None: no extendedKeyUsage extension


CLIENT = (ExtendedKeyUsageOID.CLIENT_AUTH,)
SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)

PROFILES = [
    pytest.param(lambda: root().certificate, Profile(True, None, True, False, None), id="ca/root"),
    pytest.param(
        root_with_path_length, Profile(True, 2, True, False, None), id="ca/root-pathlen-2"
    ),
    pytest.param(
        lambda: intermediate().certificate,
        Profile(True, 0, True, False, None),
        id="ca/intermediate-pathlen-0",
    ),
    pytest.param(device_ec, Profile(False, None, False, False, CLIENT), id="leaf/device-ec"),
    pytest.param(device_rsa, Profile(False, None, False, True, CLIENT), id="leaf/device-rsa"),
    pytest.param(
        device_self_signed, Profile(False, None, False, False, CLIENT), id="leaf/device-self-signed"
    ),
    pytest.param(verification, Profile(False, None, False, False, None), id="leaf/verification"),
    pytest.param(server, Profile(False, None, False, False, SERVER), id="leaf/server"),
]


@pytest.mark.parametrize(("build", "profile"), PROFILES)
def test_basic_constraints_are_critical_and_say_ca_or_not(
    build: Callable[[], x509.Certificate], profile: Profile
) -> None:
    certificate = build()
    constraints = extension_value(certificate, x509.BasicConstraints)
    assert isinstance(constraints, x509.BasicConstraints)
    assert (constraints.ca, constraints.path_length) == (profile.ca, profile.path_length)
    assert is_critical(certificate, x509.BasicConstraints)  # RFC 5280 4.2.1.9: MUST for CAs


@pytest.mark.parametrize(("build", "profile"), PROFILES)
def test_key_usage_is_critical_and_fits_the_kind(
    build: Callable[[], x509.Certificate], profile: Profile
) -> None:
    certificate = build()
    usage = extension_value(certificate, x509.KeyUsage)
    assert isinstance(usage, x509.KeyUsage)
    assert is_critical(certificate, x509.KeyUsage)
    assert usage.digital_signature
    assert usage.key_cert_sign == profile.key_cert_sign
    assert usage.crl_sign == profile.key_cert_sign
    # RFC 5246 7.4.7: RSA key transport needs keyEncipherment; an EC key never gets it.
    assert usage.key_encipherment == profile.key_encipherment
    assert not usage.key_agreement


@pytest.mark.parametrize(("build", "profile"), PROFILES)
def test_extended_key_usage_names_the_tls_role(
    build: Callable[[], x509.Certificate], profile: Profile
) -> None:
    certificate = build()
    if profile.eku is None:
        assert not has_extension(certificate, x509.ExtendedKeyUsage)
    else:
        usages = extension_value(certificate, x509.ExtendedKeyUsage)
        assert isinstance(usages, x509.ExtendedKeyUsage)
        assert tuple(usages) == profile.eku


@pytest.mark.parametrize(("build", "profile"), PROFILES)
def test_every_kind_has_a_subject_key_identifier_of_its_key(
    build: Callable[[], x509.Certificate], profile: Profile
) -> None:
    certificate = build()
    ski = extension_value(certificate, x509.SubjectKeyIdentifier)
    assert ski == x509.SubjectKeyIdentifier.from_public_key(certificate.public_key())


def test_server_certificate_lists_each_host_once_in_the_san() -> None:
    san = extension_value(server(), x509.SubjectAlternativeName)
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert server().subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"


def test_server_certificate_without_a_host_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one host"):
        build_server_certificate(key("device").public_key(), [], root(), serial=1, now=NOW, days=1)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(device_ec, id="device"),
        pytest.param(verification, id="verification"),
        pytest.param(lambda: intermediate().certificate, id="intermediate"),
    ],
)
def test_device_and_verification_have_no_san(build: Callable[[], x509.Certificate]) -> None:
    assert not has_extension(build(), x509.SubjectAlternativeName)


def test_verification_certificate_cn_is_the_code() -> None:
    assert verification().subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CODE


# --- chain links ------------------------------------------------------------------------------


def aki(certificate: x509.Certificate) -> bytes | None:
    value = extension_value(certificate, x509.AuthorityKeyIdentifier)
    assert isinstance(value, x509.AuthorityKeyIdentifier)
    return value.key_identifier


def ski(certificate: x509.Certificate) -> bytes:
    value = extension_value(certificate, x509.SubjectKeyIdentifier)
    assert isinstance(value, x509.SubjectKeyIdentifier)
    return value.digest


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        pytest.param(lambda: root().certificate, lambda: root().certificate, id="root-is-its-own"),
        pytest.param(
            lambda: intermediate().certificate, lambda: root().certificate, id="intermediate-root"
        ),
        pytest.param(device_ec, lambda: intermediate().certificate, id="device-intermediate"),
        pytest.param(verification, lambda: root().certificate, id="verification-root"),
        pytest.param(server, lambda: root().certificate, id="server-root"),
    ],
)
def test_authority_key_identifier_is_the_issuers_subject_key_identifier(
    child: Callable[[], x509.Certificate], parent: Callable[[], x509.Certificate]
) -> None:
    assert aki(child()) == ski(parent())
    assert child().issuer == parent().subject
    child().verify_directly_issued_by(parent())


def test_a_device_is_not_directly_issued_by_the_root() -> None:
    """The reject twin of the links above."""
    with pytest.raises(ValueError, match="does not match"):
        device_ec().verify_directly_issued_by(root().certificate)


def test_a_forged_link_fails_the_signature_check() -> None:
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    impostor = build_root_certificate(impostor_key, "Root", serial=9, now=NOW, days=1)
    with pytest.raises(InvalidSignature):
        intermediate().certificate.verify_directly_issued_by(impostor)


def test_issuer_without_ski_gets_an_aki_from_its_public_key() -> None:
    """RFC 5280 4.2.1.1 method (1): when the issuer carries no SKI, derive one from its key."""
    issuer_key = key("root")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bare CA")])
    bare = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(issuer_key.public_key())
        .serial_number(10)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )
    device = build_device_certificate(
        key("device").public_key(), "d", Issuer(bare, issuer_key), serial=11, now=NOW, days=1
    )
    expected = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    assert aki(device) == expected.key_identifier


def test_self_signed_device_verifies_with_itself() -> None:
    certificate = device_self_signed()
    assert certificate.issuer == certificate.subject
    certificate.verify_directly_issued_by(certificate)


# --- signature algorithm --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        pytest.param("root", hashes.SHA256, id="ec-p256/sha256"),
        pytest.param("p384", hashes.SHA384, id="ec-p384/sha384"),
        pytest.param("rsa", hashes.SHA256, id="rsa/sha256"),
        pytest.param("ed25519", type(None), id="ed25519/no-prehash"),
    ],
)
def test_signature_hash_follows_the_issuer_key(role: str, expected: type) -> None:
    certificate = build_root_certificate(key(role), "Root", serial=1, now=NOW, days=1)
    assert isinstance(certificate.signature_hash_algorithm, expected)
    certificate.verify_directly_issued_by(certificate)


# --- validity and bounds --------------------------------------------------------------------


BUILDERS: dict[str, Callable[[datetime, int], x509.Certificate]] = {
    "root": lambda now, days: build_root_certificate(
        key("root"), "R", serial=1, now=now, days=days
    ),
    "intermediate": lambda now, days: build_intermediate_certificate(
        key("device").public_key(), "I", root(), serial=1, now=now, days=days
    ),
    "device": lambda now, days: build_device_certificate(
        key("device").public_key(), "d", root(), serial=1, now=now, days=days
    ),
    "self-signed-device": lambda now, days: build_self_signed_device_certificate(
        key("device"), "d", serial=1, now=now, days=days
    ),
    "verification": lambda now, days: build_verification_certificate(
        key("device").public_key(), CODE, root(), serial=1, now=now, days=days
    ),
    "server": lambda now, days: build_server_certificate(
        key("device").public_key(), ["h"], root(), serial=1, now=now, days=days
    ),
}


@pytest.mark.parametrize("kind", BUILDERS)
def test_validity_is_backdated_for_clock_skew_and_lasts_the_days_asked(kind: str) -> None:
    certificate = BUILDERS[kind](NOW, 7)
    assert certificate.not_valid_before_utc == NOW - timedelta(minutes=5) == NOW - BACKDATE
    assert certificate.not_valid_after_utc == NOW + timedelta(days=7)


@pytest.mark.parametrize(
    ("serial", "accepted"),
    [
        pytest.param(1, True, id="ok/one"),
        pytest.param(2**MAX_SERIAL_BITS - 1, True, id="ok/159-bits"),
        pytest.param(0, False, id="fail/zero"),
        pytest.param(-1, False, id="fail/negative"),
        pytest.param(2**MAX_SERIAL_BITS, False, id="fail/160-bits"),
    ],
)
def test_serial_is_positive_and_at_most_20_octets(serial: int, accepted: bool) -> None:
    if accepted:
        certificate = build_root_certificate(key("root"), "R", serial=serial, now=NOW, days=1)
        assert certificate.serial_number == serial
    else:
        with pytest.raises(ValueError, match=r"RFC 5280 4\.1\.2\.2"):
            build_root_certificate(key("root"), "R", serial=serial, now=NOW, days=1)


@pytest.mark.parametrize(
    ("days", "accepted"),
    [
        pytest.param(1, True, id="ok/one-day"),
        pytest.param(0, False, id="fail/zero-days"),
        pytest.param(-30, False, id="fail/negative-days"),
    ],
)
def test_validity_is_at_least_one_day(days: int, accepted: bool) -> None:
    if accepted:
        build_verification_certificate(
            key("device").public_key(), CODE, root(), serial=1, now=NOW, days=days
        )
    else:
        with pytest.raises(ValueError, match="at least one day"):
            build_verification_certificate(
                key("device").public_key(), CODE, root(), serial=1, now=NOW, days=days
            )


# --- the leaf builder other modules compose -------------------------------------------------


def leaf(not_before: datetime, not_after: datetime) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Contoso"),
            x509.NameAttribute(NameOID.COMMON_NAME, "d"),
        ]
    )
    return build_leaf_certificate(
        key("rsa").public_key(),
        subject,
        intermediate(),
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        serial=9,
        not_before=not_before,
        not_after=not_after,
    )


def test_leaf_builder_takes_the_subject_usages_and_window_as_given() -> None:
    certificate = leaf(NOW, NOW + timedelta(hours=1))
    assert certificate.subject.rfc4514_string() == "CN=d,O=Contoso"
    assert certificate.not_valid_before_utc == NOW
    assert certificate.not_valid_after_utc == NOW + timedelta(hours=1)
    assert list(extension_value(certificate, x509.ExtendedKeyUsage)) == [
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.SERVER_AUTH,
    ]
    assert extension_value(certificate, x509.BasicConstraints) == x509.BasicConstraints(
        ca=False, path_length=None
    )
    usage = extension_value(certificate, x509.KeyUsage)
    assert isinstance(usage, x509.KeyUsage)
    assert usage.key_encipherment  # an RSA key
    certificate.verify_directly_issued_by(intermediate().certificate)


@pytest.mark.parametrize(
    "not_after", [NOW, NOW - timedelta(seconds=1)], ids=["fail/empty-window", "fail/reversed"]
)
def test_leaf_builder_refuses_a_window_that_ends_before_it_starts(not_after: datetime) -> None:
    with pytest.raises(ValueError, match="notAfter must be after notBefore"):
        leaf(NOW, not_after)
