"""service.pki.file: key, certificate and password files, and where one certificate's files go.

Real keys and real files under ``tmp_path``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.core.error import AlreadyExistsError, InvalidInputError, NotFoundError
from devprov.core.issuance import build_root_certificate
from devprov.service.pki.ca import generate_private_key
from devprov.service.pki.error import (
    FileAccessError,
    InvalidPasswordFileError,
    KeyNotEncryptedError,
    KeyPasswordRequiredError,
    MalformedKeyError,
    PkiFileNotFoundError,
    WrongKeyPasswordError,
)
from devprov.service.pki.file import (
    PkiFiles,
    load_private_key,
    read_password_file,
    write_certificates,
    write_private_key,
)
from tests.core.wording import assert_plain_words
from tests.service.pki.factory import NOW, mode, public_der


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask of 0 would leave a file created with 0o666 world-writable; modes must not care."""
    previous = os.umask(0)
    yield
    os.umask(previous)


# --- key and certificate files ----------------------------------------------------------------


@pytest.mark.usefixtures("permissive_umask")
def test_key_file_is_0600_and_certificate_file_0644_whatever_the_umask(tmp_path: Path) -> None:
    key = generate_private_key()
    root = build_root_certificate(key, "R", serial=1, now=NOW, days=1)
    write_private_key(tmp_path / "r.key", key, None)
    write_private_key(tmp_path / "e.key", key, b"secret")
    write_certificates(tmp_path / "r.pem", [root])
    assert mode(tmp_path / "r.key") == 0o600
    assert mode(tmp_path / "e.key") == 0o600
    assert mode(tmp_path / "r.pem") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.key", "r.key", "r.pem"]  # no temps


def test_existing_file_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    first, second = generate_private_key(), generate_private_key()
    write_private_key(path, first, None)
    with pytest.raises(AlreadyExistsError, match=str(path)):
        write_private_key(path, second, None)
    assert public_der(load_private_key(path, None)) == public_der(first)
    write_private_key(path, second, None, overwrite=True)
    assert public_der(load_private_key(path, None)) == public_der(second)
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]


def test_writing_into_a_missing_directory_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(FileAccessError, match="cannot write"):
        write_private_key(tmp_path / "nowhere" / "k.key", generate_private_key(), None)


@pytest.mark.parametrize(
    ("written_with", "loaded_with", "error", "words"),
    [
        pytest.param(b"secret", b"secret", None, (), id="ok/right-password"),
        pytest.param(None, None, None, (), id="ok/plain-key-no-password"),
        pytest.param(
            b"secret",
            None,
            KeyPasswordRequiredError,
            ("is encrypted", "--password-file"),
            id="fail/encrypted-key-without-password",
        ),
        pytest.param(
            b"secret",
            b"wrong",
            WrongKeyPasswordError,
            ("does not decrypt",),
            id="fail/wrong-password",
        ),
        pytest.param(
            None,
            b"secret",
            KeyNotEncryptedError,
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
    key = generate_private_key()
    path = tmp_path / "k.key"
    write_private_key(path, key, written_with)
    is_encrypted = b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert is_encrypted == (written_with is not None)
    if error is None:
        assert public_der(load_private_key(path, loaded_with)) == public_der(key)
        return
    with pytest.raises(error) as caught:
        load_private_key(path, loaded_with)
    assert isinstance(caught.value, InvalidInputError)
    for word in words:
        assert word in caught.value.message


@pytest.mark.parametrize(
    ("content", "error"),
    [
        pytest.param(b"not a key", MalformedKeyError, id="fail/garbage"),
        pytest.param(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            MalformedKeyError,
            id="fail/broken-pem-body",
        ),
        pytest.param(None, PkiFileNotFoundError, id="fail/missing"),
    ],
)
def test_unreadable_key_files_raise_input_or_not_found_errors(
    tmp_path: Path, content: bytes | None, error: type[Exception]
) -> None:
    path = tmp_path / "k.key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=str(path)) as caught:
        load_private_key(path, None)
    assert_plain_words(str(caught.value))


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
        with pytest.raises(InvalidPasswordFileError, match="empty"):
            read_password_file(path)
    else:
        assert read_password_file(path) == expected


def test_missing_password_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_password_file(tmp_path / "absent")


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("root", "dir/root", id="bare-name-in-dir"),
        pytest.param("root.pem", "dir/root", id="pem-suffix-dropped"),
        pytest.param("pki/root", "pki/root", id="path-as-given"),
    ],
)
def test_pki_files_locate_prefixes(prefix: str, expected: str) -> None:
    files = PkiFiles.locate(prefix, Path("dir"))
    assert files.prefix == Path(expected)
    assert files.certificate == Path(f"{expected}.pem")
    assert files.key == Path(f"{expected}.key")
    assert files.chain == Path(f"{expected}-chain.pem")
    assert files.full_chain == Path(f"{expected}-full-chain.pem")
    assert files.pfx == Path(f"{expected}.pfx")
