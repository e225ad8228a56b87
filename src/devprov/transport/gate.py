"""Admission of new connections: the cap, eviction of idle connections at the cap, and the log.

A server asks :meth:`ConnectionGate.make_room` before it spends anything on a new connection
(no TLS object, no parser): under the cap the answer is yes; at the cap the connection that has
waited longest without a request being handled is evicted if it has waited at least
``policy.evict_after``, and otherwise the newcomer is refused and the server closes it at once.
Refusals, evictions and failed accepts are counted and logged as one line per
``policy.report_interval``, never one per connection.

Why eviction, and not reserved slots or a separate listener, lets an operator in while devices
fill the cap: docs/operations.md#operator-access-at-the-cap.

A transport's connection object is a :class:`Slot`; it tells the gate when it starts and stops
waiting on its client (:meth:`ConnectionGate.idle`, :meth:`ConnectionGate.busy`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from devprov.transport.policy import ConnectionPolicy

logger = logging.getLogger("devprov.transport")


class Slot(Protocol):
    """A connection as the gate sees it."""

    def evict(self) -> None:
        """Close now: the gate has given this connection's slot to a newer one."""


class ConnectionGate:
    """Counts the open connections of one server and decides who gets a slot at the cap."""

    def __init__(
        self,
        policy: ConnectionPolicy,
        *,
        name: str = "connections",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._name = name
        self._clock = clock
        self._open: set[Slot] = set()
        # Connections waiting on their client, oldest wait first: each entry is (re)inserted at
        # the end with the current time, so the order is the order of the times.
        self._idle: OrderedDict[Slot, float] = OrderedDict()
        self._refused = self._evicted = self._accept_failures = 0
        self._report: asyncio.TimerHandle | None = None

    @property
    def open(self) -> int:
        """Connections holding a slot."""
        return len(self._open)

    def make_room(self) -> bool:
        """True if a new connection may be admitted now, evicting one if need be."""
        if len(self._open) < self.policy.max_connections:
            return True
        victim = self._oldest_idle()
        if victim is None:
            self._refused += 1
            self._schedule_report()
            return False
        self._evicted += 1
        self._schedule_report()
        self.release(victim)
        victim.evict()
        return True

    def add(self, slot: Slot) -> None:
        """``slot`` holds a slot from now on, waiting on its client (a handshake comes first)."""
        self._open.add(slot)
        self._idle[slot] = self._clock()

    def release(self, slot: Slot) -> None:
        """``slot`` closed (or was evicted); calling it twice is harmless."""
        self._open.discard(slot)
        self._idle.pop(slot, None)

    def idle(self, slot: Slot) -> None:
        """``slot`` waits on its client from now: a handshake, a request, a head or a body."""
        if slot in self._open:
            self._idle.pop(slot, None)
            self._idle[slot] = self._clock()

    def busy(self, slot: Slot) -> None:
        """``slot`` has a whole request being handled: it is not evicted until it answered."""
        self._idle.pop(slot, None)

    def accept_failed(self) -> None:
        """accept() itself failed for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS)."""
        self._accept_failures += 1
        self._schedule_report()

    def close(self) -> None:
        """The server stops: log what was counted since the last line."""
        if self._report is not None:
            self._report.cancel()
        self._log_counts()

    # --- internals ----------------------------------------------------------------------------

    def _oldest_idle(self) -> Slot | None:
        for slot, since in self._idle.items():
            return slot if self._clock() - since >= self.policy.evict_after else None
        return None

    def _schedule_report(self) -> None:
        if self._report is None:
            loop = asyncio.get_running_loop()
            self._report = loop.call_later(self.policy.report_interval, self._log_counts)

    def _log_counts(self) -> None:
        self._report = None
        refused, evicted, failed = self._refused, self._evicted, self._accept_failures
        if not (refused or evicted or failed):
            return
        self._refused = self._evicted = self._accept_failures = 0
        parts = []
        if refused:
            parts.append(f"refused {refused} new connections at the cap")
        if evicted:
            parts.append(f"evicted {evicted} idle connections for newer ones")
        if failed:
            parts.append(f"failed {failed} accepts for want of file descriptors")
        logger.warning(
            "%s: %s in the last %g s (cap %d, --max-connections; %d open)",
            self._name,
            ", ".join(parts),
            self.policy.report_interval,
            self.policy.max_connections,
            len(self._open),
        )
