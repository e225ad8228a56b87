"""``devprov serve --workers 2``: two processes share one port and one data directory."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest

from devprov.cli.main import main
from tests.server import running_server

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


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
