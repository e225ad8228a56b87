"""A data directory that is not one, and a port already taken: one line, the documented exit
code, nothing changed on disk."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devprov.bootstrap import open_container
from devprov.cli import main as cli_main
from devprov.core.error import ErrorKind

EXIT = cli_main.EXIT_CODES


def one_error_line(err: str, code: str) -> str:
    assert err.count("\n") == 1 and err.startswith(f"error: {code}: "), err
    assert "Traceback" not in err
    return err


@pytest.fixture
def data(tmp_path: Path) -> Path:
    c = open_container(tmp_path / "data", initialize=True)
    c.engine.dispose()
    return tmp_path / "data"


def test_a_data_directory_works(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The accepting twin of the refusals below."""
    assert cli_main.main(["hub", "list", "--data-dir", str(data)]) == 0
    assert "no hubs linked" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["hub", "list"], id="local-state"),
        pytest.param(["info"], id="info"),
        pytest.param(["certificate", "list"], id="server-client"),
        pytest.param(["enrollment-group", "list"], id="service-client"),
        pytest.param(["serve"], id="serve"),
    ],
)
def test_a_regular_file_is_not_a_data_directory(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "data"
    file.write_text("a file\n")
    assert cli_main.main([*argv, "--data-dir", str(file)]) == EXIT[ErrorKind.INVALID_INPUT]
    err = one_error_line(capsys.readouterr().err, "NotADataDirectory")
    assert f"{file} is a file, not a data directory" in err
    assert file.read_text() == "a file\n"


def test_serve_cannot_create_a_data_directory_under_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    inside = tmp_path / "file" / "data"
    assert cli_main.main(["serve", "--data-dir", str(inside)]) == EXIT[ErrorKind.INVALID_INPUT]
    err = one_error_line(capsys.readouterr().err, "NotADataDirectory")
    assert f"{tmp_path / 'file'} is a file, not a directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any directory")
def test_serve_in_a_directory_it_may_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        code = cli_main.main(["serve", "--data-dir", str(locked / "data")])
    finally:
        locked.chmod(0o700)
    assert code == EXIT[ErrorKind.NOT_PERMITTED]
    err = one_error_line(capsys.readouterr().err, "DataDirectoryNotWritable")
    assert str(locked / "data") in err and "Permission denied" in err
    assert list(locked.iterdir()) == []


def test_serve_where_the_file_system_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    """The same refusal as root meets it: sysfs lets nobody create directories."""
    target = Path("/sys/devprov-test-data")
    try:
        target.mkdir()
    except OSError:
        pass
    else:
        target.rmdir()
        pytest.skip("/sys accepts new directories here")
    code = cli_main.main(["serve", "--data-dir", str(target)])
    assert code == EXIT[ErrorKind.NOT_PERMITTED]
    err = one_error_line(capsys.readouterr().err, "DataDirectoryNotWritable")
    assert f"cannot create or write the data directory {target}" in err
    assert "choose a --data-dir you may write to" in err


def test_a_directory_without_a_database_is_left_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main.main(["hub", "list", "--data-dir", str(empty)]) == EXIT[ErrorKind.NOT_FOUND]
    err = one_error_line(capsys.readouterr().err, "DataDirectoryNotFound")
    assert "is not a devprov data directory" in err and "devprov serve --data-dir" in err
    assert list(empty.iterdir()) == []  # no database created on the way


def test_a_database_that_is_not_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "devprov.db").write_text("not SQLite\n")
    code = cli_main.main(["hub", "list", "--data-dir", str(directory)])
    assert code == EXIT[ErrorKind.UNAVAILABLE]
    err = one_error_line(capsys.readouterr().err, "StorageUnavailable")
    assert "file is not a database" in err
    assert (directory / "devprov.db").read_text() == "not SQLite\n"


def serve(data: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``devprov serve`` as a user runs it; the test expects it to refuse, so it never waits."""
    command = [sys.executable, "-m", "devprov.cli.main", "serve", "--data-dir", str(data)]
    if "--amqp-port" not in extra:
        command += ["--amqp-port", "0"]  # the default, 5671, is a port only one server holds
    return subprocess.run(
        [*command, *extra], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.e2e
def test_serve_on_a_port_in_use(data: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(data, "--host", "127.0.0.1", "--port", str(port), "--mqtt-port", "0")
    assert done.returncode == EXIT[ErrorKind.CONFLICT], done.stderr
    err = one_error_line(done.stderr, "PortInUse")
    assert f"127.0.0.1:{port} is already in use" in err and "--port" in err
    assert done.stdout == ""


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("option", "off"),
    [("--mqtt-port", "0 turns MQTT off"), ("--amqp-port", "0 turns AMQP off")],
    ids=["mqtt", "amqp"],
)
def test_serve_on_a_device_port_in_use(data: Path, option: str, off: str) -> None:
    """The MQTT or AMQP port is named as such, and the HTTPS port bound before it is let go."""
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        free.bind(("127.0.0.1", 0))
        https_port = free.getsockname()[1]
        free.close()
        port = taken.getsockname()[1]
        others = ["--mqtt-port", "0"] if option == "--amqp-port" else []
        done = serve(
            data, "--host", "127.0.0.1", "--port", str(https_port), *others, option, str(port)
        )
    assert done.returncode == EXIT[ErrorKind.CONFLICT], done.stderr
    err = one_error_line(done.stderr, "PortInUse")
    assert f"127.0.0.1:{port} is already in use" in err
    assert f"choose another port with {option} ({off})" in err
    with socket.socket() as again:  # nothing stayed bound
        again.bind(("127.0.0.1", https_port))


@pytest.mark.e2e
def test_serve_on_an_address_of_another_machine(data: Path) -> None:
    done = serve(data, "--host", "192.0.2.1", "--port", "0", "--mqtt-port", "0")  # RFC 5737
    assert done.returncode == EXIT[ErrorKind.INVALID_INPUT], done.stderr
    err = one_error_line(done.stderr, "CannotListen")
    assert "'192.0.2.1' is not an address of this machine" in err


def test_serve_refuses_a_port_out_of_range(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["serve", "--data-dir", str(data), "--port", "70000"])
    assert exited.value.code == 2
    assert "70000 is not a port number (0 to 65535)" in capsys.readouterr().err
