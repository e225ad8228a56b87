"""The audit lookup by registration id and retention's deletes use indexes (migration 0003),
shown by each engine's own query plan for the statements the stores really run; 0003 backfills
the lookup key of rows written before it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, inspect, text

from devprov.service.model import (
    AuditEvent,
    AuditFilter,
    AuditPosition,
    Operation,
    Outcome,
    ProvisioningService,
)
from devprov.storage.database import migrate
from devprov.storage.repository import SqlUnitOfWork
from tests import factory as f
from tests.storage.test_repository import run_alembic

T0 = f.NOW


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SQL statements run on ``engine`` meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plan(engine: Engine, statement: str, parameters: Any) -> str:
    """The engine's query plan of ``statement``, one line per step. PostgreSQL's planner reads a
    table of a few rows whole whatever its indexes, so sequential scans are priced out: the plan
    then shows whether an index serves the statement at all."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters).all()
        return "\n".join(str(row[0]) for row in rows)


def event_of(rid: str | None, seconds: int = 0, service: str = "svc") -> AuditEvent:
    return AuditEvent(
        at=T0 + timedelta(seconds=seconds),
        service=service,
        action="register",
        outcome=Outcome.FAILED,
        actor=f"device:{rid}",
        reason="refused",
        registration_id=rid,
    )


def fill(engine: Engine, events: list[AuditEvent]) -> None:
    with SqlUnitOfWork(engine) as u:
        for e in events:
            u.audit.record(e)
        u.commit()


def only(engine: Engine, call: Callable[[SqlUnitOfWork], object], word: str) -> tuple[str, Any]:
    """The one statement containing ``word`` that ``call`` runs; its changes are rolled back."""
    with statements(engine) as seen, SqlUnitOfWork(engine) as u:
        call(u)
    (found,) = [(s, p) for s, p in seen if word in s]
    return found


def test_the_lookup_by_registration_id_uses_an_index(engine: Engine) -> None:
    fill(engine, [event_of(f"dev-{i}", i) for i in range(200)] + [event_of(None, 300)])
    statement, parameters = only(
        engine, lambda u: u.audit.query(registration_id="DEV-7"), "FROM audit_events"
    )
    steps = plan(engine, statement, parameters)
    assert "ix_audit_events_registration_key" in steps, steps
    # No scan of the whole table, and newest first straight from the index (no sort step).
    if engine.dialect.name == "sqlite":
        assert "SCAN audit_events" not in steps, steps
        assert "TEMP B-TREE" not in steps, steps
    else:
        assert "Seq Scan" not in steps, steps
        assert "Sort" not in steps, steps
    with SqlUnitOfWork(engine) as u:
        (found,) = u.audit.query(registration_id="DEV-7")
        assert found.registration_id == "dev-7"  # the case the device used is kept


def test_pruning_finds_the_oldest_by_index(engine: Engine) -> None:
    fill(engine, [event_of(f"dev-{i}", i) for i in range(50)])
    statement, parameters = only(
        engine,
        lambda u: u.audit.prune(before=T0 + timedelta(seconds=10), limit=5),
        "DELETE FROM audit_events",
    )
    assert "ix_audit_events_at" in plan(engine, statement, parameters)
    with SqlUnitOfWork(engine) as u:
        assert u.audit.prune(before=T0 + timedelta(seconds=10), limit=5) == 5
        assert u.audit.prune(before=T0 + timedelta(seconds=10), limit=500) == 5  # the rest due
        assert u.audit.prune(before=T0 + timedelta(seconds=10), limit=500) == 0
        u.commit()
    with SqlUnitOfWork(engine) as u:
        left = [e.registration_id for e in u.audit.query(limit=100)]
    assert left == [f"dev-{i}" for i in range(10, 50)]  # the oldest went, the rest stay


def test_pruning_operations_keeps_recent_ones_and_takes_abandoned_assigning_ones(
    engine: Engine,
) -> None:
    with SqlUnitOfWork(engine) as u:
        u.services.add(ProvisioningService("svc", "0ne00000001", T0), [])
        for i, status in enumerate(["assigned", "failed", "assigning", "disabled", "assigned"]):
            u.operations.add(Operation(f"op-{i}", "svc", "dev", T0 + timedelta(days=i), status))
        u.commit()
    statement, parameters = only(
        engine,
        lambda u: u.operations.prune(before=T0 + timedelta(days=3, seconds=1), limit=10),
        "DELETE FROM operations",
    )
    assert "ix_operations_created_at" in plan(engine, statement, parameters)
    with SqlUnitOfWork(engine) as u:
        assert u.operations.prune(before=T0 + timedelta(days=3, seconds=1), limit=10) == 4
        u.commit()
    with SqlUnitOfWork(engine) as u:
        kept = [i for i in range(5) if u.operations.get("svc", f"op-{i}") is not None]
    # Only the one newer than the cut-off: one assigning days ago was left by a stopped process.
    assert kept == [4]


def test_0003_backfills_the_lookup_key_of_older_rows(fresh_engine: Engine) -> None:
    run_alembic(fresh_engine, "upgrade", "0002")
    with fresh_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_events (at, service, action, outcome, actor, registration_id)"
                " VALUES ('2026-11-27 12:00:00.000000', 'svc', 'register', 'failed', 'd',"
                " :rid)"
            ),
            [{"rid": "Old-Device"}, {"rid": None}],
        )
    migrate(fresh_engine)
    with SqlUnitOfWork(fresh_engine) as u:
        (found,) = u.audit.query(registration_id="old-DEVICE")
        assert found.registration_id == "Old-Device"
    indexes = {i["name"] for i in inspect(fresh_engine).get_indexes("audit_events")}
    assert {"ix_audit_events_registration_key", "ix_audit_events_at"} <= indexes


def test_0003_downgrades_to_0002_and_upgrades_again(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    fill(fresh_engine, [event_of("Dev-1")])
    run_alembic(fresh_engine, "downgrade", "0002")
    inspector = inspect(fresh_engine)
    assert "registration_key" not in {c["name"] for c in inspector.get_columns("audit_events")}
    assert "ix_operations_created_at" not in {
        i["name"] for i in inspector.get_indexes("operations")
    }
    migrate(fresh_engine)
    with SqlUnitOfWork(fresh_engine) as u:
        (found,) = u.audit.query(registration_id="dev-1")
        assert found.registration_id == "Dev-1"


@pytest.mark.parametrize("limit", [1, 3])
def test_prune_respects_its_limit(engine: Engine, limit: int) -> None:
    fill(engine, [event_of("dev", i) for i in range(5)])
    with SqlUnitOfWork(engine) as u:
        assert u.audit.prune(before=T0 + timedelta(days=1), limit=limit) == limit
        u.commit()
    with SqlUnitOfWork(engine) as u:
        assert len(u.audit.query()) == 5 - limit


def test_the_paged_read_is_newest_first_and_its_cursor_survives_equal_times(
    engine: Engine,
) -> None:
    with SqlUnitOfWork(engine) as u:
        u.services.add(ProvisioningService("svc", "0ne00000001", T0), [])
        u.commit()
    # Three events share one time: the id decides their order, and the cursor must not skip one.
    events = [event_of(f"dev-{i}", i // 3) for i in range(9)] + [event_of("x", 1, "other")]
    fill(engine, events)
    seen: list[str | None] = []
    before: AuditPosition | None = None
    while True:
        with SqlUnitOfWork(engine, read_only=True) as u:
            page = u.audit.page(AuditFilter(service="svc"), before=before, limit=2)
        if not page:
            break
        seen += [e.registration_id for e in page]
        last = page[-1]
        assert last.id is not None
        before = AuditPosition(last.at, last.id)
    assert seen == [f"dev-{i}" for i in reversed(range(9))]
    with SqlUnitOfWork(engine, read_only=True) as u:
        by_id = u.audit.page(AuditFilter(registration_id="DEV-4"), before=None, limit=10)
        none = u.audit.page(
            AuditFilter(service="svc", outcome=Outcome.SUCCEEDED), before=None, limit=10
        )
        late = u.audit.page(
            AuditFilter(service="svc", since=T0 + timedelta(seconds=2)), before=None, limit=10
        )
        early = u.audit.page(
            AuditFilter(service="svc", until=T0 + timedelta(seconds=1)), before=None, limit=10
        )
        by_actor = u.audit.page(AuditFilter(actor="device:dev-0"), before=None, limit=10)
    assert [e.registration_id for e in by_id] == ["dev-4"]
    assert none == []
    assert [e.registration_id for e in late] == ["dev-8", "dev-7", "dev-6"]
    assert [e.registration_id for e in early] == ["dev-2", "dev-1", "dev-0"]
    assert [e.registration_id for e in by_actor] == ["dev-0"]
