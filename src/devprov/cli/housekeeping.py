"""What a running server does besides answering requests: it writes the refusal summaries of
windows that are over, and prunes audit events and finished operations past their retention
(docs/operations.md#refusals-retention-and-the-audit-index).

One task per server process, beside its listeners. Every server process flushes its own refusal
summaries; only the first process prunes (``retention``), since the database is shared. The work
runs on a worker thread, so the event loop keeps serving while a batch is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from devprov.bootstrap import Container
from devprov.core.error import DevprovError
from devprov.core.refusal_limit import REFUSAL_INTERVAL
from devprov.core.retention import (
    DEFAULT_AUDIT_RETENTION_DAYS,
    DEFAULT_OPERATION_RETENTION_DAYS,
    RetentionPolicy,
)

log = logging.getLogger("devprov.housekeeping")

T = TypeVar("T")

# How often the refusal summaries of windows that are over are written: with the windows'
# length, a summary is at most one interval late.
FLUSH_INTERVAL = REFUSAL_INTERVAL
# How often retention runs: each run is bounded, and records only become due by the day, so a
# few runs an hour keep up with any backlog without holding the database for long.
PRUNE_INTERVAL = timedelta(minutes=10)
# After a run that stopped at its bound, the next one comes this soon, until the backlog is gone.
PRUNE_BACKLOG_PAUSE = timedelta(seconds=5)


def add_retention_options(parser: argparse.ArgumentParser) -> None:
    """The retention options of ``serve`` and ``audit prune``, with the same defaults."""
    parser.add_argument(
        "--audit-retention-days",
        type=int,
        default=DEFAULT_AUDIT_RETENTION_DAYS,
        metavar="DAYS",
        help=f"delete audit events older than this (default {DEFAULT_AUDIT_RETENTION_DAYS}; "
        "0 keeps them forever)",
    )
    parser.add_argument(
        "--operation-retention-days",
        type=int,
        default=DEFAULT_OPERATION_RETENTION_DAYS,
        metavar="DAYS",
        help="delete finished registration operations older than this "
        f"(default {DEFAULT_OPERATION_RETENTION_DAYS}; 0 keeps them forever)",
    )


def retention_policy(args: argparse.Namespace) -> RetentionPolicy:
    """Raises InvalidRetentionError (exit 3) for a retention out of range."""
    return RetentionPolicy.from_days(args.audit_retention_days, args.operation_retention_days)


async def keep_house(
    c: Container,
    stop: asyncio.Event,
    *,
    retention: RetentionPolicy | None,
    flush_interval: timedelta = FLUSH_INTERVAL,
    prune_interval: timedelta = PRUNE_INTERVAL,
) -> None:
    """Until ``stop`` is set: flush refusal summaries every ``flush_interval``; prune by
    ``retention`` (None: never) at once and then every ``prune_interval``. At the end, the
    summaries of every open window are written."""
    next_prune = time.monotonic()
    try:
        while not stop.is_set():
            await _quietly(c, c.refusals.flush)
            if retention is not None and time.monotonic() >= next_prune:
                complete = await _quietly(c, lambda: c.retention.prune(retention).complete)
                pause = prune_interval if complete is not False else PRUNE_BACKLOG_PAUSE
                next_prune = time.monotonic() + pause.total_seconds()
            wait = flush_interval.total_seconds()
            if retention is not None:
                wait = min(wait, max(0.0, next_prune - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
    finally:
        await _quietly(c, lambda: c.refusals.flush(everything=True))


async def _quietly(c: Container, work: Callable[[], T]) -> T | None:
    """Run ``work`` on a storage thread; a storage error is logged and the server goes on."""
    try:
        return await c.storage.run(work)
    except DevprovError as exc:
        log.warning("housekeeping: %s: %s", exc.code, exc.message)
        return None
