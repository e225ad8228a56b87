"""The first start of ``devprov serve`` on a fresh data directory, as it goes wrong in practice:
several servers started at once, a file system that fills up half-way, a directory that others
can read, a process umask of 000."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devprov.bootstrap import open_container
from devprov.storage.data_dir import DataDirectoryAccessError
from tests.datadir import check_complete, check_tls, exposed, leftovers, modes
from tests.server import running_server

pytestmark = pytest.mark.e2e

PAGE = 4096
_LISTENING = re.compile(r"devprov is listening on (https://\S+) ")


def serve_command(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "devprov.cli.main",
        "serve",
        "--data-dir",
        str(root),
        "--mqtt-port",
        "0",
        "--amqp-port",
        "0",
        *extra,
    ]


def wait_listening(process: subprocess.Popen[str], timeout: float = 90) -> str:
    """The URL the server prints once it listens (its output is read line by line)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := _LISTENING.search(line):
            return match.group(1)
    raise AssertionError("devprov serve did not start:\n" + "".join(lines))


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def presented_chain_verifies(url: str, ca_file: Path) -> bool:
    """A TLS client that trusts only ca.pem accepts the server's certificate."""
    port = int(url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost"),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


@pytest.mark.parametrize("round_", range(3))
def test_servers_started_together_serve_one_ca(tmp_path: Path, round_: int) -> None:
    """Three ``devprov serve`` on one fresh directory at once: each ends up serving a server
    certificate that tls/ca.pem verifies, and the admin token in the directory works on each."""
    root = tmp_path / "data"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    processes = [
        subprocess.Popen(
            serve_command(root, "--port", "0"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        urls = [wait_listening(p) for p in processes]
        for url in urls:
            assert presented_chain_verifies(url, root / "tls" / "ca.pem"), url
        check_tls(root)
        token = (root / "admin-token").read_text().strip()
        for url in urls:
            with httpx.Client(
                base_url=url,
                verify=ssl.create_default_context(cafile=str(root / "tls" / "ca.pem")),
                headers={"Authorization": f"Bearer {token}"},
            ) as client:
                listed = client.get(
                    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Devices"
                    "/provisioningServices/default/certificates?api-version=2022-02-05"
                )
            assert listed.status_code == 200, listed.text
        check_complete(root)
    finally:
        for process in processes:
            stop(process)


# --- a full file system -----------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs of its own, so that it can be filled without filling anything else."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
            "tests/test_bootstrap.py simulates the full disk at each write instead"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(fs: Path, leave_pages: int) -> Path:
    """Fill ``fs`` but for ``leave_pages`` free pages; returns the filler file."""
    for entry in fs.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    stats = os.statvfs(fs)
    free = stats.f_bavail * stats.f_frsize
    filler = fs / "filler"
    with filler.open("wb") as stream:
        stream.write(b"\0" * (free - leave_pages * PAGE))
    return filler


def first_start(root: Path) -> None:
    c = open_container(root, initialize=True)
    try:
        c.data.write_endpoint("127.0.0.1", 8443)
    finally:
        c.engine.dispose()


def test_a_full_file_system_during_the_first_start(small_fs: Path) -> None:
    """The file system has room for 0, 1, 2... pages when the first start begins: a start that
    fails leaves no empty or partial file (devprov used to leave a 0-byte ca.pem that blocked
    every later start), and once there is room again the next start succeeds."""
    root = small_fs / "data"
    failures = 0
    for leave in [*range(16), *range(16, 120, 3)]:
        filler = fill(small_fs, leave)
        try:
            first_start(root)
        except DataDirectoryAccessError as exc:
            failure = exc.message
            failures += 1
        else:
            check_complete(root)
            break
        assert leftovers(root) == [], (leave, leftovers(root))
        filler.unlink()
        first_start(root)
        check_complete(root)
        assert "its file system is full" in failure, failure
    else:
        pytest.fail("a first start never fitted in 120 pages")
    assert failures >= 10, "the sweep did not hit enough points of the first start"


def test_serve_on_a_full_file_system_says_so_and_starts_later(small_fs: Path) -> None:
    root = small_fs / "data"
    filler = fill(small_fs, 1)  # room for ca.key, not for ca.pem
    refused = subprocess.run(
        serve_command(root, "--port", "0"), capture_output=True, text=True, timeout=120, check=False
    )
    assert leftovers(root) == []
    filler.unlink()
    with running_server(root) as server:
        assert presented_chain_verifies(server.url, server.ca_file)
    check_complete(root)
    assert refused.returncode == 5, refused.stderr
    assert refused.stderr.startswith("error: DataDirectoryNotWritable: ")
    assert "file system is full" in refused.stderr and "Traceback" not in refused.stderr


def test_serve_that_cannot_write_its_endpoint_says_so_in_one_line(tmp_path: Path) -> None:
    root = tmp_path / "data"
    first_start(root)
    (root / "endpoint.json").unlink()
    (root / "endpoint.json").mkdir(
        mode=0o700
    )  # in the way of the file a start writes once it listens
    refused = subprocess.run(
        serve_command(root, "--port", "0"), capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode == 5, refused.stderr
    assert refused.stderr.startswith("error: DataDirectoryNotWritable: ")
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr


# --- modes ------------------------------------------------------------------------------------


def test_serve_makes_an_open_directory_private_and_warns(tmp_path: Path) -> None:
    """A directory another tool created 0755 (a volume mount point, ``mkdir``) and a server
    started with umask 000: the server warns, naming the directory, and everything in it ends
    up 0700 / 0600, the database's -wal and -shm included."""
    root = tmp_path / "data"
    root.mkdir()
    root.chmod(0o755)
    previous = os.umask(0)
    try:
        with running_server(root) as server:
            output = "".join(server.output)
            assert f"the data directory {root} was open to other local users" in output
            assert f"{root} (mode 0755, open to group and others)" in output
            assert (root / "devprov.db-wal").exists()
            assert exposed(root) == {}, modes(root)
    finally:
        os.umask(previous)
    with running_server(root) as server:  # the twin: now private, a restart says nothing
        assert "open to other local users" not in "".join(server.output)
    check_tls(root)
