"""A second process that holds a SQLite database's write lock, as another devprov process or a
CLI command in the middle of a write would (``BEGIN IMMEDIATE``, then a sleep)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
print("released", flush=True)
"""


@dataclass
class LockHolder:
    process: subprocess.Popen[str]
    seconds: float  # how long it holds the lock
    locked_at: float  # time.monotonic() when it reported the lock taken

    def holds(self) -> bool:
        """True while the lock is still held (the holder has not exited)."""
        return self.process.poll() is None


@contextmanager
def holding_write_lock(database: Path, seconds: float) -> Iterator[LockHolder]:
    """Hold ``database``'s write lock from another process for ``seconds``; the block runs while
    it is held, and the exit waits for the release."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(database), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        yield LockHolder(process, seconds, time.monotonic())
        assert process.wait(seconds + 30) == 0
        assert process.stdout.readline().strip() == "released"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
