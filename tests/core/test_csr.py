"""core.csr: reading a device's CSR, its rules one by one, the operational certificate, the CRL.

Every key, request and CA is generated here; the odd requests (a broken signature, a key that
cannot sign, a key of an unknown algorithm) are made by editing the DER of a well-formed one.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.chain import validate_device_chain
from devprov.core.csr import (
    ALLOWED_CURVES,
    MAX_CSR_CHARACTERS,
    MAX_VALIDITY_DAYS,
    MIN_RSA_BITS,
    MIN_VALIDITY_DAYS,
    CsrAsksForCaError,
    CsrIsPemError,
    CsrKeyNotAllowedError,
    CsrSignatureError,
    CsrSubjectError,
    IssuanceProfile,
    MalformedCsrError,
    build_crl,
    build_operational_certificate,
    certificate_chain_b64,
    parse_csr,
    verify_csr,
)
from devprov.core.error import DevprovError, InvalidDeviceCertificateError
from devprov.core.issuance import (
    BACKDATE,
    Issuer,
    build_intermediate_certificate,
    build_root_certificate,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DEVICE = "dev-1"
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH

CsrKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)


# --- keys, requests and CAs -------------------------------------------------------------------


@cache
def key(kind: str) -> CsrKey:
    """One key per kind for the whole module: RSA and DSA generation is too slow to repeat."""
    makers: dict[str, Callable[[], CsrKey]] = {
        "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "p256-other": lambda: ec.generate_private_key(ec.SECP256R1()),
        "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
        "p192": lambda: ec.generate_private_key(ec.SECP192R1()),
        "secp256k1": lambda: ec.generate_private_key(ec.SECP256K1()),
        "brainpoolP256r1": lambda: ec.generate_private_key(ec.BrainpoolP256R1()),
        "rsa2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa1024": lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
        "ed448": ed448.Ed448PrivateKey.generate,
        "dsa": lambda: dsa.generate_private_key(key_size=2048),
    }
    return makers[kind]()


def cn(value: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(NameOID.COMMON_NAME, value)


def make_csr(
    signer: CsrKey | None = None,
    *,
    names: Sequence[x509.NameAttribute[str]] = (),
    extensions: Sequence[x509.ExtensionType] = (),
) -> x509.CertificateSigningRequest:
    signer = signer if signer is not None else key("p256")
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(list(names) or [cn(DEVICE)])
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    prehash = (
        None
        if isinstance(signer, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )
    return builder.sign(signer, prehash)


def der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(Encoding.DER)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def text(csr: x509.CertificateSigningRequest) -> str:
    return b64(der(csr))


def edited(
    csr: x509.CertificateSigningRequest, old: bytes, new: bytes
) -> x509.CertificateSigningRequest:
    """``csr`` with the first occurrence of ``old`` in its DER replaced by ``new`` (same length)."""
    data = der(csr)
    assert len(old) == len(new)
    assert old in data
    return x509.load_der_x509_csr(data.replace(old, new, 1))


def key_usage(*, key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


@cache
def root(kind: str = "p384", days: int = 3650) -> Issuer:
    signer = key(kind)
    assert isinstance(signer, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    certificate = build_root_certificate(signer, f"Root {kind}", serial=1, now=NOW, days=days)
    return Issuer(certificate, signer)


@cache
def intermediate(days: int = 365) -> Issuer:
    """The issuing CA of most tests: a P-256 intermediate under the P-384 root."""
    signer = ec.generate_private_key(ec.SECP256R1())
    certificate = build_intermediate_certificate(
        signer.public_key(), "Issuing CA", root(), serial=2, now=NOW, days=days, path_length=0
    )
    return Issuer(certificate, signer)


def extension(
    certificate: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return certificate.extensions.get_extension_for_class(kind)


def public_der(subject: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return subject.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


PROFILE = IssuanceProfile(validity_days=30)


# --- parse_csr: accepts -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["p256", "p384", "p521", "rsa2048"])
def test_accepts_a_request_for_an_allowed_key(kind: str) -> None:
    csr = make_csr(key(kind))
    parsed = parse_csr(text(csr))
    assert der(parsed) == der(csr)
    verify_csr(parsed, DEVICE)


def test_line_breaks_and_spaces_in_the_base64_are_skipped() -> None:
    data = text(make_csr())
    wrapped = "\r\n".join(data[i : i + 64] for i in range(0, len(data), 64))
    assert der(parse_csr(f" {wrapped}\n\t")) == der(parse_csr(data))


def test_a_request_of_exactly_the_limit_is_read() -> None:
    data = text(make_csr())
    assert der(parse_csr(data.ljust(MAX_CSR_CHARACTERS))) == base64.b64decode(data)


# --- parse_csr: rejects -----------------------------------------------------------------------


def _certificate_der() -> bytes:
    return intermediate().certificate.public_bytes(Encoding.DER)


def _version_two() -> bytes:
    data = der(make_csr())
    version = bytes.fromhex("020100")  # CertificationRequestInfo.version INTEGER 0 (RFC 2986 4.1)
    return data.replace(version, bytes.fromhex("020101"), 1)


REJECTED: list[tuple[str, Callable[[], str]]] = [
    ("fail/empty", lambda: ""),
    ("fail/whitespace-only", lambda: " \r\n\t"),
    ("fail/garbage", lambda: "this is not a certificate request"),
    ("fail/not-base64", lambda: "@@@@"),
    ("fail/non-ascii", lambda: "MIIBé"),
    ("fail/url-safe-alphabet", lambda: text(make_csr()).replace("+", "-").replace("/", "_") + "-_"),
    ("fail/missing-padding", lambda: b64(b"\x30\x03\x02\x01").rstrip("=")),
    ("fail/base64-of-arbitrary-bytes", lambda: b64(bytes(range(256)))),
    ("fail/base64-of-a-certificate", lambda: b64(_certificate_der())),
    ("fail/trailing-byte", lambda: b64(der(make_csr()) + b"\x00")),
    ("fail/truncated", lambda: b64(der(make_csr())[:-10])),
    ("fail/version-2", lambda: b64(_version_two())),
    ("fail/too-long", lambda: "A" * (MAX_CSR_CHARACTERS + 4)),
    ("fail/too-long-by-whitespace", lambda: text(make_csr()).ljust(MAX_CSR_CHARACTERS + 1)),
]


@pytest.mark.parametrize("make_text", [m for _, m in REJECTED], ids=[i for i, _ in REJECTED])
def test_rejects_what_is_not_base64_of_one_der_request(make_text: Callable[[], str]) -> None:
    with pytest.raises(MalformedCsrError) as caught:
        parse_csr(make_text())
    assert type(caught.value) is MalformedCsrError


def test_the_length_limit_names_the_length() -> None:
    with pytest.raises(MalformedCsrError, match=str(MAX_CSR_CHARACTERS + 4)):
        parse_csr("A" * (MAX_CSR_CHARACTERS + 4))


@pytest.mark.parametrize("lead", ["", "\n", "  "], ids=["pem", "pem-after-newline", "pem-indented"])
def test_pem_is_refused_with_what_to_send_instead(lead: str) -> None:
    pem = make_csr().public_bytes(Encoding.PEM).decode("ascii")
    with pytest.raises(CsrIsPemError) as caught:
        parse_csr(lead + pem)
    assert isinstance(caught.value, MalformedCsrError)
    assert "DER" in caught.value.message
    assert "PEM header and footer" in caught.value.message


@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_malformed_csr(value: str) -> None:
    try:
        parse_csr(value)
    except MalformedCsrError:
        return


@given(st.binary(max_size=600))
def test_base64_of_arbitrary_bytes_raises_only_malformed_csr(value: bytes) -> None:
    try:
        parse_csr(b64(value))
    except MalformedCsrError:
        return


# --- verify_csr: the signature ----------------------------------------------------------------


def _flipped_signature() -> x509.CertificateSigningRequest:
    csr = make_csr()
    data = bytearray(der(csr))
    data[-1] ^= 0x01  # the last octet of the ECDSA signature's s: still DER, no longer valid
    return x509.load_der_x509_csr(bytes(data))


def _swapped_key() -> x509.CertificateSigningRequest:
    """Signed by one P-256 key, carrying another's public key."""
    return edited(make_csr(key("p256")), public_der_of("p256"), public_der_of("p256-other"))


def public_der_of(kind: str) -> bytes:
    return key(kind).public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize(
    "make",
    [_flipped_signature, _swapped_key],
    ids=["fail/signature-byte-flipped", "fail/public-key-swapped"],
)
def test_a_signature_that_does_not_verify_is_refused(
    make: Callable[[], x509.CertificateSigningRequest],
) -> None:
    csr = parse_csr(b64(der(make())))  # still a well-formed request
    with pytest.raises(CsrSignatureError, match="possession"):
        verify_csr(csr, DEVICE)


def test_an_unknown_signature_algorithm_does_not_verify() -> None:
    ecdsa_sha256 = bytes.fromhex("06082a8648ce3d040302")
    csr = edited(make_csr(), ecdsa_sha256, bytes.fromhex("06082a8648ce3d040309"))
    with pytest.raises(CsrSignatureError):
        verify_csr(csr, DEVICE)


def test_a_key_that_cannot_sign_is_refused_for_its_kind() -> None:
    """An Ed25519 request whose key is relabelled X25519 (both 32 octets)."""
    ed25519_oid, x25519_oid = bytes.fromhex("06032b6570"), bytes.fromhex("06032b656e")
    csr = edited(make_csr(key("ed25519")), ed25519_oid, x25519_oid)
    with pytest.raises(CsrKeyNotAllowedError, match="X25519, a key that cannot sign"):
        verify_csr(csr, DEVICE)


def test_a_key_of_an_unknown_algorithm_is_refused() -> None:
    id_ec_public_key = bytes.fromhex("06072a8648ce3d0201")
    csr = edited(make_csr(), id_ec_public_key, bytes.fromhex("06072a8648ce3d0209"))
    with pytest.raises(CsrKeyNotAllowedError, match="cannot read"):
        verify_csr(csr, DEVICE)


# --- verify_csr: the subject ------------------------------------------------------------------


def long_cn(value: str) -> x509.NameAttribute[str]:
    """A CN over RFC 5280's 64 characters, which cryptography makes only with a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return x509.NameAttribute(NameOID.COMMON_NAME, value, _validate=False)


def org(value: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(NameOID.ORGANIZATION_NAME, value)


# cryptography warns each time it reads a subject attribute over its RFC 5280 bound.
_LONG_NAME_WARNING = pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")

SUBJECTS = [
    pytest.param([cn(DEVICE)], DEVICE, None, id="ok/cn-only"),
    pytest.param([org("Contoso"), cn(DEVICE)], DEVICE, None, id="ok/other-attributes-ignored"),
    pytest.param([cn("Dev-1")], DEVICE, None, id="ok/case-differs"),
    pytest.param([cn("d" * 64)], "D" * 64, None, id="ok/64-characters"),
    pytest.param([cn("dev-2")], DEVICE, "is not the registration id", id="fail/cn-differs"),
    pytest.param([cn("dev-1x")], DEVICE, "is not the registration id", id="fail/cn-prefix"),
    pytest.param([cn("\u212a")], "k", "is not the registration id", id="fail/kelvin-sign"),
    pytest.param([org("Contoso")], DEVICE, "no common name", id="fail/no-cn"),
    pytest.param([cn(DEVICE), cn(DEVICE)], DEVICE, "2 common names", id="fail/two-cns"),
    pytest.param(
        [long_cn("d" * 65)],
        "d" * 65,
        "at most 64",
        id="fail/65-characters",
        marks=_LONG_NAME_WARNING,
    ),
]


@pytest.mark.parametrize(("names", "registration_id", "refusal"), SUBJECTS)
def test_the_subject_has_one_cn_that_is_the_registration_id(
    names: list[x509.NameAttribute[str]], registration_id: str, refusal: str | None
) -> None:
    csr = parse_csr(text(make_csr(names=names)))
    if refusal is None:
        verify_csr(csr, registration_id)
        return
    with pytest.raises(CsrSubjectError, match=refusal):
        verify_csr(csr, registration_id)


def test_an_empty_subject_has_no_cn() -> None:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    csr = builder.sign(key("p256"), hashes.SHA256())
    with pytest.raises(CsrSubjectError, match="no common name"):
        verify_csr(csr, DEVICE)


# --- verify_csr: the key ----------------------------------------------------------------------


KEYS: list[tuple[str, str, str | None]] = [
    ("ok/p256", "p256", None),
    ("ok/p384", "p384", None),
    ("ok/p521", "p521", None),
    ("ok/rsa-2048", "rsa2048", None),
    ("fail/rsa-1024", "rsa1024", "RSA key has 1024 bits"),
    ("fail/p192", "p192", "curve secp192r1"),
    ("fail/secp256k1", "secp256k1", "curve secp256k1"),
    ("fail/brainpoolP256r1", "brainpoolP256r1", "curve brainpoolP256r1"),
    ("fail/ed25519", "ed25519", "key is Ed25519"),
    ("fail/ed448", "ed448", "key is Ed448"),
    ("fail/dsa", "dsa", "key is DSA"),
]


def _key_or_skip(kind: str) -> CsrKey:
    try:
        return key(kind)
    except Exception as exc:  # an OpenSSL built without the curve
        pytest.skip(f"cryptography cannot make a {kind} key here: {exc}")


@pytest.mark.parametrize(("kind", "refusal"), [c[1:] for c in KEYS], ids=[c[0] for c in KEYS])
def test_only_rsa_2048_up_and_the_nist_curves_are_allowed(kind: str, refusal: str | None) -> None:
    csr = parse_csr(text(make_csr(_key_or_skip(kind))))
    if refusal is None:
        verify_csr(csr, DEVICE)
        return
    with pytest.raises(CsrKeyNotAllowedError, match=refusal):
        verify_csr(csr, DEVICE)


def test_the_limits_are_the_documented_ones() -> None:
    assert MIN_RSA_BITS == 2048
    assert frozenset({"secp256r1", "secp384r1", "secp521r1"}) == ALLOWED_CURVES


# --- verify_csr: no CA rights -----------------------------------------------------------------


REQUESTS: list[tuple[str, list[x509.ExtensionType], str | None]] = [
    ("ok/nothing-requested", [], None),
    ("ok/ca-false", [x509.BasicConstraints(ca=False, path_length=None)], None),
    ("ok/digital-signature", [key_usage()], None),
    (
        "ok/san-and-eku",
        [
            x509.SubjectAlternativeName([x509.DNSName("dev-1.example")]),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
        ],
        None,
    ),
    ("fail/ca-true", [x509.BasicConstraints(ca=True, path_length=None)], "CA:TRUE"),
    ("fail/key-cert-sign", [key_usage(key_cert_sign=True)], "keyCertSign"),
    ("fail/crl-sign", [key_usage(crl_sign=True)], "cRLSign"),
]


@pytest.mark.parametrize(
    ("extensions", "refusal"), [c[1:] for c in REQUESTS], ids=[c[0] for c in REQUESTS]
)
def test_a_request_for_ca_rights_is_refused(
    extensions: list[x509.ExtensionType], refusal: str | None
) -> None:
    csr = parse_csr(text(make_csr(extensions=extensions)))
    if refusal is None:
        verify_csr(csr, DEVICE)
        return
    with pytest.raises(CsrAsksForCaError, match=refusal):
        verify_csr(csr, DEVICE)


# --- verify_csr: the order of the rules -------------------------------------------------------


def _bad_signature_and_cn() -> x509.CertificateSigningRequest:
    return edited(make_csr(names=[cn("other")]), public_der_of("p256"), public_der_of("p256-other"))


ORDER: list[tuple[str, Callable[[], x509.CertificateSigningRequest], type[DevprovError]]] = [
    ("signature-before-subject", _bad_signature_and_cn, CsrSignatureError),
    ("subject-before-key", lambda: make_csr(key("rsa1024"), names=[cn("other")]), CsrSubjectError),
    (
        "key-before-ca-rights",
        lambda: make_csr(
            key("ed25519"), extensions=[x509.BasicConstraints(ca=True, path_length=None)]
        ),
        CsrKeyNotAllowedError,
    ),
]


@pytest.mark.parametrize(("make", "first"), [c[1:] for c in ORDER], ids=[c[0] for c in ORDER])
def test_the_rules_apply_in_order(
    make: Callable[[], x509.CertificateSigningRequest], first: type[DevprovError]
) -> None:
    with pytest.raises(first):
        verify_csr(make(), DEVICE)


# --- IssuanceProfile --------------------------------------------------------------------------


@pytest.mark.parametrize("days", [MIN_VALIDITY_DAYS, 30, MAX_VALIDITY_DAYS])
def test_a_profile_takes_1_to_90_days(days: int) -> None:
    assert IssuanceProfile(validity_days=days).validity_days == days


@pytest.mark.parametrize(
    "settings",
    [
        {"validity_days": MIN_VALIDITY_DAYS - 1},
        {"validity_days": MAX_VALIDITY_DAYS + 1},
        {"validity_days": 30, "organization": ""},
        {"validity_days": 30, "organizational_unit": "u" * 65},
    ],
    ids=["fail/0-days", "fail/91-days", "fail/empty-o", "fail/65-character-ou"],
)
def test_a_profile_outside_the_bounds_is_a_value_error(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        IssuanceProfile(**settings)


# --- build_operational_certificate ------------------------------------------------------------


def issue(
    csr: x509.CertificateSigningRequest | None = None,
    *,
    issuer: Issuer | None = None,
    profile: IssuanceProfile = PROFILE,
    registration_id: str = DEVICE,
    now: datetime = NOW,
) -> x509.Certificate:
    return build_operational_certificate(
        csr if csr is not None else make_csr(),
        registration_id,
        issuer if issuer is not None else intermediate(),
        profile,
        serial=0x1234,
        now=now,
    )


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa2048"])
def test_the_certificate_validates_under_the_device_profile_to_the_root(kind: str) -> None:
    csr = make_csr(key(kind))
    leaf = issue(csr)
    leaf.verify_directly_issued_by(intermediate().certificate)
    chain = validate_device_chain(leaf, [intermediate().certificate], [root().certificate], at=NOW)
    assert chain.anchor == root().certificate
    assert public_der(leaf) == public_der(csr)


def test_negative_control_another_root_does_not_anchor_it() -> None:
    with pytest.raises(InvalidDeviceCertificateError):
        validate_device_chain(
            issue(), [intermediate().certificate], [root("p256").certificate], at=NOW
        )


def test_the_subject_is_the_registration_id_as_given_with_the_profiles_names() -> None:
    profile = IssuanceProfile(
        validity_days=7, organization="Contoso", organizational_unit="Plant 4"
    )
    leaf = issue(make_csr(names=[org("Device's own O"), cn("DEV-1")]), profile=profile)
    assert leaf.subject.rfc4514_string() == "CN=dev-1,OU=Plant 4,O=Contoso"
    assert leaf.issuer == intermediate().certificate.subject
    assert leaf.serial_number == 0x1234


def test_without_o_and_ou_the_subject_is_the_cn_alone() -> None:
    assert issue().subject.rfc4514_string() == f"CN={DEVICE}"


@pytest.mark.parametrize("days", [MIN_VALIDITY_DAYS, 30, MAX_VALIDITY_DAYS])
def test_the_validity_is_the_profiles_days(days: int) -> None:
    leaf = issue(profile=IssuanceProfile(validity_days=days))
    assert leaf.not_valid_before_utc == NOW - BACKDATE
    assert leaf.not_valid_after_utc == NOW + timedelta(days=days)


def test_the_validity_is_capped_at_the_issuers_not_after() -> None:
    issuer = intermediate(days=10)
    leaf = issue(issuer=issuer, profile=IssuanceProfile(validity_days=30))
    assert leaf.not_valid_after_utc == issuer.certificate.not_valid_after_utc
    assert leaf.not_valid_after_utc < NOW + timedelta(days=30)


def test_the_validity_starts_no_earlier_than_the_issuers() -> None:
    later = NOW + BACKDATE  # the issuer was made BACKDATE ago, so its notBefore is NOW
    leaf = issue(issuer=root(), now=later)
    assert root().certificate.not_valid_before_utc == NOW - BACKDATE
    assert leaf.not_valid_before_utc == later - BACKDATE
    early = issue(issuer=root(), now=NOW - BACKDATE)
    assert early.not_valid_before_utc == root().certificate.not_valid_before_utc


@pytest.mark.parametrize(
    "at",
    [NOW - BACKDATE - timedelta(seconds=1), NOW + timedelta(days=365)],
    ids=["fail/issuer-not-yet-valid", "fail/issuer-expired"],
)
def test_an_issuer_not_valid_now_issues_nothing(at: datetime) -> None:
    with pytest.raises(ValueError, match="issuing CA is valid from"):
        issue(issuer=intermediate(days=365), now=at)


def test_a_naive_now_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        issue(now=NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("server_auth", "usages"),
    [(False, [CLIENT_AUTH]), (True, [CLIENT_AUTH, SERVER_AUTH])],
    ids=["client-auth", "client-and-server-auth"],
)
def test_the_eku_is_client_auth_and_server_auth_on_request(
    server_auth: bool, usages: list[x509.ObjectIdentifier]
) -> None:
    leaf = issue(profile=IssuanceProfile(validity_days=30, server_auth=server_auth))
    eku = extension(leaf, x509.ExtendedKeyUsage)
    assert list(eku.value) == usages
    assert not eku.critical


@pytest.mark.parametrize(("kind", "key_encipherment"), [("p256", False), ("rsa2048", True)])
def test_ca_false_and_key_usage_are_critical(kind: str, key_encipherment: bool) -> None:
    leaf = issue(make_csr(key(kind)))
    constraints = extension(leaf, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=False, path_length=None)
    usage = extension(leaf, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.digital_signature
    assert usage.value.key_encipherment is key_encipherment
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign


def test_ski_is_the_keys_and_aki_the_issuers() -> None:
    csr = make_csr()
    leaf = issue(csr)
    assert extension(leaf, x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(csr.public_key())
    )
    issuer_ski = extension(intermediate().certificate, x509.SubjectKeyIdentifier).value
    aki = extension(leaf, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(issuer_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == issuer_ski.digest


def test_the_requests_own_extensions_are_not_copied() -> None:
    requested = [
        x509.SubjectAlternativeName([x509.DNSName("dev-1.example")]),
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
    ]
    leaf = issue(make_csr(extensions=requested))
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert list(extension(leaf, x509.ExtendedKeyUsage).value) == [CLIENT_AUTH]


@pytest.mark.parametrize(
    ("issuer_kind", "algorithm"),
    [
        ("p256", hashes.SHA256),
        ("p384", hashes.SHA384),
        ("p521", hashes.SHA384),
        ("rsa2048", hashes.SHA256),
    ],
)
def test_the_hash_follows_the_issuers_key(issuer_kind: str, algorithm: type) -> None:
    leaf = issue(issuer=root(issuer_kind))
    assert isinstance(leaf.signature_hash_algorithm, algorithm)
    leaf.verify_directly_issued_by(root(issuer_kind).certificate)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: make_csr(names=[cn("dev-2")]), CsrSubjectError),
        (_flipped_signature, CsrSignatureError),
        (lambda: make_csr(key("rsa1024")), CsrKeyNotAllowedError),
        (lambda: make_csr(extensions=[key_usage(key_cert_sign=True)]), CsrAsksForCaError),
    ],
    ids=["fail/cn", "fail/signature", "fail/key", "fail/ca-rights"],
)
def test_nothing_is_issued_for_a_request_that_breaks_a_rule(
    make: Callable[[], x509.CertificateSigningRequest], error: type[DevprovError]
) -> None:
    with pytest.raises(error):
        issue(make())


# --- build_crl --------------------------------------------------------------------------------


REVOKED = [(0x1234, NOW - timedelta(days=2)), (0xABCDEF, NOW - timedelta(hours=1)), (1, NOW)]


def crl(
    revoked: Sequence[tuple[int, datetime]] = REVOKED,
    *,
    issuer: Issuer | None = None,
    number: int = 7,
    now: datetime = NOW,
    next_update: datetime = NOW + timedelta(days=1),
) -> x509.CertificateRevocationList:
    issuer = issuer if issuer is not None else intermediate()
    return build_crl(issuer, revoked, number=number, now=now, next_update=next_update)


def test_the_crl_lists_each_serial_with_its_date_and_number() -> None:
    made = crl()
    assert [(r.serial_number, r.revocation_date_utc) for r in made] == REVOKED
    number = made.extensions.get_extension_for_class(x509.CRLNumber)
    assert number.value == x509.CRLNumber(7)
    assert not number.critical
    assert made.issuer == intermediate().certificate.subject
    assert made.last_update_utc == NOW - BACKDATE
    assert made.next_update_utc == NOW + timedelta(days=1)


def test_the_crl_is_signed_by_the_issuer_and_names_its_key() -> None:
    made = crl()
    issuer_key = intermediate().certificate.public_key()
    assert isinstance(issuer_key, ec.EllipticCurvePublicKey)
    assert made.is_signature_valid(issuer_key)
    other = root().certificate.public_key()
    assert isinstance(other, ec.EllipticCurvePublicKey)
    assert not made.is_signature_valid(other)  # negative control
    aki = made.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    issuer_ski = extension(intermediate().certificate, x509.SubjectKeyIdentifier).value
    assert isinstance(issuer_ski, x509.SubjectKeyIdentifier)
    assert aki.value.key_identifier == issuer_ski.digest
    assert not aki.critical


def test_an_empty_crl_still_has_its_number() -> None:
    made = crl([], number=0)
    assert len(made) == 0
    assert made.extensions.get_extension_for_class(x509.CRLNumber).value == x509.CRLNumber(0)


def test_a_crl_of_a_p384_issuer_is_signed_with_sha384() -> None:
    made = crl(issuer=root("p384"))
    assert isinstance(made.signature_hash_algorithm, hashes.SHA384)


@pytest.mark.parametrize(
    "arguments",
    [
        {"revoked": [(5, NOW), (5, NOW)]},
        {"revoked": [(0, NOW)]},
        {"revoked": [(1 << 159, NOW)]},
        {"revoked": [(5, NOW.replace(tzinfo=None))]},
        {"number": -1},
        {"number": 1 << 159},
        {"next_update": NOW},
        {"now": NOW.replace(tzinfo=None)},
    ],
    ids=[
        "fail/duplicate-serial",
        "fail/serial-zero",
        "fail/serial-over-20-octets",
        "fail/naive-revocation-date",
        "fail/negative-number",
        "fail/number-over-20-octets",
        "fail/next-update-not-after-now",
        "fail/naive-now",
    ],
)
def test_crl_arguments_outside_rfc_5280_are_value_errors(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        crl(**arguments)


# --- certificate_chain_b64 --------------------------------------------------------------------


def test_the_chain_is_base64_der_in_the_order_given() -> None:
    chain = [issue(), intermediate().certificate, root().certificate]
    items = certificate_chain_b64(chain)
    assert [
        x509.load_der_x509_certificate(base64.b64decode(i, validate=True)) for i in items
    ] == chain
    assert certificate_chain_b64([]) == []
