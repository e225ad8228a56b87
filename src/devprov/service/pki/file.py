"""The local CA's files: where one certificate's files go, reading and writing them.

``PkiFiles`` names the files of one certificate; the readers turn certificate, key and password
files into values and raise this package's input errors; the writers put PEM and PKCS#12 bytes on
disk all or nothing. A key (and a PKCS#12 file, which holds one) is written with mode 0600 and no
file replaces an existing one unless asked to; a set of files is checked before any is written.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from devprov.core.certificate import parse_certificates
from devprov.core.encoding import describe_parse_failure
from devprov.core.error import AlreadyExistsError, MalformedCertificateError
from devprov.core.issuance import PrivateKey
from devprov.service.pki.error import (
    FileAccessError,
    InvalidPasswordFileError,
    KeyNotEncryptedError,
    KeyPasswordRequiredError,
    MalformedKeyError,
    PkiFileNotFoundError,
    WrongKeyPasswordError,
)

KEY_FILE_MODE = 0o600  # also for PKCS#12 files: they hold the key
CERTIFICATE_FILE_MODE = 0o644


@dataclass(frozen=True)
class PkiFiles:
    """The files of one named certificate, sharing a path prefix such as ``pki/root``.

    A device's chain and full-chain files hold the same certificates (leaf, intermediates, root);
    the second carries the name the Azure docs tell users to build by hand
    (docs/sdk-clients.md#certgensh-files).
    """

    prefix: Path

    @classmethod
    def locate(cls, prefix: str, directory: Path) -> PkiFiles:
        """``pki/root`` as given; a bare ``root`` inside ``directory``. A ``.pem`` is dropped."""
        for suffix in (".pem", ".key"):
            prefix = prefix.removesuffix(suffix)
        if "/" in prefix or os.sep in prefix:
            return cls(Path(prefix))
        return cls(directory / prefix)

    def _sibling(self, suffix: str) -> Path:
        return self.prefix.parent / f"{self.prefix.name}{suffix}"

    @property
    def certificate(self) -> Path:
        return self._sibling(".pem")

    @property
    def key(self) -> Path:
        return self._sibling(".key")

    @property
    def chain(self) -> Path:
        return self._sibling("-chain.pem")

    @property
    def full_chain(self) -> Path:
        return self._sibling("-full-chain.pem")

    @property
    def pfx(self) -> Path:
        return self._sibling(".pfx")


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise PkiFileNotFoundError(f"the {what} {path} does not exist") from exc
    except OSError as exc:
        raise FileAccessError(f"cannot read the {what} {path}: {exc.strerror}") from exc


def _already_exists(path: Path) -> AlreadyExistsError:
    return AlreadyExistsError(f"{path} already exists; nothing was written (--force replaces it)")


def _write_file(path: Path, data: bytes, *, mode: int, overwrite: bool) -> None:
    """All of ``data`` or nothing: a temporary file in the same directory, then link or rename.

    ``mkstemp`` creates the file with mode 0600, so a key is never readable by others, not even
    for a moment; ``os.link`` fails rather than replace an existing file, ``os.replace`` replaces.
    """
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise FileAccessError(f"cannot write in {path.parent}: {exc.strerror}") from exc
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)  # exactly this mode, whatever the umask
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    except FileExistsError as exc:
        raise _already_exists(path) from exc
    except OSError as exc:
        raise FileAccessError(f"cannot write {path}: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def key_pem(key: PrivateKey, password: bytes | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password is not None:
        encryption = serialization.BestAvailableEncryption(password)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def certificates_pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def pfx_bytes(
    name: str,
    key: PrivateKey,
    chain: Sequence[x509.Certificate],
    password: bytes | None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password is not None:
        encryption = serialization.BestAvailableEncryption(password)
    return pkcs12.serialize_key_and_certificates(
        name.encode("utf-8"), key, chain[0], list(chain[1:]) or None, encryption
    )


def write_private_key(
    path: Path, key: PrivateKey, password: bytes | None, *, overwrite: bool = False
) -> None:
    """PKCS#8 PEM, encrypted with the best available cipher when a password is given; 0600."""
    _write_file(path, key_pem(key, password), mode=KEY_FILE_MODE, overwrite=overwrite)


def write_certificates(
    path: Path, certificates: Sequence[x509.Certificate], *, overwrite: bool = False
) -> None:
    _write_file(
        path, certificates_pem(certificates), mode=CERTIFICATE_FILE_MODE, overwrite=overwrite
    )


def read_password_file(path: Path) -> bytes:
    """The first line of the file, without its line ending."""
    first = _read_file(path, "password file").split(b"\n", 1)[0].removesuffix(b"\r")
    if not first:
        raise InvalidPasswordFileError(
            f"the password file {path} is empty; its first line is the password"
        )
    return first


def load_certificates(path: Path) -> list[x509.Certificate]:
    try:
        return parse_certificates(_read_file(path, "certificate file"))
    except MalformedCertificateError as exc:
        raise MalformedCertificateError(f"{path}: {exc.message}") from exc


def load_private_key(
    path: Path, password: bytes | None, *, flag: str = "--password-file"
) -> PrivateKey:
    data = _read_file(path, "private key")
    try:
        # Skipping the RSA consistency check saves ~450 ms per RSA-4096 load
        # (docs/performance.md#rsa-private-key-loading).
        # It guards against a damaged or doctored key, and here that costs nothing to give up:
        # the file is the operator's own, whoever can doctor it already holds the secret, the
        # public half is compared with the issuer's certificate (issuer.load_issuer), and every
        # signature made with it is verified before anything is written (ca._check_signature).
        key = serialization.load_pem_private_key(
            data, password, unsafe_skip_rsa_key_validation=True
        )
    except TypeError as exc:  # cryptography's signal for a missing or a superfluous password
        if password is None:
            raise KeyPasswordRequiredError(
                f"the private key {path} is encrypted; give its password with {flag}"
            ) from exc
        raise KeyNotEncryptedError(f"the private key {path} is not encrypted; drop {flag}") from exc
    except ValueError as exc:
        if password is not None and b"ENCRYPTED" in data:
            raise WrongKeyPasswordError(
                f"the password from {flag} does not decrypt the private key {path}"
            ) from exc
        detail = (
            describe_parse_failure(exc)
            if b"PRIVATE KEY-----" in data
            else "it has no '-----BEGIN ... PRIVATE KEY-----' block"
        )
        raise MalformedKeyError(f"{path} holds no readable PEM private key: {detail}") from exc
    except UnsupportedAlgorithm as exc:
        raise MalformedKeyError(f"the private key {path} uses an unsupported algorithm") from exc
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise MalformedKeyError(
            f"{path} holds a {type(key).__name__}; devprov signs with RSA, EC or Ed25519 keys"
        )
    return key


# --- sets of files --------------------------------------------------------------------------


@dataclass(frozen=True)
class FileWrite:
    """One file of a set: its role in the report, its path, its bytes and its mode."""

    role: str
    path: Path
    data: bytes
    mode: int


def ensure_free(paths: Sequence[Path], *, overwrite: bool) -> None:
    for path in paths:
        if not overwrite and (path.exists() or path.is_symlink()):
            raise _already_exists(path)


def commit_writes(writes: Sequence[FileWrite], overwrite: bool) -> tuple[tuple[str, Path], ...]:
    """Check every target first, so that a refusal leaves nothing half-written."""
    ensure_free([w.path for w in writes], overwrite=overwrite)
    for write in writes:
        try:
            write.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FileAccessError(f"cannot create {write.path.parent}: {exc.strerror}") from exc
        _write_file(write.path, write.data, mode=write.mode, overwrite=overwrite)
    return tuple((w.role, w.path) for w in writes)


def standard_writes(
    files: PkiFiles,
    key: PrivateKey,
    chain: Sequence[x509.Certificate],
    password: bytes | None,
) -> list[FileWrite]:
    return [
        FileWrite(
            "certificate", files.certificate, certificates_pem(chain[:1]), CERTIFICATE_FILE_MODE
        ),
        FileWrite("key", files.key, key_pem(key, password), KEY_FILE_MODE),
        FileWrite("chain", files.chain, certificates_pem(chain), CERTIFICATE_FILE_MODE),
    ]
