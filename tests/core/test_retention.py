"""core.retention: retention policies and their cut-offs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devprov.core.retention import (
    DEFAULT_AUDIT_RETENTION_DAYS,
    DEFAULT_OPERATION_RETENTION_DAYS,
    MAX_RETENTION_DAYS,
    InvalidRetentionError,
    RetentionPolicy,
    parse_retention_days,
)

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("days", "retention"),
    [
        pytest.param(0, None, id="ok/0-keeps-forever"),
        pytest.param(1, timedelta(days=1), id="ok/a-day"),
        pytest.param(MAX_RETENTION_DAYS, timedelta(days=MAX_RETENTION_DAYS), id="ok/the-maximum"),
    ],
)
def test_retention_days(days: int, retention: timedelta | None) -> None:
    assert parse_retention_days(days, "audit") == retention


@pytest.mark.parametrize(
    "days",
    [
        pytest.param(-1, id="fail/negative"),
        pytest.param(MAX_RETENTION_DAYS + 1, id="fail/past-the-maximum"),
    ],
)
def test_retention_days_out_of_range(days: int) -> None:
    with pytest.raises(InvalidRetentionError, match="audit retention must be 0"):
        parse_retention_days(days, "audit")


def test_the_defaults_and_their_cutoffs() -> None:
    policy = RetentionPolicy()
    assert policy == RetentionPolicy.from_days(
        DEFAULT_AUDIT_RETENTION_DAYS, DEFAULT_OPERATION_RETENTION_DAYS
    )
    assert policy.audit_cutoff(NOW) == NOW - timedelta(days=90)
    assert policy.operation_cutoff(NOW) == NOW - timedelta(days=7)


def test_keep_forever_has_no_cutoff() -> None:
    policy = RetentionPolicy.from_days(0, 0)
    assert policy.audit_cutoff(NOW) is None and policy.operation_cutoff(NOW) is None


def test_cutoffs_need_an_aware_now() -> None:
    with pytest.raises(ValueError):
        RetentionPolicy().audit_cutoff(datetime(2026, 11, 27))
