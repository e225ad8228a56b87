"""``devprov user`` against a real data directory; the terminal prompt through a real pty."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.service.operator import MIN_PASSWORD_LENGTH

PASSWORD = "a long enough passphrase"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    open_container(directory, initialize=True).engine.dispose()
    return directory


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def password_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "password"
    path.write_text(text)
    return str(path)


def names(data: Path, capsys) -> list[str]:
    code, out, _ = run(capsys, "user", "list", "--data-dir", str(data), "--json")
    assert code == 0
    return [u["name"] for u in json.loads(out)]


def test_add_from_a_file_list_passwd_and_remove(data: Path, tmp_path: Path, capsys) -> None:
    given = password_file(tmp_path, PASSWORD + "\n")
    code, out, _ = run(
        capsys, "user", "add", "alice", "--password-file", given, "--data-dir", str(data)
    )
    assert (code, out) == (0, "added portal user 'alice'\n")
    assert names(data, capsys) == ["alice"]
    c = open_container(data)
    try:
        assert c.operators.check_password("alice", PASSWORD) is not None  # without the newline
    finally:
        c.engine.dispose()
    code, out, _ = run(
        capsys, "user", "passwd", "alice", "--password-file", given, "--data-dir", str(data)
    )
    assert code == 0 and "0 portal sessions ended" in out
    code, out, _ = run(capsys, "user", "remove", "alice", "--data-dir", str(data))
    assert code == 0 and "removed portal user 'alice'" in out
    assert names(data, capsys) == []
    code, _, err = run(capsys, "user", "remove", "alice", "--data-dir", str(data))
    assert code == 6 and "UserNotFound" in err
    code, out, _ = run(capsys, "audit", "--service", "-", "--data-dir", str(data), "--json")
    assert [e["action"] for e in json.loads(out)] == ["user.add", "user.password", "user.remove"]


def test_add_from_stdin(data: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\nignored\n"))
    code, _, _ = run(capsys, "user", "add", "bob", "--password-stdin", "--data-dir", str(data))
    assert code == 0
    assert names(data, capsys) == ["bob"]


@pytest.mark.parametrize(
    ("password", "message"),
    [
        pytest.param("x" * (MIN_PASSWORD_LENGTH - 1), "at least 12", id="fail/short"),
        pytest.param("\n", "empty", id="fail/empty"),
    ],
)
def test_a_weak_or_empty_password_is_refused_with_a_clear_message(
    data: Path, tmp_path: Path, capsys, password: str, message: str
) -> None:
    given = password_file(tmp_path, password)
    code, _, err = run(
        capsys, "user", "add", "alice", "--password-file", given, "--data-dir", str(data)
    )
    assert code == 3 and message in err
    assert names(data, capsys) == []


def test_a_name_against_the_rule_is_refused(data: Path, tmp_path: Path, capsys) -> None:
    given = password_file(tmp_path, PASSWORD)
    code, _, err = run(
        capsys, "user", "add", "al ice", "--password-file", given, "--data-dir", str(data)
    )
    assert code == 3 and "InvalidUserName" in err
    code, _, _ = run(
        capsys, "user", "add", "al.ice", "--password-file", given, "--data-dir", str(data)
    )
    assert code == 0


def test_without_a_terminal_or_an_option_nothing_is_added(data: Path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD))  # not a terminal
    code, _, err = run(capsys, "user", "add", "alice", "--data-dir", str(data))
    assert code == 3 and "--password-file" in err
    assert names(data, capsys) == []


def _take_terminal() -> None:
    """In the child: its new session's controlling terminal is the pty on its stdin."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def add_on_a_terminal(data: Path, first: str, second: str) -> tuple[int, str]:
    """``devprov user add alice`` in a process whose terminal is a pty we type into."""
    main_fd, child_fd = pty.openpty()
    devprov = Path(sys.executable).with_name("devprov")
    with subprocess.Popen(
        [str(devprov), "user", "add", "alice", "--data-dir", str(data)],
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        start_new_session=True,
        preexec_fn=_take_terminal,  # noqa: PLW1509 - the child needs the pty as its terminal
    ) as process:
        os.close(child_fd)
        output = b""
        for answer in (first, second):
            while b": " not in output.rsplit(b"\n", 1)[-1]:
                output += os.read(main_fd, 1024)
            os.write(main_fd, answer.encode() + b"\n")
            output += os.read(main_fd, 1024)
        code = process.wait(timeout=60)
    while True:
        try:
            chunk = os.read(main_fd, 1024)
        except OSError:  # EIO: the child closed its side
            break
        if not chunk:
            break
        output += chunk
    os.close(main_fd)
    return code, output.decode(errors="replace")


def test_on_a_terminal_the_password_is_asked_twice_and_not_echoed(data: Path, capsys) -> None:
    code, output = add_on_a_terminal(data, PASSWORD, PASSWORD)
    assert code == 0, output
    assert "Password: " in output and "The same password again: " in output
    assert PASSWORD not in output
    assert names(data, capsys) == ["alice"]


def test_on_a_terminal_two_different_passwords_add_nothing(data: Path, capsys) -> None:
    code, output = add_on_a_terminal(data, PASSWORD, PASSWORD + "!")
    assert code == 3 and "PasswordsDiffer" in output
    assert names(data, capsys) == []
