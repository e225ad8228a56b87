"""Preparing a data directory for a server: which directories it refuses, how it makes one
private, and the file system's refusals put in words.

The files a data directory holds are ``devprov.bootstrap.DataDir``'s business; this module works
on the paths it is given. A server makes its data directory private (0700, files 0600) at each
start, after a warning that names what others could reach; that is why it refuses a directory
that holds other things (a home directory, /tmp), whose mode is not devprov's to change.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from devprov.core.error import InvalidInputError, NotPermittedError
from devprov.storage.file import Exposure, find_exposed, make_private

# Below this much free space, a database write that fails is put down to a full file system:
# SQLite reports some failures for want of space as a "disk I/O error" (growing its -shm file,
# for one), and a first start needs about 300 KiB (the database with its write-ahead log).
NEARLY_FULL_BYTES = 1024 * 1024

logger = logging.getLogger(__name__)


class NotADataDirectoryError(InvalidInputError):
    """--data-dir names a file, or a directory that cannot be one (a parent is a file)."""

    code = "NotADataDirectory"
    number = 400250


class DataDirectoryAccessError(NotPermittedError):
    """The data directory cannot be created or written (permissions, a read-only file system)."""

    code = "DataDirectoryNotWritable"
    number = 403250


def refuse_foreign_directory(
    root: Path, own_names: set[str], is_initialised: Callable[[], bool]
) -> None:
    """Refuse ``root`` when it holds entries other than devprov's own and none of devprov's."""
    others = [p for p in root.iterdir() if p.name not in own_names] if root.is_dir() else []
    if others and not is_initialised():
        raise NotADataDirectoryError(
            f"{root} holds other files and is not a devprov data directory; devprov makes its "
            "data directory private (0700, its files 0600), so it starts only in a new or empty "
            "directory: choose another --data-dir"
        )


def make_private_with_warning(
    root: Path, directories: list[Path], files: list[Path], exposed_before: list[Exposure]
) -> None:
    """Warn about what other local users could reach (``exposed_before`` is what was found
    before a step that already changed a mode), then make the directories 0700 and the files
    0600."""
    exposed = exposed_before + find_exposed([*directories, *files])
    if exposed:
        logger.warning(
            "the data directory %s was open to other local users: %s. devprov made its "
            "directories 0700 and its files 0600; whoever read the files may hold the keys in "
            "them",
            root,
            "; ".join(e.describe() for e in exposed),
        )
    make_private(directories, files)


def remove_leftovers(targets: Iterable[Path]) -> None:
    """Remove the temporary files that writes of ``targets`` interrupted by a crash left."""
    for target in targets:
        for leftover in target.parent.glob(f".{target.name}.*.tmp"):
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def file_system_refusals(root: Path) -> Iterator[None]:
    """File system refusals become errors that say which path and what to do."""
    try:
        yield
    except (NotADirectoryError, FileExistsError) as exc:
        blocking = next(
            (p for p in (root, *root.parents) if p.exists() and not p.is_dir()),
            Path(str(exc.filename)),
        )
        raise NotADataDirectoryError(
            f"cannot create the data directory {root}: {blocking} is a file, not a "
            "directory; choose another --data-dir"
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DataDirectoryAccessError(
                f"cannot write the data directory {root}: its file system is full "
                f"({exc.filename or 'writing'}: {exc.strerror}); free some space and start "
                "again (what was written so far is complete or absent)"
            ) from exc
        raise DataDirectoryAccessError(
            f"cannot create or write the data directory {root} ({exc.filename}: "
            f"{exc.strerror}); choose a --data-dir you may write to"
        ) from exc


def is_nearly_full(path: Path) -> bool:
    try:
        stats = os.statvfs(path)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < NEARLY_FULL_BYTES


def full_disk_error(root: Path, detail: str) -> DataDirectoryAccessError:
    return DataDirectoryAccessError(
        f"cannot write the database of {root}: its file system is full or nearly "
        f"({detail}); free some space and start again"
    )
