"""Initialising a data directory: private whatever the umask and the modes before, one CA and
one admin token when servers start together, nothing half-written when a write fails."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devprov.bootstrap import open_container
from devprov.storage.data_dir import DataDirectoryAccessError, NotADataDirectoryError
from devprov.storage.database import create_database_engine, sqlite_url
from tests.datadir import check_complete, exposed, failing, leftovers, modes


@contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def first_start(root: Path) -> None:
    """What ``devprov serve`` writes before it listens: the container, then endpoint.json."""
    c = open_container(root, initialize=True)
    try:
        c.data.write_endpoint("127.0.0.1", 8443)
    finally:
        c.engine.dispose()


# --- modes -----------------------------------------------------------------------------------


def test_every_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with umask(0):
        c = open_container(root, initialize=True)
        try:
            c.data.write_endpoint("127.0.0.1", 8443)
            c.hubs.add(
                "default", "hub.azure-devices.net", actor="test"
            )  # a write: SQLite's -wal and -shm
            assert exposed(root) == {}, modes(root)
            assert sorted(modes(root)) == [
                ".",
                "admin-token",
                "devprov.db",
                "devprov.db-shm",
                "devprov.db-wal",
                "endpoint.json",
                "init.lock",
                "tls",
                "tls/ca.key",
                "tls/ca.pem",
                "tls/server.key",
                "tls/server.pem",
            ]
        finally:
            c.engine.dispose()


def open_up(root: Path) -> None:
    """What devprov before this check left under umask 022, or a careless copy leaves."""
    root.chmod(0o755)
    (root / "tls").chmod(0o755)
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(0o644)


def test_an_installation_open_to_others_is_made_private_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    first_start(root)
    open_up(root)
    with caplog.at_level(logging.WARNING, logger="devprov"):
        first_start(root)
    assert exposed(root) == {}, modes(root)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"the data directory {root} was open to other local users" in warning
    for name in ("", "/devprov.db", "/admin-token", "/tls/ca.key", "/tls/server.key"):
        assert f"{root}{name} (mode 0{755 if name == '' else 644}, open to group and others)" in (
            warning
        ), warning
    assert "made its directories 0700 and its files 0600" in warning


def test_the_twin_a_private_installation_starts_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    first_start(root)
    with caplog.at_level(logging.WARNING, logger="devprov"):
        first_start(root)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert exposed(root) == {}


def test_an_empty_directory_made_by_someone_else_becomes_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    root.mkdir()
    root.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="devprov"):
        first_start(root)
    assert f"{root} (mode 0755, open to group and others)" in caplog.text
    check_complete(root)


def test_a_directory_holding_other_files_is_refused_and_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    (home / "notes.txt").write_text("mine\n")
    with pytest.raises(NotADataDirectoryError, match="holds other files") as refused:
        open_container(home, initialize=True)
    assert "choose another --data-dir" in refused.value.message
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
    assert modes(home) == {".": 0o755, "notes.txt": 0o644}


# --- servers initialising together -----------------------------------------------------------


ROUNDS = 16
PROCESSES = 4
TLS_NAMES = ("ca.pem", "server.pem", "server.key")


def _initialise(roots: list[str], barrier: multiprocessing.synchronize.Barrier, results) -> None:
    """One of the servers of every round: each round, all start on a fresh directory at once."""
    for root in roots:
        barrier.wait(120)
        try:
            c = open_container(Path(root), initialize=True)
        except Exception as exc:  # a failed start is a result too
            results.put((root, repr(exc)))
            continue
        c.engine.dispose()
        # What this server would now load and hand out: its TLS files and its token check.
        tls = Path(root) / "tls"
        token = (Path(root) / "admin-token").read_text().strip()
        results.put(
            (
                root,
                [
                    *(hashlib.sha256((tls / n).read_bytes()).hexdigest() for n in TLS_NAMES),
                    c.admin_token_sha256 == hashlib.sha256(token.encode()).hexdigest(),
                ],
            )
        )


def test_servers_initialising_together_agree_on_one_ca(tmp_path: Path) -> None:
    """Four processes start on a fresh directory at the same moment (a barrier), 16 rounds:
    each ends with the files the directory holds, its server certificate signed by ca.pem."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    roots = [str(tmp_path / f"round-{n}") for n in range(ROUNDS)]
    servers = [
        context.Process(target=_initialise, args=(roots, barrier, results))
        for _ in range(PROCESSES)
    ]
    for server in servers:
        server.start()
    seen: dict[str, list[object]] = {root: [] for root in roots}
    for _ in range(ROUNDS * PROCESSES):
        root, result = results.get(timeout=120)
        seen[root].append(result)
    for server in servers:
        server.join(60)
    for root in roots:
        check_complete(Path(root))
        tls = Path(root) / "tls"
        on_disk = [hashlib.sha256((tls / n).read_bytes()).hexdigest() for n in TLS_NAMES]
        assert seen[root] == [[*on_disk, True]] * PROCESSES, (root, seen[root], on_disk)


# --- a full disk ------------------------------------------------------------------------------


def count_calls(name: str, root: Path) -> int:
    with failing(name, after=10**9) as calls:
        first_start(root)
    return len(calls)


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_a_full_disk_at_any_write_of_the_first_start(tmp_path: Path, step: str) -> None:
    """The file system fills at each write of a first start in turn (simulated ENOSPC; the
    end-to-end test on a real full tmpfs is tests/e2e/test_first_start.py): the start fails with
    DataDirectoryNotWritable, leaves no empty or partial file, and the next start succeeds."""
    calls = count_calls(step, tmp_path / "count")
    assert calls >= 5, f"a first start made {calls} {step} calls through os"
    for after in range(calls):
        root = tmp_path / f"data-{after}"
        with failing(step, after=after), pytest.raises(DataDirectoryAccessError) as failed:
            first_start(root)
        assert "file system is full" in failed.value.message
        assert leftovers(root) == [], (after, leftovers(root))
        assert exposed(root) == {}
        first_start(root)
        check_complete(root)


def test_the_twin_an_empty_ca_pem_left_by_an_old_full_disk_no_longer_blocks(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    (root / "tls").mkdir(parents=True, mode=0o700)
    (root / "tls" / "ca.key").write_text("")
    (root / "tls" / "ca.pem").write_text("")
    first_start(root)
    check_complete(root)


def test_sqlite_files_follow_the_database_mode(tmp_path: Path) -> None:
    """Why pre-creating the database 0600 is enough: SQLite gives -wal and -shm its mode."""
    database = tmp_path / "x.db"
    database.touch(mode=0o600)
    database.chmod(0o600)
    with umask(0):
        engine = create_database_engine(sqlite_url(database))
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x)")
        assert modes(tmp_path)["x.db-wal"] == 0o600 and modes(tmp_path)["x.db-shm"] == 0o600
        engine.dispose()
