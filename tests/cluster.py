"""A PostgreSQL cluster of the test's own (initdb and pg_ctl on a temporary directory and a free
port), for tests that stop and start the database: never the machine's shared server.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user and
lives in a directory of its own under the system's temporary directory (the test's own
directory is private to root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.instances import free_port


def _bin_directory() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@dataclass
class Cluster:
    bin: Path
    directory: Path
    port: int
    user: str | None  # the system user running it, when the tests run as root

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), *args]
        done = subprocess.run(
            command, user=self.user, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr + self.log()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self.pg_ctl("-w", "-o", options, "-l", str(self.directory / "log"), "start")

    def stop_immediately(self) -> None:
        """The server's processes quit without a checkpoint, as on a crash: connections drop."""
        self.pg_ctl("-m", "immediate", "stop")

    def log(self) -> str:
        path = self.directory / "log"
        return path.read_text() if path.exists() else ""


@contextmanager
def own_cluster() -> Iterator[Cluster]:
    """A started cluster with trust authentication for ``postgres`` on 127.0.0.1; skips, with
    the reason, where PostgreSQL's server programs are not installed."""
    bin_directory = _bin_directory()
    if bin_directory is None:
        pytest.skip("PostgreSQL's server programs (/usr/lib/postgresql/*/bin) are not installed")
    user = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL")
        user = "postgres"
    directory = Path(tempfile.mkdtemp(prefix="devprov-cluster-"))
    try:
        if user is not None:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        cluster = Cluster(bin_directory, directory, free_port(), user)
        initdb = [
            str(bin_directory / "initdb"),
            "-D",
            str(directory / "data"),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        done = subprocess.run(
            initdb, user=user, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        cluster.start()
        try:
            yield cluster
        finally:
            pg_ctl = [str(bin_directory / "pg_ctl"), "-D", str(directory / "data")]
            subprocess.run(
                [*pg_ctl, "-m", "immediate", "stop"],
                user=user,
                capture_output=True,
                timeout=60,
                check=False,
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
