"""Files of a data directory: atomic writes that leave the old file or the new one, exact modes
whatever the umask, and the lock that serialises processes."""

from __future__ import annotations

import errno
import multiprocessing
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devprov.storage.file import (
    create_private_file,
    exclusive_lock,
    find_exposed,
    make_private,
    make_private_directory,
    write_atomically,
)
from tests.datadir import failing


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077], ids=["umask-000", "umask-022", "umask-077"])
def test_a_new_file_is_0600_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        write_atomically(tmp_path / "key", b"secret")
    assert (tmp_path / "key").read_bytes() == b"secret"
    assert mode(tmp_path / "key") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]  # no temporary file left


def test_a_write_replaces_the_file_and_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "token"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o600


@pytest.mark.parametrize(
    ("step", "after"),
    [
        pytest.param("write", 0, id="fail/first-write"),
        pytest.param("write", 1, id="fail/second-write"),
        pytest.param("fsync", 0, id="fail/fsync"),
        pytest.param("replace", 0, id="fail/rename"),
    ],
)
def test_a_failed_write_leaves_the_old_file_and_nothing_else(
    tmp_path: Path, step: str, after: int
) -> None:
    target = tmp_path / "ca.pem"
    target.write_bytes(b"old certificate")
    data = b"x" * (1 << 20)

    real_write = os.write

    def short_write(descriptor: int, chunk: bytes) -> int:
        # Write a quarter at a time, as a nearly full disk may: the loop must go on.
        return real_write(descriptor, bytes(chunk[: max(1, len(chunk) // 4)]))

    os.write = short_write  # type: ignore[assignment]
    try:
        with failing(step, after=after) as calls, pytest.raises(OSError) as raised:
            write_atomically(target, data)
    finally:
        os.write = real_write
    assert raised.value.errno == errno.ENOSPC and calls
    assert target.read_bytes() == b"old certificate"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem"]


def test_the_twin_short_writes_still_write_everything(tmp_path: Path) -> None:
    real_write = os.write
    os.write = lambda d, chunk: real_write(d, bytes(chunk[:1000]))  # type: ignore[assignment]
    try:
        write_atomically(tmp_path / "big", b"y" * 100_000)
    finally:
        os.write = real_write
    assert (tmp_path / "big").read_bytes() == b"y" * 100_000


def test_a_new_file_is_not_visible_before_it_is_complete(tmp_path: Path) -> None:
    """Another process sees no file, or the whole file: never an empty or partial one."""
    target = tmp_path / "server.pem"
    seen: list[bytes] = []
    real_fsync = os.fsync

    def look_then_fsync(descriptor: int) -> None:
        if target.exists():
            seen.append(target.read_bytes())
        real_fsync(descriptor)

    os.fsync = look_then_fsync
    try:
        write_atomically(target, b"complete")
    finally:
        os.fsync = real_fsync
    assert seen == [b"complete"]  # at the file's fsync no file yet; at the directory's, all
    assert target.read_bytes() == b"complete"


def test_create_private_file_keeps_content_and_fixes_the_mode(tmp_path: Path) -> None:
    with umask(0):
        create_private_file(tmp_path / "devprov.db")
    assert mode(tmp_path / "devprov.db") == 0o600 and (tmp_path / "devprov.db").read_bytes() == b""
    (tmp_path / "devprov.db").write_bytes(b"SQLite")
    (tmp_path / "devprov.db").chmod(0o644)
    create_private_file(tmp_path / "devprov.db")
    assert mode(tmp_path / "devprov.db") == 0o600
    assert (tmp_path / "devprov.db").read_bytes() == b"SQLite"


def test_a_private_directory_is_0700_new_or_not(tmp_path: Path) -> None:
    with umask(0):
        make_private_directory(tmp_path / "a" / "data")
    assert mode(tmp_path / "a" / "data") == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    make_private_directory(loose)
    assert mode(loose) == 0o700


def test_find_exposed_names_who_could_reach_what(tmp_path: Path) -> None:
    private, group, world, missing = (tmp_path / n for n in ("private", "group", "world", "gone"))
    for path, bits in ((private, 0o600), (group, 0o640), (world, 0o604)):
        path.write_bytes(b"")
        path.chmod(bits)
    exposed = find_exposed([private, group, world, missing])
    assert [(e.path, e.mode) for e in exposed] == [(group, 0o640), (world, 0o604)]
    assert exposed[0].describe() == f"{group} (mode 0640, open to group)"
    assert exposed[1].describe() == f"{world} (mode 0604, open to others)"
    make_private([tmp_path], [private, group, world, missing])
    assert find_exposed([tmp_path, private, group, world]) == []
    assert mode(tmp_path) == 0o700


def test_make_private_leaves_a_planted_link_and_its_target_alone(tmp_path: Path) -> None:
    """The twin of the test above: a symbolic link named like a data file is not followed."""
    outside = tmp_path / "someone-elses"
    outside.write_text("x")
    outside.chmod(0o644)
    data = tmp_path / "data"
    data.mkdir()
    (data / "devprov.db").symlink_to(outside)
    make_private([data], [data / "devprov.db"])
    assert mode(outside) == 0o644 and mode(data) == 0o700


def _hold(path: str, hold: float, ready: multiprocessing.synchronize.Event) -> None:
    with exclusive_lock(Path(path)):
        ready.set()
        time.sleep(hold)


def test_the_lock_makes_another_process_wait(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path / "init.lock"), 0.5, ready))
    holder.start()
    try:
        assert ready.wait(30)
        started = time.monotonic()
        with exclusive_lock(tmp_path / "init.lock"):
            waited = time.monotonic() - started
    finally:
        holder.join(30)
    assert waited > 0.3, "the lock did not wait for the process holding it"
    assert mode(tmp_path / "init.lock") == 0o600


def test_the_twin_a_free_lock_is_taken_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with exclusive_lock(tmp_path / "init.lock"):
        pass
    with exclusive_lock(tmp_path / "init.lock"):  # released: taken again at once
        pass
    assert time.monotonic() - started < 0.3
