"""The issuing keys' files: private whatever the umask, one per service and policy, read back as
the key that was saved, and a missing or damaged file said plainly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from devprov.core.error import InternalError
from devprov.storage.issuing_key import FileIssuingKeyStore, IssuingKeyMissingError
from tests import factory as f
from tests.datadir import exposed, modes
from tests.storage.test_file import umask


def public(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="ok/ec-p384"),
        pytest.param(f.ec_key, id="ok/ec-p256"),
        pytest.param(f.rsa_key, id="ok/rsa-2048"),
        pytest.param(ed25519.Ed25519PrivateKey.generate, id="ok/ed25519"),
    ],
)
def test_a_saved_key_loads_back(tmp_path: Path, make) -> None:
    keys = FileIssuingKeyStore(tmp_path)
    key = make()
    keys.save("svc", "Fleet-A", key)
    assert public(keys.load("svc", "fleet-a")) == public(key)
    assert public(keys.load("svc", "FLEET-A")) == public(key)


def test_files_and_directories_are_private_whatever_the_umask(tmp_path: Path) -> None:
    with umask(0o002):
        FileIssuingKeyStore(tmp_path).save("svc", "Fleet-A", f.ec_key())
    assert exposed(tmp_path / "issuing-keys") == {}
    assert modes(tmp_path / "issuing-keys") == {".": 0o700, "svc": 0o700, "svc/fleet-a.key": 0o600}


def test_saving_again_replaces_the_key(tmp_path: Path) -> None:
    keys = FileIssuingKeyStore(tmp_path)
    first, second = f.ec_key(), f.ec_key()
    keys.save("svc", "p-1", first)
    keys.save("svc", "P-1", second)
    assert public(keys.load("svc", "p-1")) == public(second)
    assert sorted(os.listdir(tmp_path / "issuing-keys" / "svc")) == ["p-1.key"]


def test_services_differing_in_case_keep_apart(tmp_path: Path) -> None:
    """Service names are case-sensitive: 'Plant' and 'plant' are two services, each its keys."""
    keys = FileIssuingKeyStore(tmp_path)
    upper, lower = f.ec_key(), f.ec_key()
    keys.save("Plant", "pol", upper)
    keys.save("plant", "pol", lower)
    assert public(keys.load("Plant", "pol")) == public(upper)
    assert public(keys.load("plant", "pol")) == public(lower)
    keys.remove("Plant", "pol")
    assert public(keys.load("plant", "pol")) == public(lower)


def test_a_missing_key_is_not_found(tmp_path: Path) -> None:
    keys = FileIssuingKeyStore(tmp_path)
    with pytest.raises(IssuingKeyMissingError, match="'pol'"):
        keys.load("svc", "pol")
    keys.save("svc", "other", f.ec_key())
    with pytest.raises(IssuingKeyMissingError, match="'pol'"):
        keys.load("svc", "pol")


def test_remove_deletes_the_file_and_is_idempotent(tmp_path: Path) -> None:
    keys = FileIssuingKeyStore(tmp_path)
    keys.save("svc", "pol", f.ec_key())
    keys.remove("svc", "POL")
    assert not keys.path("svc", "pol").exists()
    keys.remove("svc", "pol")
    keys.remove("nowhere", "pol")  # neither the file nor its directory
    with pytest.raises(IssuingKeyMissingError):
        keys.load("svc", "pol")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="fail/empty"),
        pytest.param(
            b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
            id="fail/garbage",
        ),
        pytest.param(
            f.ec_key().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
            id="fail/encrypted",
        ),
        pytest.param(
            x25519.X25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            id="fail/not-a-signing-key",
        ),
    ],
)
def test_a_damaged_key_file_is_an_internal_error_naming_it(tmp_path: Path, content) -> None:
    keys = FileIssuingKeyStore(tmp_path)
    keys.save("svc", "pol", f.ec_key())
    keys.path("svc", "pol").write_bytes(content)
    with pytest.raises(InternalError, match=r"pol\.key"):
        keys.load("svc", "pol")
