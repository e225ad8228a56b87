"""The server's housekeeping task, on a real data directory: refusal summaries are written
periodically once their window is over, and all of them when the server stops; retention runs at
once; a database that fails meanwhile is logged, and the task goes on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devprov.bootstrap import Container, open_container, utc_now
from devprov.cli.housekeeping import keep_house
from devprov.core.error import StorageUnavailableError
from devprov.core.refusal_limit import RefusalWindows
from devprov.core.retention import RetentionPolicy
from devprov.service.model import AuditEvent, Outcome
from devprov.service.port import UnitOfWork
from devprov.service.refusal_log import Origin, Refusal, RefusalLog
from devprov.storage.repository import SqlUnitOfWork

WINDOW = timedelta(milliseconds=200)


@pytest.fixture
def c(tmp_path: Path) -> Iterator[Container]:
    container = open_container(tmp_path / "data", initialize=True)

    def uow(*, read_only: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(container.engine, read_only=read_only)

    windows = RefusalWindows(interval=WINDOW, recorded_per_interval=1)
    yield replace(container, refusals=RefusalLog(uow, utc_now, windows))
    container.engine.dispose()


def refuse(c: Container, times: int) -> None:
    for _ in range(times):
        c.refusals.refused(
            Refusal(
                action="register",
                error=StorageUnavailableError("x"),  # any error; its code names the window
                origin=Origin(address="192.0.2.1"),
                service="default",
                registration_id="dev-1",
                audited=True,
            )
        )


def summaries(c: Container) -> list[str]:
    return [e.reason or "" for e in c.audit.events() if e.actor.startswith("devices from")]


async def run_for(c: Container, seconds: float, **options: object) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(
        keep_house(c, stop, flush_interval=timedelta(milliseconds=50), **options)
    )
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(task, timeout=10)


def test_summaries_are_written_once_their_window_is_over(c: Container) -> None:
    refuse(c, 4)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(
            keep_house(c, stop, retention=None, flush_interval=timedelta(milliseconds=50))
        )
        for _ in range(100):  # no further refusal comes: the periodic flush writes it
            if summaries(c):
                break
            await asyncio.sleep(0.05)
        assert [s.split(" of ")[0] for s in summaries(c)] == ["3 more refusals"]
        refuse(c, 3)  # a new window, still open when the server stops
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(scenario())
    assert [s.split(" of ")[0] for s in summaries(c)] == ["3 more refusals", "2 more refusals"]


def test_retention_runs_at_start(c: Container) -> None:
    old = datetime.now(UTC) - timedelta(days=100)
    with SqlUnitOfWork(c.engine) as u:
        u.audit.record(AuditEvent(old, "default", "register", Outcome.FAILED, "device:old"))
        u.commit()
    asyncio.run(run_for(c, 0.3, retention=RetentionPolicy()))
    assert "device:old" not in [e.actor for e in c.audit.events()]


def test_a_failing_database_is_logged_and_the_task_goes_on(
    c: Container, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing:
        calls = 0

        def prune(self, policy: RetentionPolicy) -> object:
            Failing.calls += 1
            raise StorageUnavailableError("the database is locked")

    broken = replace(c, retention=Failing())
    with caplog.at_level(logging.WARNING, logger="devprov.housekeeping"):
        asyncio.run(run_for(broken, 0.3, retention=RetentionPolicy(), prune_interval=timedelta(0)))
    assert Failing.calls >= 2  # it tried again after the failure
    assert "StorageUnavailable: the database is locked" in caplog.text
