"""``devprov errors`` and docs/errors.md: every error documented, the document up to date."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from devprov.cli.client import remote_detail, remote_error
from devprov.cli.errors import STATUS, error_table, known_error, render
from devprov.cli.main import main
from devprov.core.error import (
    ConflictError,
    ErrorKind,
    InvalidDeviceCertificateError,
    NotFoundError,
    VerificationSignerMismatchError,
)
from devprov.http.error import STATUS as HTTP_STATUS
from devprov.service.enrollment import EnrollmentGroupNotFoundError

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


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        pytest.param(
            "VerificationSignerMismatch", VerificationSignerMismatchError, id="ok/arm-code"
        ),
        pytest.param(404202, EnrollmentGroupNotFoundError, id="ok/dps-number"),
        pytest.param(401002, InvalidDeviceCertificateError, id="ok/number-of-its-own"),
        pytest.param("NoSuchError", None, id="fail/unknown-code"),
        pytest.param(499999, None, id="fail/unknown-number"),
        pytest.param(None, None, id="fail/none"),
    ],
)
def test_known_error_finds_a_servers_error_by_code_or_number(code, expected) -> None:
    assert known_error(code) is expected


def arm(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": 1, "error": {"code": code, "message": message}})


def test_a_remote_error_devprov_knows_keeps_its_code_and_kind() -> None:
    error = remote_error(arm(400, "VerificationSignerMismatch", "signed by another key"))
    assert type(error) is VerificationSignerMismatchError
    assert (error.code, error.message) == ("VerificationSignerMismatch", "signed by another key")


def test_a_remote_error_of_another_kind_or_unknown_is_its_statuss_kind() -> None:
    """The reject twins: a code whose kind disagrees with the status, and a code devprov does not
    know, become the status's own kind with the server's code in the message."""
    mismatched = remote_error(arm(409, "VerificationSignerMismatch", "odd"))
    assert type(mismatched) is ConflictError
    assert mismatched.message == "VerificationSignerMismatch: odd"
    unknown = remote_error(httpx.Response(404, json={"errorCode": 404999, "message": "gone"}))
    assert type(unknown) is NotFoundError and unknown.message == "404999: gone"
    assert remote_detail(unknown) == "404999: gone"
