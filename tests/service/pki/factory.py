"""What the service.pki tests share: a fixed clock, a DPS-shaped code, a root and its loader,
and two ways to look at what was written (a key's public half, a file's mode)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from devprov.core.issuance import PrivateKey
from devprov.service.pki.ca import Issued, NewKey, create_root
from devprov.service.pki.file import PkiFiles
from devprov.service.pki.issuer import LoadedIssuer, load_issuer

NOW = datetime(2026, 11, 27, 12, 0, 30, 123456, tzinfo=UTC)  # microseconds on purpose
CODE = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"


def public_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_root(tmp_path: Path, *, days: int = 30, path_length: int | None = None) -> Issued:
    return create_root(
        PkiFiles(tmp_path / "root"),
        NewKey(days=days),
        common_name="Root",
        path_length=path_length,
        now=NOW,
    )


def load(tmp_path: Path, name: str, *, now: datetime = NOW) -> LoadedIssuer:
    files = PkiFiles(tmp_path / name)
    return load_issuer(files.certificate, files.key, None, now=now)
