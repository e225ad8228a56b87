"""A use case rolled back for a concurrent writer runs again, a bounded number of times
(service.retry); and a real PostgreSQL deadlock reaches the use cases as that conflict."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from devprov.core.error import StorageBusyError, StorageConflictError
from devprov.service.retry import CONFLICT_ATTEMPTS, run_retrying
from devprov.storage.database import create_database_engine, upgrade
from devprov.storage.repository import SqlUnitOfWork
from tests.database import fresh_postgresql_database


def flaky(conflicts: int, error: Exception | None = None):
    """A call that loses ``conflicts`` times, then answers how many runs it took."""
    runs = [0]

    def call() -> int:
        runs[0] += 1
        if runs[0] <= conflicts:
            raise error or StorageConflictError(f"lost run {runs[0]}")
        return runs[0]

    return call, runs


def test_a_conflict_runs_the_call_again() -> None:
    call, runs = flaky(CONFLICT_ATTEMPTS - 1)
    assert run_retrying(call) == CONFLICT_ATTEMPTS
    assert runs[0] == CONFLICT_ATTEMPTS


def test_conflicts_past_the_bound_are_raised() -> None:
    call, runs = flaky(CONFLICT_ATTEMPTS)
    with pytest.raises(StorageConflictError, match=f"lost run {CONFLICT_ATTEMPTS}"):
        run_retrying(call)
    assert runs[0] == CONFLICT_ATTEMPTS  # no run beyond the bound


def test_other_errors_are_not_retried() -> None:
    call, runs = flaky(1, StorageBusyError("locked"))
    with pytest.raises(StorageBusyError):
        run_retrying(call)
    assert runs[0] == 1


def test_a_postgresql_deadlock_is_a_storage_conflict(tmp_path: Path) -> None:
    with fresh_postgresql_database() as url:
        engine = create_database_engine(url)
        try:
            upgrade(engine)
            with SqlUnitOfWork(engine) as uow:
                uow.settings.put("a", "0")
                uow.settings.put("b", "0")
                uow.commit()
            both_hold_one = threading.Barrier(2)
            outcomes: list[str] = []

            def write(first: str, second: str) -> None:
                try:
                    with SqlUnitOfWork(engine) as uow:
                        uow.settings.put(first, "1")
                        both_hold_one.wait(timeout=10)
                        uow.settings.put(second, "1")  # each waits for the other's row
                        uow.commit()
                    outcomes.append("committed")
                except StorageConflictError:
                    outcomes.append("conflict")

            threads = [
                threading.Thread(target=write, args=("a", "b")),
                threading.Thread(target=write, args=("b", "a")),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        finally:
            engine.dispose()
    # PostgreSQL breaks the deadlock by rolling one back (SQLSTATE 40P01).
    assert sorted(outcomes) == ["committed", "conflict"]
