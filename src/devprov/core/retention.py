"""How long devprov keeps audit events and finished operations, and which are old enough to go.

Both grow with every request a device makes, so both have a retention; registration states,
enrollments and certificates are the installation's records and are kept until deleted
(docs/operations.md#refusals-retention-and-the-audit-index). Pure: ``now`` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from devprov.core.error import InvalidInputError

# A quarter of a year of who did what: long enough to look back over an incident found late.
DEFAULT_AUDIT_RETENTION_DAYS = 90
# A device polls its operation seconds after registering
# (docs/sdk-clients.md#python-device-statuses-polling-and-timeouts); a week leaves an operator
# time to look one up by its id.
DEFAULT_OPERATION_RETENTION_DAYS = 7
# The longest retention accepted: a century, far past any record's use, and well inside what a
# datetime can subtract from today.
MAX_RETENTION_DAYS = 36_500

# Rows one pruning run deletes from each table at most, so that a run that finds a large backlog
# (a first start after an upgrade, a long stop) ends soon; the next run goes on with the rest.
PRUNE_ROWS_PER_RUN = 10_000
# Rows per delete statement and transaction: each holds SQLite's write lock for a few
# milliseconds, so registrations go on between batches.
PRUNE_BATCH_ROWS = 500


class InvalidRetentionError(InvalidInputError):
    """A retention that is not a whole number of days between 0 (keep forever) and the maximum."""

    code = "InvalidRetention"
    number = 400640


def parse_retention_days(value: int, what: str) -> timedelta | None:
    """``value`` days as a retention; 0 means keep forever (None).

    Raises :class:`InvalidRetentionError`.
    """
    if not 0 <= value <= MAX_RETENTION_DAYS:
        raise InvalidRetentionError(
            f"the {what} retention must be 0 (keep forever) to {MAX_RETENTION_DAYS} days; "
            f"{value!r} is not"
        )
    return timedelta(days=value) if value else None


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of record is kept; None keeps it forever."""

    audit: timedelta | None = timedelta(days=DEFAULT_AUDIT_RETENTION_DAYS)
    operations: timedelta | None = timedelta(days=DEFAULT_OPERATION_RETENTION_DAYS)

    @classmethod
    def from_days(cls, audit: int, operations: int) -> RetentionPolicy:
        """Raises :class:`InvalidRetentionError`."""
        return cls(
            audit=parse_retention_days(audit, "audit"),
            operations=parse_retention_days(operations, "operation"),
        )

    def audit_cutoff(self, now: datetime) -> datetime | None:
        """Audit events before this instant are deleted; None: none are."""
        return _cutoff(self.audit, now)

    def operation_cutoff(self, now: datetime) -> datetime | None:
        """Finished operations created before this instant are deleted; None: none are."""
        return _cutoff(self.operations, now)


def _cutoff(age: timedelta | None, now: datetime) -> datetime | None:
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return None if age is None else now - age
