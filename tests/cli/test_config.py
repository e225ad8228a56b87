"""``devprov serve --config FILE``: the command line beats the environment, which beats the
file, which beats the defaults; a key serve lacks, or a value of the wrong type, is refused with
the key's name."""

from __future__ import annotations

import argparse
from ipaddress import ip_network
from pathlib import Path

import pytest

from devprov.bootstrap import DATA_DIR_ENV, DATABASE_URL_ENV
from devprov.cli import main as cli_main
from devprov.cli.config import InvalidConfigError
from devprov.cli.server import DEFAULT_MQTT_PORT


def parse(tmp_path: Path, toml: str, *argv: str) -> argparse.Namespace:
    """serve's options as main reads them, the file applied."""
    config = tmp_path / "devprov.toml"
    config.write_text(toml)
    arguments = ["serve", "--config", str(config), *argv]
    parser = cli_main.build_parser(("server",))
    args = parser.parse_args(arguments)
    return args.with_config(parser, arguments, args)


@pytest.fixture(autouse=True)
def no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)


def test_the_file_sets_every_kind_of_option(tmp_path: Path) -> None:
    args = parse(
        tmp_path,
        """
        database = "postgresql://devprov@db.example:5432/devprov"
        data-dir = "/srv/devprov"
        host = "0.0.0.0"
        port = 9443
        mqtt-port = 0
        workers = 2
        max-connections = 500
        log-level = "WARNING"
        san = ["dps.example.com", "10.0.0.5"]
        webhook-allow = ["169.254.10.0/24"]
        audit-retention-days = 7
        """,
    )
    assert args.database == "postgresql://devprov@db.example:5432/devprov"
    assert args.data_dir == "/srv/devprov"
    assert (args.host, args.port, args.mqtt_port) == ("0.0.0.0", 9443, 0)
    assert (args.workers, args.max_connections, args.log_level) == (2, 500, "WARNING")
    assert args.san == ["dps.example.com", "10.0.0.5"]
    assert args.webhook_allow == [ip_network("169.254.10.0/24")]
    assert args.audit_retention_days == 7


def test_the_command_line_beats_the_file_and_the_file_beats_the_defaults(tmp_path: Path) -> None:
    args = parse(tmp_path, 'port = 9443\nhost = "0.0.0.0"', "--port", "8443")
    assert args.port == 8443  # given on the command line, though it is the default
    assert args.host == "0.0.0.0"  # from the file
    assert args.mqtt_port == DEFAULT_MQTT_PORT  # in neither


def test_the_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://from-env/devprov")
    monkeypatch.setenv(DATA_DIR_ENV, "/from-env")
    args = parse(tmp_path, 'database = "postgresql://from-file/x"\ndata-dir = "/from-file"')
    # Left unset, so that the data directory and database fall back to the environment.
    assert args.database is None and args.data_dir is None
    args = parse(tmp_path, 'database = "postgresql://from-file/x"', "--database", "sqlite:///a")
    assert args.database == "sqlite:///a"


def test_the_twin_without_a_file_nothing_changes(tmp_path: Path) -> None:
    parser = cli_main.build_parser(("server",))
    args = parser.parse_args(["serve"])
    assert args.with_config(parser, ["serve"], args) is args


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        pytest.param("prot = 9443", "has the key 'prot', which is not an option", id="unknown"),
        pytest.param("config = 'x.toml'", "has the key 'config'", id="config-in-config"),
        pytest.param('port = "9443"', "'port' in .* must be a whole number", id="port-string"),
        pytest.param("port = 70000", "'port' in .*: 70000 is not a port number", id="port-range"),
        pytest.param("port = true", "'port' in .* must be a string or a whole", id="port-bool"),
        pytest.param("port = 1.5", "'port' in .* must be a string or a whole", id="port-float"),
        pytest.param("host = 80", "'host' in .* must be a string, not a number", id="host-int"),
        pytest.param("workers = [1]", "'workers' in .* not a list", id="workers-list"),
        pytest.param('san = "a.example"', "'san' in .* must be a list", id="san-not-list"),
        pytest.param("san = [1]", "'san' in .* must be a string", id="san-item"),
        pytest.param(
            'webhook-allow = ["not-a-net"]', "'webhook-allow' in .*: not-a-net", id="network"
        ),
        pytest.param('log-level = "LOUD"', "'log-level' in .* must be one of", id="choice"),
        pytest.param("[serve]\nport = 1", "has the key 'serve'", id="table"),
        pytest.param("port = ", "is not TOML", id="syntax"),
    ],
)
def test_bad_files_are_refused_naming_the_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        parse(tmp_path, toml)


def test_a_missing_file_is_refused_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main.main(["serve", "--config", str(tmp_path / "absent.toml")])
    assert code == 3
    err = capsys.readouterr().err
    assert (
        err.startswith("error: InvalidConfigFile: cannot read the config file") and "absent" in err
    )
