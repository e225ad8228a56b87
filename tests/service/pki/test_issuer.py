"""service.pki.issuer: an issuer is loaded only if it can sign, and its chain bounds what it signs.

Real keys and real files under ``tmp_path``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devprov.core.error import CertificateExpiredError, NotACaCertificateError
from devprov.service.pki.ca import (
    Issued,
    KeyType,
    NewKey,
    build_demo,
    create_device,
    create_intermediate,
    create_verification,
)
from devprov.service.pki.error import (
    InvalidIssuerChainError,
    IssuerExpiresTooSoonError,
    IssuerKeyMismatchError,
    PathLengthExceededError,
)
from devprov.service.pki.file import PkiFiles, write_certificates, write_private_key
from devprov.service.pki.issuer import load_issuer
from tests.service.pki.factory import CODE, NOW, load, make_root

# --- loading an issuer ---------------------------------------------------------------------


def test_issuer_chain_comes_from_the_chain_file(tmp_path: Path) -> None:
    build_demo(tmp_path, key_type=KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    issuer = load(tmp_path, "intermediate")
    assert [c.subject for c in issuer.chain] == [
        issuer.issuer.certificate.subject,
        load(tmp_path, "root").issuer.certificate.subject,
    ]
    assert issuer.warnings == ()


def test_issuer_without_chain_file_warns_that_chains_stop_at_it(tmp_path: Path) -> None:
    build_demo(tmp_path, key_type=KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    (tmp_path / "intermediate-chain.pem").unlink()
    issuer = load(tmp_path, "intermediate")
    assert len(issuer.chain) == 1
    assert "not a root" in issuer.warnings[0]


def test_chain_file_of_another_certificate_is_refused(tmp_path: Path) -> None:
    build_demo(tmp_path, key_type=KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    (tmp_path / "intermediate-chain.pem").write_bytes((tmp_path / "root.pem").read_bytes())
    with pytest.raises(InvalidIssuerChainError, match="does not start"):
        load(tmp_path, "intermediate")


@pytest.mark.parametrize(
    ("case", "error"),
    [
        pytest.param("device", NotACaCertificateError, id="fail/not-a-ca"),
        pytest.param("no-keycertsign", NotACaCertificateError, id="fail/ca-without-keycertsign"),
        pytest.param("other-key", IssuerKeyMismatchError, id="fail/key-of-another-cert"),
        pytest.param("expired", CertificateExpiredError, id="fail/expired"),
    ],
)
def test_issuer_that_cannot_sign_is_refused(
    tmp_path: Path, case: str, error: type[Exception]
) -> None:
    build_demo(tmp_path, key_type=KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    files = PkiFiles(tmp_path / ("dev" if case == "device" else "root"))
    now = NOW + timedelta(days=31) if case == "expired" else NOW
    if case == "other-key":
        files = PkiFiles(tmp_path / "mixed")
        files.certificate.write_bytes((tmp_path / "root.pem").read_bytes())
        files.key.write_bytes((tmp_path / "intermediate.key").read_bytes())
    if case == "no-keycertsign":
        files = PkiFiles(tmp_path / "odd")
        write_ca_without_key_cert_sign(files)
    with pytest.raises(error):
        load_issuer(files.certificate, files.key, None, now=now)


def write_ca_without_key_cert_sign(files: PkiFiles) -> None:
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
    write_certificates(files.certificate, [certificate])
    write_private_key(files.key, key, None)


def test_refused_issuer_leaves_nothing_written(tmp_path: Path) -> None:
    build_demo(tmp_path, key_type=KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(NotACaCertificateError):
        issuer = load(tmp_path, "dev")
        create_device(
            PkiFiles(tmp_path / "child"),
            issuer,
            NewKey(days=1),
            registration_id="c",
            now=NOW,
        )
    assert sorted(tmp_path.iterdir()) == before


# --- what the issuer's chain allows a child ------------------------------------------------


def test_child_validity_is_clamped_to_the_issuer_with_a_warning(tmp_path: Path) -> None:
    root = make_root(tmp_path, days=10)
    issued = create_intermediate(
        PkiFiles(tmp_path / "i"),
        load(tmp_path, "root"),
        NewKey(days=100),
        common_name="I",
        path_length=None,
        now=NOW,
    )
    assert issued.certificate.not_valid_after_utc == root.certificate.not_valid_after_utc
    assert any("shortened from 100 to 10 days" in w for w in issued.warnings)


def test_child_within_the_issuers_validity_is_not_clamped(tmp_path: Path) -> None:
    make_root(tmp_path, days=10)
    issued = create_intermediate(
        PkiFiles(tmp_path / "i"),
        load(tmp_path, "root"),
        NewKey(days=10),
        common_name="I",
        path_length=None,
        now=NOW,
    )
    assert issued.warnings == ()
    assert issued.certificate.not_valid_after_utc == NOW.replace(microsecond=0) + timedelta(days=10)


def test_issuer_expiring_within_a_day_cannot_sign(tmp_path: Path) -> None:
    make_root(tmp_path, days=1)
    later = NOW + timedelta(hours=12)
    with pytest.raises(IssuerExpiresTooSoonError):
        create_verification(
            tmp_path / "v.pem",
            load(tmp_path, "root", now=later),
            NewKey(days=1),
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
        pytest.param(0, None, None, PathLengthExceededError, id="fail/root-pathlen-0"),
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

    def create() -> Issued:
        return create_intermediate(
            PkiFiles(tmp_path / "i"),
            load(tmp_path, "root"),
            NewKey(days=1),
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
    build_demo(tmp_path, key_type=KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    with pytest.raises(PathLengthExceededError):
        create_intermediate(
            PkiFiles(tmp_path / "i2"),
            load(tmp_path, "intermediate"),
            NewKey(days=1),
            common_name="I2",
            path_length=None,
            now=NOW,
        )
