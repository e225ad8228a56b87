"""``devprov serve --webhook-allow``: the custom allocation webhook's destination policy in a real
server process. A webhook URL on 0.0.0.0 (which reaches this machine's listeners on Linux, as a
link-local or metadata address would reach the cloud's) is refused by default, and called once
the operator allows it, by every worker process."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devprov.cli.main import main
from tests.server import ServerProcess, running_server
from tests.webhook import allocation_webhook

pytestmark = pytest.mark.e2e

HUB = "hub-policy.azure-devices.net"
GROUP_KEY = base64.b64encode(b"p" * 32).decode()
KEY = "pOlIcY-SECRET"


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """The webhook's port, and the requests it received, as a list that fills as they come."""
    with allocation_webhook(HUB) as hook:
        yield hook.port, hook.seen


def asked_for(seen: list[dict[str, Any]]) -> set[str]:
    """The registration ids the webhook was asked about."""
    return {request["deviceRuntimeContext"]["registrationId"] for request in seen}


def run(server: ServerProcess, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main([*args, *server.cli_args(), "--json"])
    out = capsys.readouterr().out.strip()
    return code, json.loads(out) if out else None


def _hooked_group(server: ServerProcess, capsys: pytest.CaptureFixture[str], port: int) -> None:
    url = f"http://0.0.0.0:{port}/alloc?code={KEY}"
    assert main(["hub", "add", HUB, *server.cli_args()]) == 0
    capsys.readouterr()
    create = ["enrollment-group", "create", "hooked", "--primary-key", GROUP_KEY]
    custom = ["--allocation-policy", "custom", "--webhook-url", url]
    assert run(server, capsys, *create, *custom)[0] == 0


def test_a_refused_destination_fails_the_registration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], webhook: tuple[int, list[dict[str, Any]]]
) -> None:
    port, seen = webhook
    with running_server(tmp_path / "data") as server:
        _hooked_group(server, capsys, port)
        code, operation = run(server, capsys, "device", "register", "d-0", "--group-key", GROUP_KEY)
        assert code == 1 and operation["status"] == "failed"
        assert operation["registrationState"]["errorCode"] == 400207
        code, state = run(server, capsys, "registration", "show", "d-0")
        assert code == 0 and state["errorCode"] == 403430
        assert f"http://0.0.0.0:{port}/alloc?<redacted> was not called" in state["errorMessage"]
        assert "--webhook-allow 0.0.0.0/8" in state["errorMessage"]
        assert "d-0" not in asked_for(seen)
        register = ["device", "register", "d-00", "--group-key", GROUP_KEY, *server.cli_args()]
        assert main(register) == 1
        printed = capsys.readouterr().out
        assert "error:       400207: Custom allocation failed" in printed
        assert "the reason:  devprov registration show d-00" in printed
        log = "".join(server.output)
    assert "was not called" in log and KEY not in log


def test_the_operator_allows_a_destination_for_every_worker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], webhook: tuple[int, list[dict[str, Any]]]
) -> None:
    port, seen = webhook
    allow = ["--webhook-allow", "0.0.0.0/32", "--workers", "2"]
    with running_server(tmp_path / "data", *allow) as server:
        _hooked_group(server, capsys, port)
        # Each registration is a new connection, which the kernel hands to either process: with
        # eight of them, a worker that did not get the option would fail one (all but surely).
        for i in range(1, 9):
            code, operation = run(
                server, capsys, "device", "register", f"d-{i}", "--group-key", GROUP_KEY
            )
            assert code == 0, operation
            assert operation["registrationState"]["assignedHub"] == HUB
    assert {f"d-{i}" for i in range(1, 9)} <= asked_for(seen)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        pytest.param("169.254.1.5/16", "has host bits set", id="fail/host-bits"),
        pytest.param("metadata", "not an address or a network", id="fail/name"),
    ],
)
def test_webhook_allow_takes_addresses_and_networks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, fragment: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--data-dir", str(tmp_path / "data"), "--webhook-allow", value])
    assert exited.value.code == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
