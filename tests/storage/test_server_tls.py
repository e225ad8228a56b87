"""The server's TLS material checked as a set at each start: what an interrupted or concurrent
earlier start left is repaired, a CA whose files do not belong together is refused."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devprov.storage.server_tls import (
    SERVER_CERT_DAYS,
    DamagedTlsMaterialError,
    TlsFiles,
    ensure_tls_material,
)
from tests.datadir import check_tls
from tests.factory import NOW

HOSTS = ["localhost", "127.0.0.1"]


def files_in(root: Path) -> TlsFiles:
    tls = root / "tls"
    return TlsFiles(tls / "ca.pem", tls / "ca.key", tls / "server.pem", tls / "server.key")


def contents(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "tls").iterdir())}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    assert ensure_tls_material(files_in(tmp_path), HOSTS, NOW) is True
    return tmp_path


def other_set(tmp_path: Path) -> dict[str, bytes]:
    other = tmp_path / "other"
    ensure_tls_material(files_in(other), HOSTS, NOW)
    return contents(other)


def empty(name: str) -> Callable[[Path], None]:
    return lambda root: (root / "tls" / name).write_bytes(b"")


def missing(name: str) -> Callable[[Path], None]:
    return lambda root: (root / "tls" / name).unlink()


def from_other(*names: str) -> Callable[[Path], None]:
    """Files of another installation's CA: what two starts racing without a lock could mix."""

    def damage(root: Path) -> None:
        other = other_set(root)
        for name in names:
            (root / "tls" / name).write_bytes(other[name])

    return damage


@pytest.mark.parametrize(
    ("damage", "new_ca", "warning"),
    [
        pytest.param(empty("ca.pem"), True, "ca.pem empty, ca.key present", id="ok/empty-ca-pem"),
        pytest.param(missing("ca.key"), True, "ca.pem present, ca.key missing", id="ok/no-ca-key"),
        pytest.param(
            from_other("server.pem", "server.key"),
            False,
            "is not signed by the server CA",
            id="ok/server-certificate-of-another-ca",
        ),
        pytest.param(
            from_other("server.key"),
            False,
            "does not carry the public key of server.key",
            id="ok/interrupted-renewal",
        ),
        pytest.param(
            empty("server.pem"), False, "missing, empty or unreadable", id="ok/empty-server-pem"
        ),
    ],
)
def test_what_an_interrupted_start_left_is_repaired(
    root: Path,
    damage: Callable[[Path], None],
    new_ca: bool,
    warning: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = contents(root)
    damage(root)
    with caplog.at_level(logging.WARNING, logger="devprov"):
        assert ensure_tls_material(files_in(root), HOSTS, NOW) is True
    ca = check_tls(root)
    assert (ca.public_bytes(serialization.Encoding.PEM) != before["ca.pem"]) is new_ca
    assert warning in caplog.text


def test_the_twin_an_intact_set_is_used_as_it_is(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = contents(root)
    with caplog.at_level(logging.WARNING, logger="devprov"):
        assert ensure_tls_material(files_in(root), HOSTS, NOW) is False
    assert contents(root) == before and caplog.records == []


def test_a_server_certificate_near_its_end_is_renewed_quietly(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = contents(root)
    later = NOW + timedelta(days=SERVER_CERT_DAYS - 29)
    with caplog.at_level(logging.WARNING, logger="devprov"):
        assert ensure_tls_material(files_in(root), HOSTS, later) is True
    after = contents(root)
    assert after["ca.pem"] == before["ca.pem"] and after["server.pem"] != before["server.pem"]
    assert caplog.records == []
    check_tls(root)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(
            from_other("ca.key"), "tls/ca.key is not the key of", id="fail/ca-key-of-another-ca"
        ),
        pytest.param(
            lambda root: (root / "tls" / "ca.pem").write_text("not a certificate\n"),
            "holds no readable PEM certificate",
            id="fail/ca-pem-garbage",
        ),
        pytest.param(
            lambda root: (root / "tls" / "ca.key").write_bytes(
                ec.generate_private_key(ec.SECP256R1()).private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"pw"),
                )
            ),
            "holds no readable unencrypted PEM private key",
            id="fail/ca-key-encrypted",
        ),
    ],
)
def test_a_ca_whose_files_do_not_belong_together_is_refused(
    root: Path, damage: Callable[[Path], None], message: str
) -> None:
    """The CA is what clients trust: devprov never replaces one that has both files silently."""
    damage(root)
    before = contents(root)
    with pytest.raises(DamagedTlsMaterialError, match=message) as refused:
        ensure_tls_material(files_in(root), HOSTS, NOW)
    assert "delete" in refused.value.message and "clients must then trust" in refused.value.message
    assert contents(root) == before
    assert x509.load_pem_x509_certificates(before["server.pem"])  # still there, untouched
