"""service.pki: key generation, key and certificate files, issuer checks and the use cases.

Real keys and real files under ``tmp_path``. RSA-4096 is generated exactly once (it takes ~0.5 s).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.error import (
    AlreadyExistsError,
    CertificateExpiredError,
    InvalidInputError,
    InvalidRegistrationIdError,
    NotACaCertificateError,
    NotFoundError,
)
from devprov.core.issuance import (
    MAX_SERIAL_BITS,
    PrivateKey,
    build_root_certificate,
)
from devprov.service import pki

NOW = datetime(2026, 11, 27, 12, 0, 30, 123456, tzinfo=UTC)  # microseconds on purpose
CODE = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"


def public_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask of 0 would leave a file created with 0o666 world-writable; modes must not care."""
    previous = os.umask(0)
    yield
    os.umask(previous)


# --- keys and serials -------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(pki.KeyType), ids=lambda k: k.value)
def test_every_key_type_generates_and_round_trips(key_type: pki.KeyType, tmp_path: Path) -> None:
    key = pki.generate_private_key(key_type)
    assert pki.describe_key_type(key) == key_type.value
    pki.write_private_key(tmp_path / "k.key", key, None)
    loaded = pki.load_private_key(tmp_path / "k.key", None)
    assert public_der(loaded) == public_der(key)
    assert pki.describe_key_type(loaded) == key_type.value


def test_default_key_type_is_ec_p256() -> None:
    key = pki.generate_private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_serials_are_positive_below_2_159_and_distinct() -> None:
    serials = [pki.new_serial() for _ in range(2000)]
    assert all(0 < s < 2**MAX_SERIAL_BITS for s in serials)
    assert len(set(serials)) == len(serials)
    assert max(s.bit_length() for s in serials) > 150  # the full range is drawn, not 64 bits


# --- key and certificate files ----------------------------------------------------------------


@pytest.mark.usefixtures("permissive_umask")
def test_key_file_is_0600_and_certificate_file_0644_whatever_the_umask(tmp_path: Path) -> None:
    key = pki.generate_private_key()
    root = build_root_certificate(key, "R", serial=1, now=NOW, days=1)
    pki.write_private_key(tmp_path / "r.key", key, None)
    pki.write_private_key(tmp_path / "e.key", key, b"secret")
    pki.write_certificates(tmp_path / "r.pem", [root])
    assert mode(tmp_path / "r.key") == 0o600
    assert mode(tmp_path / "e.key") == 0o600
    assert mode(tmp_path / "r.pem") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.key", "r.key", "r.pem"]  # no temps


def test_existing_file_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    first, second = pki.generate_private_key(), pki.generate_private_key()
    pki.write_private_key(path, first, None)
    with pytest.raises(AlreadyExistsError, match=str(path)):
        pki.write_private_key(path, second, None)
    assert public_der(pki.load_private_key(path, None)) == public_der(first)
    pki.write_private_key(path, second, None, overwrite=True)
    assert public_der(pki.load_private_key(path, None)) == public_der(second)
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]


def test_writing_into_a_missing_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(pki.FileAccessError, match="cannot write"):
        pki.write_private_key(tmp_path / "nowhere" / "k.key", pki.generate_private_key(), None)


@pytest.mark.parametrize(
    ("written_with", "loaded_with", "error", "words"),
    [
        pytest.param(b"secret", b"secret", None, (), id="ok/right-password"),
        pytest.param(None, None, None, (), id="ok/plain-key-no-password"),
        pytest.param(
            b"secret",
            None,
            pki.KeyPasswordRequiredError,
            ("is encrypted", "--password-file"),
            id="fail/encrypted-key-without-password",
        ),
        pytest.param(
            b"secret",
            b"wrong",
            pki.WrongKeyPasswordError,
            ("does not decrypt",),
            id="fail/wrong-password",
        ),
        pytest.param(
            None,
            b"secret",
            pki.KeyNotEncryptedError,
            ("not encrypted",),
            id="fail/password-for-a-plain-key",
        ),
    ],
)
def test_encrypted_key_needs_its_password(
    tmp_path: Path,
    written_with: bytes | None,
    loaded_with: bytes | None,
    error: type[InvalidInputError] | None,
    words: tuple[str, ...],
) -> None:
    key = pki.generate_private_key()
    path = tmp_path / "k.key"
    pki.write_private_key(path, key, written_with)
    is_encrypted = b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert is_encrypted == (written_with is not None)
    if error is None:
        assert public_der(pki.load_private_key(path, loaded_with)) == public_der(key)
        return
    with pytest.raises(error) as caught:
        pki.load_private_key(path, loaded_with)
    assert isinstance(caught.value, InvalidInputError)
    for word in words:
        assert word in caught.value.message


@pytest.mark.parametrize(
    ("content", "error"),
    [
        pytest.param(b"not a key", pki.MalformedKeyError, id="fail/garbage"),
        pytest.param(None, pki.PkiFileNotFoundError, id="fail/missing"),
    ],
)
def test_unreadable_key_files_raise_input_or_not_found_errors(
    tmp_path: Path, content: bytes | None, error: type[Exception]
) -> None:
    path = tmp_path / "k.key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=str(path)):
        pki.load_private_key(path, None)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(b"secret\n", b"secret", id="ok/trailing-newline"),
        pytest.param(b"secret", b"secret", id="ok/no-newline"),
        pytest.param(b"secret\r\nignored\n", b"secret", id="ok/crlf-first-line-only"),
        pytest.param(b" spaced pass \n", b" spaced pass ", id="ok/spaces-are-kept"),
        pytest.param(b"", None, id="fail/empty-file"),
        pytest.param(b"\nsecret\n", None, id="fail/empty-first-line"),
    ],
)
def test_password_file_is_its_first_line(
    tmp_path: Path, content: bytes, expected: bytes | None
) -> None:
    path = tmp_path / "password"
    path.write_bytes(content)
    if expected is None:
        with pytest.raises(pki.InvalidPasswordFileError, match="empty"):
            pki.read_password_file(path)
    else:
        assert pki.read_password_file(path) == expected


def test_missing_password_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        pki.read_password_file(tmp_path / "absent")


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        pytest.param("my-device", True, id="ok/plain"),
        pytest.param("Dev.1_a:b-", True, id="ok/every-allowed-character-ends-with-dash"),
        pytest.param("a" * 64, True, id="ok/64-characters"),
        pytest.param("", False, id="fail/empty"),
        pytest.param("a" * 65, False, id="fail/65-characters"),
        pytest.param("ends.", False, id="fail/ends-with-dot"),
        pytest.param("ends_", False, id="fail/ends-with-underscore"),
        pytest.param("ends:", False, id="fail/ends-with-colon"),
        pytest.param("has space", False, id="fail/space"),
        pytest.param("ünï", False, id="fail/non-ascii"),
        pytest.param("a/b", False, id="fail/slash"),
        pytest.param("-starts", False, id="fail/starts-with-dash"),
    ],
)
def test_registration_id_follows_dps_rules(value: str, accepted: bool) -> None:
    if accepted:
        assert pki.validate_registration_id(value) == value
    else:
        with pytest.raises(InvalidRegistrationIdError):
            pki.validate_registration_id(value)


@given(st.text(max_size=80))
def test_registration_id_validation_raises_only_its_input_error(value: str) -> None:
    try:
        pki.validate_registration_id(value)
    except InvalidRegistrationIdError:
        return
    assert 1 <= len(value) <= 64
    assert value.isascii()
    assert value[0].isalnum()
    assert value[-1].isalnum() or value[-1] == "-"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("root", "dir/root", id="bare-name-in-dir"),
        pytest.param("root.pem", "dir/root", id="pem-suffix-dropped"),
        pytest.param("pki/root", "pki/root", id="path-as-given"),
    ],
)
def test_pki_files_locate_prefixes(prefix: str, expected: str) -> None:
    files = pki.PkiFiles.locate(prefix, Path("dir"))
    assert files.prefix == Path(expected)
    assert files.certificate == Path(f"{expected}.pem")
    assert files.key == Path(f"{expected}.key")
    assert files.chain == Path(f"{expected}-chain.pem")
    assert files.full_chain == Path(f"{expected}-full-chain.pem")
    assert files.pfx == Path(f"{expected}.pfx")


# --- issuers and use cases ------------------------------------------------------------------


def make_root(tmp_path: Path, *, days: int = 30, path_length: int | None = None) -> pki.Issued:
    return pki.create_root(
        pki.PkiFiles(tmp_path / "root"),
        pki.NewKey(days=days),
        common_name="Root",
        path_length=path_length,
        now=NOW,
    )


def load(tmp_path: Path, name: str, *, now: datetime = NOW) -> pki.LoadedIssuer:
    files = pki.PkiFiles(tmp_path / name)
    return pki.load_issuer(files.certificate, files.key, None, now=now)


def test_demo_writes_a_chain_without_warnings(tmp_path: Path) -> None:
    demo = pki.build_demo(
        tmp_path, key_type=pki.KeyType.EC_P256, days=30, device_name="dev", now=NOW
    )
    assert demo.root.warnings == demo.intermediate.warnings == demo.device.warnings == ()
    full_chain = x509.load_pem_x509_certificates((tmp_path / "dev-full-chain.pem").read_bytes())
    assert full_chain == [
        demo.device.certificate,
        demo.intermediate.certificate,
        demo.root.certificate,
    ]
    for child, parent in [(0, 1), (1, 2), (2, 2)]:
        full_chain[child].verify_directly_issued_by(full_chain[parent])


def test_device_pfx_holds_key_leaf_and_chain(tmp_path: Path) -> None:
    pki.build_demo(tmp_path, key_type=pki.KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    issuer = load(tmp_path, "intermediate")
    issued = pki.create_device(
        pki.PkiFiles(tmp_path / "pfx-dev"),
        issuer,
        pki.NewKey(days=1),
        registration_id="pfx-dev",
        now=NOW,
        pfx=True,
        pfx_password=b"pfx-secret",
    )
    assert issued.pfx_encrypted is True
    assert mode(tmp_path / "pfx-dev.pfx") == 0o600
    bundle = pkcs12.load_pkcs12((tmp_path / "pfx-dev.pfx").read_bytes(), b"pfx-secret")
    assert bundle.key is not None
    assert public_der(bundle.key) == public_der(issued.key)  # type: ignore[arg-type]
    assert bundle.cert is not None
    assert bundle.cert.certificate == issued.certificate
    assert bundle.cert.friendly_name == b"pfx-dev"
    assert [c.certificate for c in bundle.additional_certs] == list(issuer.chain)
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12((tmp_path / "pfx-dev.pfx").read_bytes(), b"wrong")


def test_unencrypted_pfx_loads_without_password(tmp_path: Path) -> None:
    issued = pki.create_device(
        pki.PkiFiles(tmp_path / "d"),
        None,
        pki.NewKey(days=1),
        registration_id="d",
        now=NOW,
        pfx=True,
    )
    assert issued.pfx_encrypted is False
    bundle = pkcs12.load_pkcs12((tmp_path / "d.pfx").read_bytes(), None)
    assert bundle.cert is not None
    assert bundle.cert.certificate == issued.certificate
    assert bundle.additional_certs == []


def test_issuer_chain_comes_from_the_chain_file(tmp_path: Path) -> None:
    pki.build_demo(tmp_path, key_type=pki.KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    issuer = load(tmp_path, "intermediate")
    assert [c.subject for c in issuer.chain] == [
        issuer.issuer.certificate.subject,
        load(tmp_path, "root").issuer.certificate.subject,
    ]
    assert issuer.warnings == ()


def test_issuer_without_chain_file_warns_that_chains_stop_at_it(tmp_path: Path) -> None:
    pki.build_demo(tmp_path, key_type=pki.KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    (tmp_path / "intermediate-chain.pem").unlink()
    issuer = load(tmp_path, "intermediate")
    assert len(issuer.chain) == 1
    assert "not a root" in issuer.warnings[0]


def test_chain_file_of_another_certificate_is_refused(tmp_path: Path) -> None:
    pki.build_demo(tmp_path, key_type=pki.KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    (tmp_path / "intermediate-chain.pem").write_bytes((tmp_path / "root.pem").read_bytes())
    with pytest.raises(pki.InvalidIssuerChainError, match="does not start"):
        load(tmp_path, "intermediate")


@pytest.mark.parametrize(
    ("case", "error"),
    [
        pytest.param("device", NotACaCertificateError, id="fail/not-a-ca"),
        pytest.param("no-keycertsign", NotACaCertificateError, id="fail/ca-without-keycertsign"),
        pytest.param("other-key", pki.IssuerKeyMismatchError, id="fail/key-of-another-cert"),
        pytest.param("expired", CertificateExpiredError, id="fail/expired"),
    ],
)
def test_issuer_that_cannot_sign_is_refused(
    tmp_path: Path, case: str, error: type[Exception]
) -> None:
    pki.build_demo(tmp_path, key_type=pki.KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    files = pki.PkiFiles(tmp_path / ("dev" if case == "device" else "root"))
    now = NOW + timedelta(days=31) if case == "expired" else NOW
    if case == "other-key":
        files = pki.PkiFiles(tmp_path / "mixed")
        files.certificate.write_bytes((tmp_path / "root.pem").read_bytes())
        files.key.write_bytes((tmp_path / "intermediate.key").read_bytes())
    if case == "no-keycertsign":
        files = pki.PkiFiles(tmp_path / "odd")
        write_ca_without_key_cert_sign(files)
    with pytest.raises(error):
        pki.load_issuer(files.certificate, files.key, None, now=now)


def write_ca_without_key_cert_sign(files: pki.PkiFiles) -> None:
    """A CA:TRUE certificate whose keyUsage omits keyCertSign (RFC 5280 4.2.1.3 forbids signing)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd CA")])
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    pki.write_certificates(files.certificate, [certificate])
    pki.write_private_key(files.key, key, None)


def test_refused_issuer_leaves_nothing_written(tmp_path: Path) -> None:
    pki.build_demo(tmp_path, key_type=pki.KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(NotACaCertificateError):
        issuer = load(tmp_path, "dev")
        pki.create_device(
            pki.PkiFiles(tmp_path / "child"),
            issuer,
            pki.NewKey(days=1),
            registration_id="c",
            now=NOW,
        )
    assert sorted(tmp_path.iterdir()) == before


def test_outputs_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    """The chain file exists: neither the certificate nor the key may be written."""
    (tmp_path / "root-chain.pem").write_text("occupied")
    with pytest.raises(AlreadyExistsError, match=r"root-chain\.pem"):
        make_root(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["root-chain.pem"]


def test_child_validity_is_clamped_to_the_issuer_with_a_warning(tmp_path: Path) -> None:
    root = make_root(tmp_path, days=10)
    issued = pki.create_intermediate(
        pki.PkiFiles(tmp_path / "i"),
        load(tmp_path, "root"),
        pki.NewKey(days=100),
        common_name="I",
        path_length=None,
        now=NOW,
    )
    assert issued.certificate.not_valid_after_utc == root.certificate.not_valid_after_utc
    assert any("shortened from 100 to 10 days" in w for w in issued.warnings)


def test_child_within_the_issuers_validity_is_not_clamped(tmp_path: Path) -> None:
    make_root(tmp_path, days=10)
    issued = pki.create_intermediate(
        pki.PkiFiles(tmp_path / "i"),
        load(tmp_path, "root"),
        pki.NewKey(days=10),
        common_name="I",
        path_length=None,
        now=NOW,
    )
    assert issued.warnings == ()
    assert issued.certificate.not_valid_after_utc == NOW.replace(microsecond=0) + timedelta(days=10)


def test_issuer_expiring_within_a_day_cannot_sign(tmp_path: Path) -> None:
    make_root(tmp_path, days=1)
    later = NOW + timedelta(hours=12)
    with pytest.raises(pki.IssuerExpiresTooSoonError):
        pki.create_verification(
            tmp_path / "v.pem",
            load(tmp_path, "root", now=later),
            pki.NewKey(days=1),
            code=CODE,
            key_path=None,
            now=later,
        )
    assert not (tmp_path / "v.pem").exists()


@pytest.mark.parametrize(
    ("root_path_length", "requested", "expected", "error"),
    [
        pytest.param(None, None, None, None, id="ok/unconstrained"),
        pytest.param(1, 0, 0, None, id="ok/within-limit"),
        pytest.param(2, 5, 1, None, id="ok/lowered-to-what-the-root-allows"),
        pytest.param(0, None, None, pki.PathLengthExceededError, id="fail/root-pathlen-0"),
    ],
)
def test_intermediate_path_length_respects_the_chain(
    tmp_path: Path,
    root_path_length: int | None,
    requested: int | None,
    expected: int | None,
    error: type[Exception] | None,
) -> None:
    make_root(tmp_path, path_length=root_path_length)

    def create() -> pki.Issued:
        return pki.create_intermediate(
            pki.PkiFiles(tmp_path / "i"),
            load(tmp_path, "root"),
            pki.NewKey(days=1),
            common_name="I",
            path_length=requested,
            now=NOW,
        )

    if error is not None:
        with pytest.raises(error):
            create()
        assert not (tmp_path / "i.pem").exists()
        return
    issued = create()
    constraints = issued.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.path_length == expected
    assert bool(issued.warnings) == (requested != expected)


def test_second_intermediate_under_a_pathlen_0_intermediate_is_refused(tmp_path: Path) -> None:
    pki.build_demo(tmp_path, key_type=pki.KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    with pytest.raises(pki.PathLengthExceededError):
        pki.create_intermediate(
            pki.PkiFiles(tmp_path / "i2"),
            load(tmp_path, "intermediate"),
            pki.NewKey(days=1),
            common_name="I2",
            path_length=None,
            now=NOW,
        )


@pytest.mark.parametrize(
    ("code", "warned"),
    [
        pytest.param(CODE, False, id="ok/dps-shaped"),
        pytest.param("my-own-code", True, id="warn/not-48-hex"),
    ],
)
def test_verification_certificate_carries_the_code(tmp_path: Path, code: str, warned: bool) -> None:
    make_root(tmp_path)
    issuer = load(tmp_path, "root")
    issued = pki.create_verification(
        tmp_path / "v.pem", issuer, pki.NewKey(days=1), code=code, key_path=None, now=NOW
    )
    assert issued.certificate.subject.rfc4514_string() == f"CN={code}"
    issued.certificate.verify_directly_issued_by(issuer.issuer.certificate)
    assert bool(issued.warnings) == warned
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("v.")] == ["v.pem"]


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("", id="fail/empty"),
        pytest.param("A" * 65, id="fail/65-characters"),
        pytest.param("tab\there", id="fail/unprintable"),
    ],
)
def test_verification_code_must_be_a_usable_common_name(tmp_path: Path, code: str) -> None:
    make_root(tmp_path)
    with pytest.raises(pki.InvalidCommonNameError):
        pki.create_verification(
            tmp_path / "v.pem",
            load(tmp_path, "root"),
            pki.NewKey(days=1),
            code=code,
            key_path=None,
            now=NOW,
        )


def test_issued_keys_come_from_the_requested_type(tmp_path: Path) -> None:
    issued = pki.create_root(
        pki.PkiFiles(tmp_path / "r"),
        pki.NewKey(days=1, key_type=pki.KeyType.RSA_2048),
        common_name="R",
        path_length=None,
        now=NOW,
    )
    assert isinstance(issued.key, rsa.RSAPrivateKey)
    assert issued.key_type == "rsa-2048"
    assert issued.certificate.public_key() == issued.key.public_key()
