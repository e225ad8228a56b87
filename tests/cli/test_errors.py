"""``devprov errors`` and docs/errors.md: every error documented, the document up to date."""

from __future__ import annotations

import json
from pathlib import Path

from devprov.cli.errors import STATUS, error_table, render
from devprov.cli.main import main
from devprov.core.error import ErrorKind
from devprov.http.error import STATUS as HTTP_STATUS

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"


def test_every_error_is_described() -> None:
    rows = error_table()
    assert len(rows) > 50
    assert [row["code"] for row in rows if not row["description"]] == []


def test_docs_errors_md_is_current() -> None:
    assert DOC.read_text() == render(error_table()), "run: devprov errors > docs/errors.md"


def test_cli_statuses_agree_with_http() -> None:
    assert {kind.value: int(status) for kind, status in HTTP_STATUS.items()} == STATUS
    assert set(STATUS) == {kind.value for kind in ErrorKind}


def test_json_output(capsys) -> None:
    assert main(["errors", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_code = {row["code"]: row for row in rows}
    assert by_code["IH412001"]["status"] == 412
    assert by_code["DeviceAttestationFailed"]["number"] == 401002
