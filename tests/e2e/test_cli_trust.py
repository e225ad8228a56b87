"""The CLI against a real server it does not trust, and against no server at all.

A wrong --ca-file is a TLS trust failure naming the file (ServerNotTrusted, exit 4), a server
that is not there is ServerUnreachable (exit 10); each has the twin that works.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.cli.main import EXIT_CODES, main
from devprov.core.error import ErrorKind
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

NOT_TRUSTED = EXIT_CODES[ErrorKind.AUTHENTICATION_FAILED]
UNREACHABLE = EXIT_CODES[ErrorKind.UNAVAILABLE]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("trust") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    assert main(["ca", "demo", str(directory), "--json"]) == 0
    return directory


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Every kind of client command: management API, service API, device API.
COMMANDS = [
    pytest.param(["certificate", "list"], id="management"),
    pytest.param(["enrollment-group", "list"], id="service"),
    pytest.param(
        ["device", "register", "d-1", "--symmetric-key", "a2V5a2V5a2V5a2V5a2V5a2V5"], id="device"
    ),
]


@pytest.mark.parametrize("argv", COMMANDS)
@pytest.mark.parametrize(
    "ca_file",
    [
        pytest.param("root.pem", id="another-ca"),
        pytest.param("my-device.pem", id="not-a-ca"),
    ],
)
def test_a_wrong_ca_file_is_a_trust_failure_naming_it(
    server: ServerProcess,
    pki: Path,
    argv: list[str],
    ca_file: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    wrong = pki / ca_file
    assert main([*argv, *server.cli_args(), "--ca-file", str(wrong)]) == NOT_TRUSTED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ServerNotTrusted: "), err
    assert f"does not chain to the CA file {wrong}" in err and "--ca-file" in err


@pytest.mark.parametrize("argv", COMMANDS)
def test_the_server_ca_file_is_trusted(
    server: ServerProcess, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The twin: the same commands with the server's own CA named explicitly."""
    code = main([*argv, *server.cli_args(), "--ca-file", str(server.ca_file)])
    err = capsys.readouterr().err
    # the device's key is nobody's: refused by the service (4), which needed a trusted server
    assert (code, "ServerNotTrusted" in err) in {(0, False), (4, False)}, err
    if argv[0] == "device":
        assert "DeviceRefused" in err


@pytest.mark.parametrize("argv", COMMANDS)
def test_a_server_that_is_not_there_is_unreachable(
    server: ServerProcess, closed_port: int, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"https://localhost:{closed_port}"
    assert main([*argv, *server.cli_args(), "--url", url]) == UNREACHABLE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ServerUnreachable: "), err
    assert url in err and "devprov serve" in err
