"""The credential policies' issuing keys, as secret files in the data directory.

``<data-dir>/issuing-keys/<service>/<policy>.key``, PKCS#8 PEM, unencrypted like the server's own
TLS key beside it: the server must sign without an operator at hand. Directories are 0700, files
0600 and written all at once (storage.file.write_atomically). The service's name is kept as it is
(service names are case-sensitive: ``Plant`` and ``plant`` are two services), the policy's
lower-cased (policy names compare ignoring case). Both names are letters, digits and hyphens
(service.provisioning, core.credential_policy), so neither can leave the directory. Several
server instances sharing one database need the same files: a shared data directory, or the files
copied (docs/operational-certificates.md#where-the-keys-are).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from devprov.core.error import InternalError, NotFoundError
from devprov.core.issuance import PrivateKey
from devprov.storage.file import fsync_directory, make_private_directory, write_atomically

DIRECTORY = "issuing-keys"


class IssuingKeyMissingError(NotFoundError):
    """A policy's key file is gone (deleted by hand, or a data directory not shared)."""

    code = "IssuingKeyNotFound"
    number = 404620


class FileIssuingKeyStore:
    def __init__(self, root: Path) -> None:
        self._root = root / DIRECTORY

    def path(self, service: str, policy: str) -> Path:
        return self._root / service / f"{policy.lower()}.key"

    def save(self, service: str, policy: str, key: PrivateKey) -> None:
        path = self.path(service, policy)
        # Each level on its own: mkdir's parents=True would leave issuing-keys/ with the umask's
        # mode.
        make_private_directory(self._root)
        make_private_directory(path.parent)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomically(path, pem)

    def load(self, service: str, policy: str) -> PrivateKey:
        path = self.path(service, policy)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise IssuingKeyMissingError(
                f"the issuing key of credential policy '{policy}' is missing ({path})"
            ) from exc
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InternalError(
                f"{path} holds no readable unencrypted PEM private key; restore the file of "
                f"credential policy '{policy}'"
            ) from exc
        if not isinstance(key, PrivateKey):
            raise InternalError(f"{path} holds a key devprov does not issue with")
        return key

    def remove(self, service: str, policy: str) -> None:
        path = self.path(service, policy)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_directory(path.parent)
