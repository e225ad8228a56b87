"""Checks on a data directory as a whole: its TLS material holds together, its admin token is
the one the database knows, every file is private, nothing is half-written."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

TLS_FILES = ("ca.pem", "ca.key", "server.pem", "server.key")


def modes(root: Path) -> dict[str, int]:
    """Every entry below ``root`` (``root`` itself as "."), by relative path, with its mode."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def exposed(root: Path) -> dict[str, int]:
    """The entries that are not private: directories other than 0700, files other than 0600."""
    return {
        name: mode
        for name, mode in modes(root).items()
        if mode != (0o700 if (root / name).is_dir() else 0o600)
    }


def leftovers(root: Path) -> list[str]:
    """Temporary files an interrupted write left behind, and empty files devprov never leaves
    (the lock file is empty by design; an empty file is an empty SQLite database, and SQLite
    keeps its own files whole)."""
    found = []
    for path in root.rglob("*"):
        if path.is_dir() or path.name == "init.lock" or path.name.startswith("devprov.db"):
            continue
        if path.name.endswith(".tmp") or path.stat().st_size == 0:
            found.append(str(path.relative_to(root)))
    return found


def check_tls(root: Path) -> x509.Certificate:
    """The server CA and the server certificate hold together; returns the CA certificate."""
    tls = root / "tls"
    ca = x509.load_pem_x509_certificate((tls / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), None)
    assert ca.public_key() == ca_key.public_key(), "ca.key is not the key of ca.pem"
    chain = x509.load_pem_x509_certificates((tls / "server.pem").read_bytes())
    server_key = serialization.load_pem_private_key((tls / "server.key").read_bytes(), None)
    assert chain[0].public_key() == server_key.public_key(), "server.key is not server.pem's"
    chain[0].verify_directly_issued_by(ca)  # raises when another CA signed it
    assert chain[1:] == [ca], "server.pem does not end with ca.pem"
    return ca


def check_token(root: Path) -> str:
    """The admin token file holds the token whose hash the database keeps; returns it."""
    token = (root / "admin-token").read_text().strip()
    with sqlite3.connect(root / "devprov.db") as connection:
        (stored,) = connection.execute(
            "SELECT value FROM settings WHERE key = 'admin_token_sha256'"
        ).fetchone()
        services = connection.execute("SELECT name FROM services").fetchall()
    connection.close()
    assert hashlib.sha256(token.encode()).hexdigest() == stored, "admin-token is not the stored one"
    assert services == [("default",)]
    return token


def check_complete(root: Path) -> None:
    """What a start leaves: consistent TLS material, the right token, private files."""
    check_tls(root)
    check_token(root)
    assert exposed(root) == {}
    assert leftovers(root) == []


@contextmanager
def failing(name: str, *, after: int = 0) -> Iterator[list[int]]:
    """``os.<name>`` raises ENOSPC from its ``after``-th call on: a full disk at that step
    (devprov's own writes of data directory files go through os.write, os.fsync and os.replace)."""
    real: Callable[..., object] = getattr(os, name)
    calls: list[int] = []

    def fake(*args: object) -> object:
        calls.append(1)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args)

    setattr(os, name, fake)
    try:
        yield calls
    finally:
        setattr(os, name, real)
