"""``devprov serve --workers N``: the processes share one listening socket, bound by the server
process, and one data directory; the workers end when the server process ends, however it
ends."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devprov.cli.main import main
from tests.server import running_server

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    """Running: not gone and not a zombie (a killed server's workers are nobody's to reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _workers(pid: int, count: int) -> list[int]:
    """The server's worker processes, once ``count`` of them have opened the database."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = [
            child
            for child in _children(pid)
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
        ]
        ready = [w for w in workers if any("devprov.db" in link for link in _fds(w).values())]
        if len(ready) == count:
            time.sleep(0.5)  # from the database to serving: the event loop's start
            return ready
        time.sleep(0.1)
    raise AssertionError(f"{count} workers of {pid} did not start")


def _fds(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found[int(entry.name)] = os.readlink(entry)
        except FileNotFoundError:
            continue
    return found


def _listening_sockets(port: int) -> list[str]:
    """The socket inodes listening on ``port`` over IPv4 (/proc/net/tcp, state 0A = LISTEN)."""
    inodes = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inodes.append(f"socket:[{fields[9]}]")
    return inodes


def test_two_workers_serve_one_port(tmp_path: Path, capsys) -> None:
    pki = tmp_path / "pki"
    assert main(["ca", "demo", str(pki)]) == 0
    with running_server(tmp_path / "data", "--workers", "2") as server:
        assert "2 worker processes" in "".join(server.output)
        workers = [
            pid
            for pid in _children(server.process.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert workers, "the second worker process is missing"
        args = server.cli_args()
        assert (
            main(
                [
                    "certificate",
                    "prove",
                    "root",
                    "--cert",
                    str(pki / "root.pem"),
                    "--key",
                    str(pki / "root.key"),
                    *args,
                ]
            )
            == 0
        )
        assert main(["hub", "add", "hub-a.azure-devices.net", *args]) == 0
        assert main(["enrollment-group", "create", "grp", "--ca-name", "root", *args]) == 0
        capsys.readouterr()
        context = ssl.create_default_context(cafile=str(server.ca_file))
        context.load_cert_chain(str(pki / "my-device-full-chain.pem"), str(pki / "my-device.key"))
        outcomes = []
        for _ in range(12):  # new connections: the kernel spreads them over both processes
            with httpx.Client(base_url=server.url, verify=context) as device:
                assert device.get("/nothing").status_code == 404
        assert (
            main(
                [
                    "device",
                    "register",
                    "my-device",
                    "--cert",
                    str(pki / "my-device-full-chain.pem"),
                    "--key",
                    str(pki / "my-device.key"),
                    "--json",
                    *args,
                ]
            )
            == 0
        )
        outcomes.append(json.loads(capsys.readouterr().out))
        assert outcomes[0]["status"] == "assigned"
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], (
        "a worker outlived the server"
    )


def test_workers_must_be_positive(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--workers", "0", "--data-dir", str(tmp_path / "d")]) == 3
    assert "--workers" in capsys.readouterr().err


def test_every_process_accepts_on_the_one_socket_the_server_bound(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--workers", "3") as server:
        workers = _workers(server.process.pid, 2)
        (listening,) = _listening_sockets(server.port)  # one socket, not one per process
        for pid in [server.process.pid, *workers]:
            assert listening in _fds(pid).values(), f"process {pid} does not hold the socket"


def test_the_workers_end_when_the_server_is_killed(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--workers", "3") as server:
        workers = _workers(server.process.pid, 2)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        deadline = time.monotonic() + 1.0
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        survivors = [w for w in workers if _alive(w)]
        for pid in survivors:  # so that a failure ends here rather than hang on their output
            os.kill(pid, signal.SIGKILL)
        assert survivors == [], "a worker outlived the killed server"
        assert _listening_sockets(server.port) == []  # nothing answers on the port any more


def test_the_twin_the_workers_serve_while_the_server_lives(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--workers", "2") as server:
        (worker,) = _workers(server.process.pid, 1)
        time.sleep(1.0)
        assert _alive(worker)
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(30)
        assert not _alive(worker)


@pytest.mark.parametrize(
    "second", [pytest.param(["--workers", "2"], id="with-workers"), pytest.param([], id="alone")]
)
def test_a_second_server_cannot_share_the_port(tmp_path: Path, second: list[str]) -> None:
    """Before, a second installation with --workers bound the port beside the first
    (SO_REUSEPORT) and the kernel split the clients between the two."""
    with running_server(tmp_path / "first", "--workers", "2") as first:
        _workers(first.process.pid, 1)
        command = [sys.executable, "-m", "devprov.cli.main", "serve"]
        other = subprocess.Popen(
            [
                *command,
                "--data-dir",
                str(tmp_path / "second"),
                "--port",
                str(first.port),
                "--mqtt-port",
                "0",
                "--amqp-port",
                "0",
                *second,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, workers included
        )
        try:
            out, err = other.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(other.pid, signal.SIGKILL)
            other.communicate()
            pytest.fail("a second server is serving on the port of the first")
        assert other.returncode == 7, err
        assert err.startswith("error: PortInUse: ") and f"127.0.0.1:{first.port}" in err
        assert out == ""
        assert len(_listening_sockets(first.port)) == 1
