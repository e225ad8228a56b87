"""The storage threads: where the event loop sends every use case that touches the database.

The use cases are synchronous and a storage call can block: SQLite makes a writer wait for
another process's write lock (up to storage.database.LOCK_TIMEOUT_SECONDS), and a database
server can be slow or away. On the event loop such a wait would stall every connection of the
process, handshakes included; here it stalls one thread. The pool is bounded twice, so that a
database that stops answering costs the server a fixed number of threads and a fixed backlog,
never memory without end (docs/storage.md#storage-and-the-event-loop):

- ``threads`` calls run at once; more than one, so that reads (which SQLite's WAL lets run
  beside a writer) go on while a write waits for the lock;
- at most ``queue`` more wait for a thread, each for at most ``wait_seconds``; a call beyond
  either bound is refused with :class:`StorageOverloadedError` (503, with a retry hint) and
  never runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from devprov.core.error import StorageOverloadedError
from devprov.storage.database import LOCK_TIMEOUT_SECONDS

P = ParamSpec("P")
T = TypeVar("T")

# SQLite runs one writer at a time and Python one thread at a time: more threads buy no speed,
# only room for reads beside writes that wait on another process's lock.
DEFAULT_THREADS = 8

# Calls waiting for a thread: a burst of devices (each registration is two calls) fits; a
# backlog past this would only be answered after the clients gave up.
DEFAULT_QUEUE = 256

# How long a call may wait for a thread: the storage lock's own bound, so that a call answered
# 503 has waited no longer than one that reached the database and found it locked.
DEFAULT_WAIT_SECONDS = LOCK_TIMEOUT_SECONDS


class StorageExecutor:
    """A bounded pool of storage threads, one per process (bootstrap builds it)."""

    def __init__(
        self,
        *,
        threads: int = DEFAULT_THREADS,
        queue: int = DEFAULT_QUEUE,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
    ) -> None:
        if threads < 1 or queue < 0 or wait_seconds <= 0:
            raise ValueError("a storage pool needs a thread, a queue >= 0 and a positive wait")
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="devprov-storage")
        self._limit = threads + queue
        self._wait = wait_seconds
        self._pending = 0
        self._lock = threading.Lock()  # several event loops may share a process's pool

    @property
    def pending(self) -> int:
        """Calls admitted and not yet finished (running or waiting for a thread)."""
        return self._pending

    async def run(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``call(*args, **kwargs)`` on a storage thread; its result or its exception.

        Raises StorageOverloadedError, without running ``call``, when ``threads + queue`` calls
        are pending already or no thread took it within ``wait_seconds``. A call that started
        runs to its end, even when the caller is cancelled: a use case is never cut half-way.
        """
        with self._lock:
            if self._pending >= self._limit:
                raise StorageOverloadedError(
                    f"all {self._limit} places of the storage pool are taken"
                )
            self._pending += 1
        try:
            # The caller's context variables (the request id the log lines carry) go with the
            # call, as asyncio.to_thread does; a pool's threads would otherwise see none.
            context = contextvars.copy_context()
            future = self._pool.submit(context.run, functools.partial(call, *args, **kwargs))
            expired = False

            def expire() -> None:
                nonlocal expired
                expired = future.cancel()  # succeeds only while no thread has taken the call

            timer = asyncio.get_running_loop().call_later(self._wait, expire)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                if expired:
                    raise StorageOverloadedError(
                        f"no storage thread was free within {self._wait:g} s"
                    ) from None
                raise
            finally:
                timer.cancel()
        finally:
            with self._lock:
                self._pending -= 1

    def shutdown(self) -> None:
        """Let running calls finish; calls still waiting are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)
