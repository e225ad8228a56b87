"""What ``devprov serve`` prints: the secrets on the start that created them, and on every later
start where to find them, not the secrets themselves."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from devprov.cli.main import main
from tests.server import running_server

pytestmark = pytest.mark.e2e


def test_the_secrets_are_printed_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    with running_server(data) as first:
        printed = "".join(first.output)
        assert main(["info", *first.cli_args(), "--json"]) == 0
        facts = json.loads(capsys.readouterr().out)
    token = facts["adminToken"]
    (service,) = facts["services"]
    secrets = [token, service["primaryKey"], service["secondaryKey"]]
    assert all(secret in printed for secret in secrets)
    assert "printed once" in printed

    with running_server(data) as second:
        again = "".join(second.output)
    assert not any(secret in again for secret in secrets)
    assert second.url in again and facts["serverCaFile"] in again
    # Both starts name the portal; the one that prints the token says it signs in there.
    assert facts["portalUrl"] == f"{first.url}/portal/"
    assert f"web portal:      {first.url}/portal/   (sign in with the admin token)" in printed
    assert f"web portal:      {second.url}/portal/" in again
    info = f"devprov info --data-dir {shlex.quote(str(data))}"
    assert f"run '{info}' to see the admin token, keys and connection strings" in again


def test_a_new_admin_token_is_printed_when_its_file_was_deleted(tmp_path: Path) -> None:
    """The admin token file is the only copy of the token: deleting it makes a new one, and the
    start that makes it prints it."""
    data = tmp_path / "data"
    with running_server(data) as first:
        old = first.token
    (data / "admin-token").unlink()
    with running_server(data) as second:
        new = second.token
        printed = "".join(second.output)
    assert new != old and new in printed and old not in printed
