"""Files named on the command line: every command, every file option, no traceback.

The commands and their file options come from the parser itself, so a new command or option is
walked as soon as it exists; an option that looks like a file but is not declared as one fails
``test_every_file_like_option_is_declared``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.cli import main as cli_main
from devprov.cli.files import (
    check_input_files,
    input_file,
    input_file_or_stdin,
    input_prefix,
    json_or_file,
)
from devprov.core.error import ErrorKind

MARKERS = (input_file, input_file_or_stdin, input_prefix, json_or_file)
NOT_FOUND = cli_main.EXIT_CODES[ErrorKind.NOT_FOUND]
INVALID_INPUT = cli_main.EXIT_CODES[ErrorKind.INVALID_INPUT]

# Options whose names look like files but hold something else (a key's text, a name, a flag).
NOT_FILES = {
    "primary_key",
    "secondary_key",
    "symmetric_key",
    "group_key",
    "key_type",
    "keep_key",
    "ca_name",
    "secondary_ca_name",
    "certificate",  # audit --certificate: a registry name
    "data_dir",  # a directory, checked by bootstrap.DataDir (tests below)
    "dir",  # where `ca` writes
    "out",  # what `ca verification` writes
    "directory",  # where `ca demo` writes
    "chain_out",  # what `device register --csr` writes
}
FILE_LIKE = ("file", "cert", "key", "pem", "chain", "issuer", "payload", "twin")


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield path, parser
        return
    for name, sub in subcommands[0].choices.items():
        yield from leaves(sub, (*path, name))


def file_options() -> list[tuple[tuple[str, ...], argparse.ArgumentParser, argparse.Action]]:
    return [
        (path, leaf, action)
        for path, leaf in leaves(cli_main.build_parser())
        for action in leaf._actions
        if action.type in MARKERS
    ]


CASES = file_options()
IDS = [f"{' '.join(path)} {action.option_strings[0]}" for path, _, action in CASES]


def value_for(action: argparse.Action, path: Path) -> str:
    return f"@{path}" if action.type is json_or_file else str(path)


def argv_for(
    path: tuple[str, ...], leaf: argparse.ArgumentParser, chosen: argparse.Action, file: Path
) -> list[str]:
    """The command line that gives ``chosen`` the path ``file`` and whatever else argparse
    requires (positionals, required options, a member of each required group)."""
    argv = list(path)
    for action in leaf._actions:
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            argv.append("x1")
        elif action.required and action is not chosen:
            given = value_for(action, file) if action.type in MARKERS else "x1"
            argv += [action.option_strings[0], given]
    for group in leaf._mutually_exclusive_groups:
        if group.required and chosen not in group._group_actions:
            first = group._group_actions[0]
            argv.append(first.option_strings[0])
            if first.nargs != 0:
                argv.append(value_for(first, file) if first.type in MARKERS else "x1")
    return [*argv, chosen.option_strings[0], value_for(chosen, file)]


def test_the_walk_covers_the_commands_that_read_files() -> None:
    walked = {" ".join(path) for path, _, _ in CASES}
    assert {
        "certificate upload",
        "certificate prove",
        "certificate list",
        "enrollment-group create",
        "enrollment update",
        "device register",
        "ca intermediate",
        "ca device",
        "ca verification",
    } <= walked


def test_every_file_like_option_is_declared() -> None:
    undeclared = [
        f"{' '.join(path)} {action.option_strings[0]}"
        for path, leaf in leaves(cli_main.build_parser())
        for action in leaf._actions
        if action.option_strings
        and action.nargs != 0  # flags
        and not action.choices  # one of a few words
        and action.type in (None, str, Path, *MARKERS)  # numbers are no files
        and action.dest not in NOT_FILES
        and any(word in action.dest for word in FILE_LIKE)
        and action.type not in MARKERS
    ]
    assert undeclared == [], "give these a type from devprov.cli.files, or list them in NOT_FILES"


@pytest.mark.parametrize(("path", "leaf", "action"), CASES, ids=IDS)
def test_a_missing_file_is_one_line_naming_it(
    path: tuple[str, ...],
    leaf: argparse.ArgumentParser,
    action: argparse.Action,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "no-such-file"
    argv = argv_for(path, leaf, action, missing)
    if any("--data-dir" in a.option_strings for a in leaf._actions):
        argv += ["--data-dir", str(tmp_path)]  # a directory that is no data directory
    code = cli_main.main(argv)
    out, err = capsys.readouterr()
    assert code == NOT_FOUND, err
    assert err.count("\n") == 1 and err.startswith("error: PkiFileNotFound: "), err
    assert str(missing) in err and "Traceback" not in err
    assert out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(("path", "leaf", "action"), CASES, ids=IDS)
def test_an_existing_file_passes_the_check(
    path: tuple[str, ...], leaf: argparse.ArgumentParser, action: argparse.Action, tmp_path: Path
) -> None:
    present = tmp_path / "present"
    present.write_text("{}\n")
    parser = cli_main.build_parser()
    args = parser.parse_args(argv_for(path, leaf, action, present))
    check_input_files(parser, args)  # raises nothing


# --- what is in the file, and what it is ---------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "garbage").write_text("not a certificate, not a key\n")
    (tmp_path / "twin.json").write_text('{"tags": {}}\n')
    return {
        "directory": tmp_path / "a-directory",
        "garbage": tmp_path / "garbage",
        "json": tmp_path / "twin.json",
    }


NO_SERVER = ["--url", "https://127.0.0.1:9", "--token", "t"]


@pytest.mark.parametrize(
    ("argv", "exit_code", "code", "says"),
    [
        pytest.param(
            ["certificate", "upload", "c", "--cert", "{directory}"],
            INVALID_INPUT,
            "FileAccessFailed",
            "is a directory; name the file itself",
            id="fail/cert-is-a-directory",
        ),
        pytest.param(
            ["certificate", "upload", "c", "--cert", "{garbage}"],
            INVALID_INPUT,
            "MalformedCertificate",
            "--cert {garbage}: ",
            id="fail/cert-is-not-a-certificate",
        ),
        pytest.param(
            ["certificate", "verify", "c", "--cert", "{garbage}"],
            INVALID_INPUT,
            "MalformedVerificationCertificate",
            "--cert {garbage}: ",
            id="fail/proof-is-not-a-certificate",
        ),
        pytest.param(
            ["certificate", "list", "--ca-file", "{garbage}", *NO_SERVER],
            INVALID_INPUT,
            "MalformedCertificate",
            "--ca-file {garbage} holds no CA certificate",
            id="fail/ca-file-is-not-a-certificate",
        ),
        pytest.param(
            ["enrollment-group", "create", "g", "--signing-cert", "{garbage}"],
            INVALID_INPUT,
            "MalformedCertificate",
            "--signing-cert {garbage}: ",
            id="fail/signing-cert-is-not-a-certificate",
        ),
        pytest.param(
            ["enrollment-group", "create", "g", "--symmetric-key", "--initial-twin", "@{garbage}"],
            INVALID_INPUT,
            "InvalidOption",
            "--initial-twin file {garbage} is not valid JSON",
            id="fail/twin-file-is-not-json",
        ),
        pytest.param(
            ["enrollment-group", "create", "g", "--symmetric-key", "--initial-twin", "@{json}"],
            cli_main.EXIT_CODES[ErrorKind.NOT_FOUND],
            "DataDirectoryNotFound",
            "",
            id="ok/twin-file-is-json-and-the-data-directory-comes-next",
        ),
    ],
)
def test_a_file_that_is_not_what_the_option_needs(
    argv: list[str],
    exit_code: int,
    code: str,
    says: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    filled = [part.format(**files) for part in argv]
    assert cli_main.main([*filled, "--data-dir", str(tmp_path / "none")]) == exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {code}: "), err
    assert says.format(**files) in err


def test_a_key_file_that_is_not_a_key(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = tmp_path / "pki"
    assert cli_main.main(["ca", "root", "--dir", str(pki), "--json"]) == 0
    capsys.readouterr()
    argv = ["certificate", "prove", "r", "--cert", str(pki / "root.pem"), *NO_SERVER]
    assert cli_main.main([*argv, "--key", str(files["garbage"])]) == INVALID_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: MalformedPrivateKey: ") and str(files["garbage"]) in err
    # the twin: the right key gets as far as the server, which is not there
    assert cli_main.main([*argv, "--key", str(pki / "root.key")]) == 10
    assert "ServerUnreachable" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_text("x")
    locked.chmod(0)
    try:
        assert cli_main.main(["certificate", "upload", "c", "--cert", str(locked)]) == 3
    finally:
        locked.chmod(0o600)
    err = capsys.readouterr().err
    assert err.startswith("error: FileAccessFailed: ") and "permission denied" in err
    assert str(locked) in err
