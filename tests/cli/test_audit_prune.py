"""``devprov audit prune``: deletes what is past its retention from a real data directory, the
same retention ``devprov serve`` applies periodically; a retention out of range changes nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.service.model import AuditEvent, Operation, Outcome
from devprov.storage.repository import SqlUnitOfWork

NOW = datetime.now(UTC)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    c = open_container(directory, initialize=True)
    with SqlUnitOfWork(c.engine) as u:
        for days in (1, 10, 100, 400):
            at = NOW - timedelta(days=days)
            u.audit.record(AuditEvent(at, "default", "register", Outcome.FAILED, f"device:d{days}"))
            u.operations.add(Operation(f"op-{days}", "default", f"d{days}", at, "assigned"))
        u.commit()
    c.engine.dispose()
    return directory


def left(data: Path) -> tuple[list[str], list[int]]:
    c = open_container(data)
    try:
        actors = [e.actor for e in c.audit.events(limit=1000) if e.action == "register"]
        with c.engine.connect() as connection:
            ops = connection.execute(text("SELECT id FROM operations ORDER BY created_at")).all()
        return actors, [int(row[0].split("-")[1]) for row in ops]
    finally:
        c.engine.dispose()


def prune(capsys, data: Path, *options: str) -> tuple[int, str, str]:
    code = main(["audit", "prune", "--data-dir", str(data), *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_default_retention(data: Path, capsys) -> None:
    code, out, _ = prune(capsys, data)
    assert code == 0
    assert "deleted 2 audit events from before" in out
    assert "deleted 3 finished operations from before" in out
    assert left(data) == (["device:d1", "device:d10"], [1])  # 90 days of audit, 7 of operations


def test_retentions_given_and_json(data: Path, capsys) -> None:
    code, out, _ = prune(
        capsys, data, "--audit-retention-days", "5", "--operation-retention-days", "0", "--json"
    )
    answer = json.loads(out)
    assert code == 0 and answer["auditEvents"] == 3 and answer["operations"] == 0
    assert answer["operationsBefore"] is None and answer["auditEventsBefore"]
    assert left(data) == (["device:d1"], [400, 100, 10, 1])


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(("--audit-retention-days", "-1"), id="fail/negative-audit"),
        pytest.param(("--operation-retention-days", "36501"), id="fail/operations-too-long"),
    ],
)
def test_a_retention_out_of_range_changes_nothing(data: Path, capsys, options) -> None:
    before = left(data)
    code, _, err = prune(capsys, data, *options)
    assert code == 3 and "InvalidRetention" in err and "0 (keep forever) to 36500 days" in err
    assert left(data) == before


def test_the_audit_listing_still_works_beside_the_subcommand(data: Path, capsys) -> None:
    assert main(["audit", "--data-dir", str(data), "--limit", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
