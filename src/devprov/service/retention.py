"""Pruning what outlived its retention: audit events and finished operations
(core.retention; docs/operations.md#refusals-retention-and-the-audit-index).

The server prunes periodically (cli.housekeeping), ``devprov audit prune`` on demand. Each run
is bounded, and deletes in small transactions, so it never holds the write lock for long.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from devprov.core.retention import PRUNE_BATCH_ROWS, PRUNE_ROWS_PER_RUN, RetentionPolicy
from devprov.service.port import Clock, UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("devprov.retention")


@dataclass(frozen=True)
class PruneResult:
    audit_events: int  # audit events deleted
    operations: int  # operations deleted (finished, or abandoned assigning)
    audit_cutoff: datetime | None  # events before this were due; None: kept forever
    operation_cutoff: datetime | None
    complete: bool  # False when the run stopped at its bound and more may be due

    @property
    def deleted(self) -> int:
        return self.audit_events + self.operations


class Retention:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def prune(
        self,
        policy: RetentionPolicy,
        *,
        limit: int | None = PRUNE_ROWS_PER_RUN,
        batch: int = PRUNE_BATCH_ROWS,
    ) -> PruneResult:
        """Delete what ``policy`` no longer keeps: at most ``limit`` rows of each kind (None: all
        that are due), ``batch`` rows per transaction."""
        if batch < 1 or (limit is not None and limit < 1):
            raise ValueError("batch and limit must be positive")
        now = self._clock()
        audit_cutoff = policy.audit_cutoff(now)
        operation_cutoff = policy.operation_cutoff(now)
        audit_events = operations = 0
        complete = True
        if audit_cutoff is not None:
            cutoff = audit_cutoff
            audit_events, done = self._drain(
                lambda uow, n: uow.audit.prune(before=cutoff, limit=n), limit, batch
            )
            complete &= done
        if operation_cutoff is not None:
            ops_cutoff = operation_cutoff
            operations, done = self._drain(
                lambda uow, n: uow.operations.prune(before=ops_cutoff, limit=n), limit, batch
            )
            complete &= done
        result = PruneResult(audit_events, operations, audit_cutoff, operation_cutoff, complete)
        if result.deleted:
            log.info(
                "retention: deleted %d audit events from before %s and %d finished operations "
                "from before %s%s",
                audit_events,
                _when(audit_cutoff),
                operations,
                _when(operation_cutoff),
                "" if complete else "; more are due and go in the next run",
            )
        return result

    def _drain(
        self, delete: Callable[[UnitOfWork, int], int], limit: int | None, batch: int
    ) -> tuple[int, bool]:
        """Delete in batches until none are due or ``limit`` is reached: (deleted, complete)."""
        total = 0
        while limit is None or total < limit:
            size = batch if limit is None else min(batch, limit - total)
            with self._uow() as uow:
                deleted = delete(uow, size)
                uow.commit()
            total += deleted
            if deleted < size:
                return total, True
        return total, False


def _when(cutoff: datetime | None) -> str:
    return "-" if cutoff is None else cutoff.isoformat(timespec="seconds")
