"""Running a use case again when the database rolled it back for a concurrent writer.

Several instances share one PostgreSQL database (docs/storage.md#instances-sharing-one-database).
When two of their transactions conflict in a way the database resolves by rolling one back (a
deadlock, a serialization failure), or a device registers on two instances at the same moment,
the loser's unit of work is gone as a whole: nothing it meant to write was written, and the use
cases wrapped here do nothing outside the database before they commit. Running the call again
is then exactly what would have happened had the two arrived one after the other. The number of
runs is bounded, so that a conflict that keeps recurring is answered 503 with a retry hint
(``StorageConflictError``) rather than held on a storage thread.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from devprov.core.error import StorageConflictError

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("devprov.storage")

# Runs of one call in all: two conflicts in a row are already rare (each needs another writer
# on the same rows within the same few milliseconds); a third run that also loses answers 503.
CONFLICT_ATTEMPTS = 3


def run_retrying(call: Callable[[], T], *, attempts: int = CONFLICT_ATTEMPTS) -> T:
    """``call()``, run again after a ``StorageConflictError`` up to ``attempts`` runs in all."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except StorageConflictError as exc:
            if attempt == attempts:
                raise
            log.info(
                "run %d of %d lost to a concurrent writer, running again: %s",
                attempt,
                attempts,
                exc.message,
            )
    raise AssertionError("unreachable: the last attempt returns or raises")


def retrying(method: Callable[P, T]) -> Callable[P, T]:
    """A use case that runs again after a storage conflict (see ``run_retrying``). Only for
    calls that do nothing outside the database before their unit of work commits."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_retrying(lambda: method(*args, **kwargs))

    return wrapper
