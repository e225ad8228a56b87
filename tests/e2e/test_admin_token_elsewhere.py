"""A second data directory on a shared database, started without the first one's admin token,
is refused instead of replacing the token every instance's operators use
(docs/storage.md#instances-sharing-one-database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devprov.cli.main import EXIT_CODES as EXIT
from devprov.core.error import ErrorKind
from tests.database import fresh_postgresql_database
from tests.server import running_server

pytestmark = pytest.mark.e2e


def serve(data: Path, database: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "devprov.cli.main", "serve", "--data-dir", str(data)]
    command += ["--database", database, "--port", "0", "--mqtt-port", "0", "--amqp-port", "0"]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


def test_a_second_directory_without_the_token_is_refused(tmp_path: Path) -> None:
    with fresh_postgresql_database() as database:
        with running_server(tmp_path / "a", database=database) as first:
            token = first.token
        done = serve(tmp_path / "b", database)
        assert done.returncode == EXIT[ErrorKind.CONFLICT], done.stderr
        assert "AdminTokenElsewhere" in done.stderr
        assert "copy 'admin-token' and 'tls/'" in done.stderr
        assert not (tmp_path / "b" / "admin-token").exists()
        # The first instance's token still opens it.
        with running_server(tmp_path / "a", database=database) as again:
            assert again.token == token
            assert not any("AdminTokenElsewhere" in line for line in again.output)


def test_the_escape_replaces_a_lost_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_postgresql_database() as database:
        with running_server(tmp_path / "a", database=database) as first:
            old = first.token
        (tmp_path / "a" / "admin-token").unlink()  # every copy lost
        refused = serve(tmp_path / "a", database)
        assert refused.returncode == EXIT[ErrorKind.CONFLICT], refused.stderr
        monkeypatch.setenv("DEVPROV_NEW_ADMIN_TOKEN", "1")  # running_server passes os.environ on
        with running_server(tmp_path / "a", database=database) as renewed:
            assert renewed.token != old
