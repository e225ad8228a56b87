"""Files of a data directory: atomic writes, private modes and the initialisation lock.

A data directory holds every key of an installation in clear (the database, the server's TLS
keys, the admin token), so its files are owner-only whatever the umask, and a file is never seen
half-written: a crash or a full disk in the middle of a write leaves the old file or none, never
a truncated one (which would stop every later start). How: the bytes go to a temporary file in
the same directory, are forced to disk (``fsync``), and the temporary file is renamed over the
target (``rename`` is atomic within a file system, POSIX ``rename()``); the directory is then
forced to disk too, or the rename itself could be lost with the power (``fsync(2)``: "Calling
fsync() does not necessarily ensure that the entry in the directory containing the file has
also reached disk. For that an explicit fsync() on a file descriptor for the directory is also
needed."). Which files a data directory holds is ``devprov.bootstrap``'s business.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Owner-only: the files hold keys in clear (the database holds every device and policy key).
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
# The umask of a server process: whatever it creates without naming a mode is the owner's alone.
PRIVATE_UMASK = 0o077

# The permission bits that let someone other than the owner read, write or enter.
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def write_atomically(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace ``path`` with ``data`` all at once, or leave it as it was.

    The temporary file is created 0600 by ``mkstemp`` and set to ``mode`` before it gets its
    name, so a key is never readable by others, not even for a moment. On any failure (ENOSPC
    included) the temporary file is removed and the error raised: nothing half-written remains.
    """
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        try:
            _write_all(descriptor, data)
            os.fchmod(descriptor, mode)  # exactly this mode, whatever the umask
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def _write_all(descriptor: int, data: bytes) -> None:
    # os.write may write less than asked (a signal, a nearly full disk); the rest follows.
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def fsync_directory(path: Path) -> None:
    """Force the directory's entries (a rename, a new file) to disk."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def create_private_file(path: Path) -> None:
    """Create ``path`` empty and owner-only if it does not exist (for files another library
    creates, such as SQLite's database, which it would create with the umask's mode)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        os.fchmod(descriptor, PRIVATE_FILE_MODE)
    finally:
        os.close(descriptor)


def make_private_directory(path: Path) -> None:
    """Create ``path`` (and its parents) if missing; the directory itself ends up 0700."""
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
        fsync_directory(path.parent)
    os.chmod(path, PRIVATE_DIRECTORY_MODE)


@dataclass(frozen=True)
class Exposure:
    """A directory or file that others could reach, and its mode before it was made private."""

    path: Path
    mode: int

    def describe(self) -> str:
        who = " and ".join(
            name
            for name, bits in (("group", stat.S_IRWXG), ("others", stat.S_IRWXO))
            if self.mode & bits
        )
        return f"{self.path} (mode {self.mode:04o}, open to {who})"


def find_exposed(paths: Iterable[Path]) -> list[Exposure]:
    """The paths among ``paths`` that exist and give their group or others any access."""
    exposed = []
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & _OTHERS:
            exposed.append(Exposure(path, mode))
    return exposed


def make_private(directories: Iterable[Path], files: Iterable[Path]) -> None:
    """Set existing ``directories`` to 0700 and existing regular ``files`` to 0600.

    A symbolic link among ``files`` is left alone: following it could change the mode of a file
    outside the directory that someone else planted the link to.
    """
    for directory in directories:
        if directory.is_dir():
            os.chmod(directory, PRIVATE_DIRECTORY_MODE)
    for file in files:
        # SQLite removes its -wal and -shm files when another process closes the database: a
        # file may go between the look and the change.
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(file.lstat().st_mode):
                os.chmod(file, PRIVATE_FILE_MODE)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created 0600 if missing) for the block.

    The lock file stays: removing it would let a process that opened the old file hold a lock
    that a newcomer, opening a new file of the same name, does not see. The kernel drops the
    lock with the process, so a crash never leaves it held.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock
