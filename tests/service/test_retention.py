"""Pruning audit events and finished operations past their retention, over real SQLite: what
is due goes, oldest first, in bounded runs; what is not due stays."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from devprov.core.retention import RetentionPolicy
from devprov.service.model import AuditEvent, Operation, Outcome
from devprov.service.retention import Retention
from tests.conftest import Clock

DAY = timedelta(days=1)


def seed(uow, clock: Clock, *, days: int, per_day: int = 3) -> None:
    """``per_day`` audit events and finished operations for each of the last ``days`` days,
    plus one operation left assigning on the oldest day (its process stopped), and one
    assigning now."""
    with uow() as u:
        for day in range(days):
            at = clock.now - day * DAY - timedelta(minutes=1)
            for i in range(per_day):
                u.audit.record(
                    AuditEvent(at, "default", "register", Outcome.FAILED, f"device:d{day}-{i}")
                )
                u.operations.add(
                    Operation(f"op-{day}-{i}", "default", f"d{day}-{i}", at, "assigned")
                )
        u.operations.add(
            Operation("op-abandoned", "default", "a", clock.now - days * DAY, "assigning")
        )
        u.operations.add(Operation("op-pending", "default", "p", clock.now, "assigning"))
        u.commit()


def counts(uow) -> tuple[int, int]:
    with uow(read_only=True) as u:
        events = len(u.audit.query(limit=100_000))
        operations = sum(
            u.operations.get("default", f"op-{d}-{i}") is not None
            for d in range(40)
            for i in range(3)
        )
    return events, operations


def test_what_is_past_its_retention_goes_and_the_rest_stays(
    registry, uow, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    seed(uow, clock, days=40)  # 120 events and operations, one day apart in threes
    policy = RetentionPolicy(audit=timedelta(days=30), operations=timedelta(days=7))
    with caplog.at_level(logging.INFO, logger="devprov.retention"):
        result = Retention(uow, clock).prune(policy)
    # Days 30..39 are past 30 days; days 7..39 past 7 days (each row is a minute older).
    assert (result.audit_events, result.operations, result.complete) == (30, 100, True)
    assert counts(uow) == (90, 21)
    with uow(read_only=True) as u:
        assert u.operations.get("default", "op-pending") is not None  # a running one stays
        assert u.operations.get("default", "op-abandoned") is None  # days past its process
    assert "deleted 30 audit events" in caplog.text and "100 finished operations" in caplog.text
    again = Retention(uow, clock).prune(policy)
    assert (again.deleted, again.complete) == (0, True)


def test_a_run_is_bounded_and_the_next_goes_on(registry, uow, clock: Clock) -> None:
    seed(uow, clock, days=40)
    policy = RetentionPolicy(audit=timedelta(days=10), operations=None)
    retention = Retention(uow, clock)
    first = retention.prune(policy, limit=25, batch=10)
    assert (first.audit_events, first.operations, first.complete) == (25, 0, False)
    second = retention.prune(policy, limit=25, batch=10)
    assert (second.audit_events, second.complete) == (25, False)
    third = retention.prune(policy, limit=25, batch=10)
    assert (third.audit_events, third.complete) == (25, False)
    last = retention.prune(policy, limit=25, batch=10)
    assert (last.audit_events, last.complete) == (30 * 3 - 75, True)  # days 10 to 39 were due
    assert counts(uow) == (30, 120)  # operations are kept forever under this policy


def test_keep_forever_deletes_nothing(registry, uow, clock: Clock) -> None:
    seed(uow, clock, days=5)
    result = Retention(uow, clock).prune(RetentionPolicy(audit=None, operations=None))
    assert (result.deleted, result.audit_cutoff, result.operation_cutoff) == (0, None, None)
    assert counts(uow) == (15, 15)


@pytest.mark.parametrize(("limit", "batch"), [(0, 10), (10, 0)], ids=["fail/limit", "fail/batch"])
def test_bounds_must_be_positive(registry, uow, clock: Clock, limit: int, batch: int) -> None:
    with pytest.raises(ValueError):
        Retention(uow, clock).prune(RetentionPolicy(), limit=limit, batch=batch)
