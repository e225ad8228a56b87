"""transport.gate: admission at the cap, eviction of the longest-idle connection, the log line.

A fake clock drives the gate; the report test runs a real event loop for its timer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from devprov.transport.gate import ConnectionGate
from devprov.transport.policy import ConnectionPolicy


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(eq=False)
class Conn:
    name: str
    evicted: list[str] = field(default_factory=list)

    def evict(self) -> None:
        self.evicted.append(self.name)


def in_loop(test: Callable[[], None]) -> Callable[[], None]:
    """Run a test's body inside an event loop, where the gate schedules its report."""

    @functools.wraps(test)
    def wrapper() -> None:
        async def body() -> None:
            test()

        asyncio.run(body())

    return wrapper


def gate(cap: int = 2, evict_after: float = 2.0) -> tuple[ConnectionGate, Clock]:
    clock = Clock()
    policy = ConnectionPolicy(max_connections=cap, evict_after=evict_after, report_interval=0.05)
    return ConnectionGate(policy, clock=clock), clock


def admit(g: ConnectionGate, name: str, log: list[str]) -> Conn | None:
    """What a server does: ask for room, then add the connection."""
    if not g.make_room():
        return None
    conn = Conn(name, log)
    g.add(conn)
    return conn


@in_loop
def test_admits_up_to_the_cap_and_refuses_fresh_connections_past_it() -> None:
    g, _ = gate(cap=2)
    evicted: list[str] = []
    assert admit(g, "a", evicted) and admit(g, "b", evicted)
    assert admit(g, "c", evicted) is None  # both still in their first 2 s
    assert g.open == 2 and evicted == []


@in_loop
def test_at_the_cap_the_longest_idle_connection_makes_room() -> None:
    g, clock = gate(cap=2)
    evicted: list[str] = []
    a = admit(g, "a", evicted)
    clock.now += 1
    b = admit(g, "b", evicted)
    assert a and b
    clock.now += 1.5  # a idle 2.5 s, b 1.5 s
    assert admit(g, "c", evicted)
    assert evicted == ["a"] and g.open == 2
    assert admit(g, "d", evicted) is None  # b idle 1.5 s, c just arrived: no one to evict


@in_loop
def test_a_connection_being_answered_is_never_evicted() -> None:
    g, clock = gate(cap=1)
    evicted: list[str] = []
    a = admit(g, "a", evicted)
    assert a
    g.busy(a)
    clock.now += 60
    assert admit(g, "b", evicted) is None
    g.idle(a)  # answered; waits for its next request from now
    clock.now += 1
    assert admit(g, "b", evicted) is None  # idle for 1 s only
    clock.now += 1
    assert admit(g, "b", evicted) and evicted == ["a"]


@in_loop
def test_activity_moves_a_connection_to_the_back_of_the_queue() -> None:
    g, clock = gate(cap=2)
    evicted: list[str] = []
    a, b = admit(g, "a", evicted), admit(g, "b", evicted)
    assert a and b
    clock.now += 5
    g.idle(a)  # a served a request and waits again: b has now waited longest
    clock.now += 3
    assert admit(g, "c", evicted) and evicted == ["b"]


@in_loop
def test_release_frees_a_slot_and_is_idempotent() -> None:
    g, _ = gate(cap=1)
    evicted: list[str] = []
    a = admit(g, "a", evicted)
    assert a
    g.release(a)
    g.release(a)
    assert g.open == 0
    assert admit(g, "b", evicted)
    g.idle(a)  # a late notice from a closed connection changes nothing
    assert g.open == 1


def test_refusals_and_evictions_make_one_log_line_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        g, clock = gate(cap=1)
        evicted: list[str] = []
        admit(g, "a", evicted)
        for _ in range(500):
            admit(g, "x", evicted)
        clock.now += 3
        admit(g, "b", evicted)  # evicts a
        g.accept_failed()
        await asyncio.sleep(0.15)  # the interval passes: one line
        for _ in range(7):
            admit(g, "y", evicted)
        g.close()  # the server stops: what is left is logged

    with caplog.at_level(logging.INFO, logger="devprov.transport"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "connections: refused 500 new connections at the cap, evicted 1 idle connections for "
        "newer ones, failed 1 accepts for want of file descriptors in the last 0.05 s (cap 1, "
        "--max-connections; 1 open)",
        "connections: refused 7 new connections at the cap in the last 0.05 s (cap 1, "
        "--max-connections; 1 open)",
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)


def test_nothing_to_report_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    g, _ = gate(cap=5)
    with caplog.at_level(logging.DEBUG, logger="devprov.transport"):
        admit(g, "a", [])
        g.close()
    assert caplog.records == []
