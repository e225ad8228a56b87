"""The storage pool's bounds: a call beyond the threads and the queue, or one that waits for a
thread too long, is refused with StorageOverloadedError and never runs; calls within them run,
and their results and errors come back."""

from __future__ import annotations

import asyncio
import threading

import pytest

from devprov.core.error import STATUS, StorageOverloadedError, StorageUnavailableError
from devprov.storage.executor import StorageExecutor


def blocker() -> tuple[threading.Event, threading.Event]:
    """(started, release): a call that reports it runs and then waits to be released."""
    return threading.Event(), threading.Event()


def hold(started: threading.Event, release: threading.Event) -> str:
    started.set()
    assert release.wait(30)
    return "held"


def test_calls_run_on_a_storage_thread_and_return_their_result() -> None:
    pool = StorageExecutor(threads=2, queue=0)

    async def scenario() -> tuple[str, str]:
        return await pool.run(
            lambda: threading.current_thread().name
        ), threading.current_thread().name

    try:
        worker, caller = asyncio.run(scenario())
    finally:
        pool.shutdown()
    assert worker.startswith("devprov-storage") and worker != caller


def test_a_call_s_error_comes_back() -> None:
    pool = StorageExecutor(threads=1, queue=0)

    def fail() -> None:
        raise StorageUnavailableError("the database is unavailable")

    try:
        with pytest.raises(StorageUnavailableError):
            asyncio.run(pool.run(fail))
    finally:
        pool.shutdown()


def test_a_full_pool_refuses_at_once_and_the_call_never_runs() -> None:
    pool = StorageExecutor(threads=1, queue=1, wait_seconds=30)
    started, release = blocker()
    ran = threading.Event()

    async def scenario() -> None:
        busy = asyncio.ensure_future(pool.run(hold, started, release))
        queued = asyncio.ensure_future(pool.run(lambda: "queued"))
        await asyncio.to_thread(started.wait, 30)
        assert pool.pending == 2
        with pytest.raises(StorageOverloadedError) as refused:
            await pool.run(ran.set)
        assert STATUS[refused.value.kind] == 503
        release.set()
        assert await busy == "held" and await queued == "queued"
        assert pool.pending == 0
        assert await pool.run(lambda: "room again") == "room again"

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        pool.shutdown()
    assert not ran.is_set()


def test_a_call_that_waits_too_long_for_a_thread_is_refused_and_never_runs() -> None:
    pool = StorageExecutor(threads=1, queue=4, wait_seconds=0.2)
    started, release = blocker()
    ran = threading.Event()

    async def scenario() -> None:
        busy = asyncio.ensure_future(pool.run(hold, started, release))
        await asyncio.to_thread(started.wait, 30)
        with pytest.raises(StorageOverloadedError, match="no storage thread was free"):
            await pool.run(ran.set)
        release.set()
        assert await busy == "held"  # the running call outlived its own wait: it was not cut

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        pool.shutdown()
    assert not ran.is_set()


def test_a_cancelled_caller_is_not_reported_as_overloaded() -> None:
    pool = StorageExecutor(threads=1, queue=1, wait_seconds=30)
    started, release = blocker()

    async def scenario() -> None:
        busy = asyncio.ensure_future(pool.run(hold, started, release))
        await asyncio.to_thread(started.wait, 30)
        waiting = asyncio.ensure_future(pool.run(lambda: "never"))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await busy
        assert pool.pending == 0

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        pool.shutdown()


@pytest.mark.parametrize(
    ("threads", "queue", "wait"),
    [
        pytest.param(0, 1, 1.0, id="no-thread"),
        pytest.param(1, -1, 1.0, id="negative-queue"),
        pytest.param(1, 1, 0.0, id="no-wait"),
    ],
)
def test_a_pool_without_room_is_refused(threads: int, queue: int, wait: float) -> None:
    with pytest.raises(ValueError):
        StorageExecutor(threads=threads, queue=queue, wait_seconds=wait)


def test_the_callers_context_variables_go_with_the_call() -> None:
    """The request id in the log lines a use case writes on a storage thread."""
    import contextvars

    current: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="none")

    async def main() -> str:
        executor = StorageExecutor(threads=1)
        try:
            current.set("request-1")
            return await executor.run(current.get)
        finally:
            executor.shutdown()

    assert asyncio.run(main()) == "request-1"
