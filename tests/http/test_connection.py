"""One connection's limits over real TLS on 127.0.0.1: the cap and eviction, and the timeout of
each phase (http.connection, http.cycle, transport.gate). HTTP/1.1 strictness is
tests/http/test_framing.py.

Every accept has its reject twin.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import ssl
import time
from typing import Any

import pytest

from devprov.http.server import HttpsServer
from devprov.transport.policy import ConnectionPolicy
from tests.http.conftest import (
    HOST,
    EchoApp,
    Pki,
    Reply,
    client_context,
    connect,
    exchange,
    get,
    parse_reply,
    read_all,
    run,
    serving,
)
from tests.http.test_server import KEEP_ALIVE, read_reply

# --- the cap ---------------------------------------------------------------------------------


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def refused_without_tls(port: int) -> bool:
    """Connect and wait: True if the server closed before sending a single byte."""
    with socket.create_connection((HOST, port), timeout=5) as raw:
        try:
            return raw.recv(1) == b""
        except ConnectionResetError:
            return True


def test_past_the_cap_new_connections_are_closed_at_once_and_counted_in_one_line(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    app = EchoApp()
    policy = ConnectionPolicy(max_connections=3, evict_after=60, report_interval=0.3)

    async def scenario() -> Any:
        async with serving(pki, app, policy=policy) as (server, port):
            holders = [socket.create_connection((HOST, port)) for _ in range(3)]
            await until(lambda: server.gate.open == 3)
            start = time.monotonic()
            refused = [await asyncio.to_thread(refused_without_tls, port) for _ in range(100)]
            elapsed = time.monotonic() - start
            with pytest.raises((ssl.SSLError, OSError)):
                await asyncio.to_thread(exchange, port, client_context(pki), get())
            await asyncio.sleep(0.5)  # the report interval passes
            for holder in holders:
                holder.close()
            await until(lambda: server.gate.open == 0)
            served = await asyncio.to_thread(exchange, port, client_context(pki), get())
            return refused, elapsed, served

    with caplog.at_level(logging.DEBUG, logger="devprov"):
        refused, elapsed, served = run(scenario)
    assert refused == [True] * 100 and elapsed < 5
    assert served.status == 200 and app.calls == 1  # refused ones never reached the app
    lines = [r for r in caplog.records if r.name == "devprov.transport"]
    assert [r.getMessage() for r in lines] == [
        "connections: refused 101 new connections at the cap in the last 0.3 s "
        "(cap 3, --max-connections; 3 open)"
    ]
    assert all(r.exc_info is None for r in lines)  # and run() saw no ERROR and no traceback


def test_under_the_cap_nothing_is_refused(pki: Pki) -> None:
    async def scenario() -> Any:
        policy = ConnectionPolicy(max_connections=5, evict_after=60)
        async with serving(pki, EchoApp(), policy=policy) as (_, port):
            holders = [socket.create_connection((HOST, port)) for _ in range(4)]
            try:
                return await asyncio.to_thread(exchange, port, client_context(pki), get())
            finally:
                for holder in holders:
                    holder.close()

    assert run(scenario).status == 200


def keep_alive_client(port: int, pki: Pki) -> ssl.SSLSocket:
    tls = connect(port, client_context(pki))
    tls.sendall(KEEP_ALIVE)
    assert read_reply(tls).status == 200
    return tls


def closed_by_server(tls: ssl.SSLSocket) -> bool:
    try:
        return tls.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


def test_at_the_cap_the_longest_idle_connection_is_evicted_for_a_new_one(pki: Pki) -> None:
    policy = ConnectionPolicy(max_connections=2, evict_after=0.3)

    async def scenario() -> Any:
        async with serving(pki, EchoApp(), policy=policy) as (_, port):
            oldest = await asyncio.to_thread(keep_alive_client, port, pki)
            await asyncio.sleep(0.1)
            younger = await asyncio.to_thread(keep_alive_client, port, pki)
            await asyncio.sleep(0.4)  # both idle past evict_after; oldest the longest
            newcomer = await asyncio.to_thread(exchange, port, client_context(pki), get())
            oldest_closed = await asyncio.to_thread(closed_by_server, oldest)
            younger.sendall(KEEP_ALIVE)  # still served
            again = await asyncio.to_thread(read_reply, younger)
            oldest.close()
            younger.close()
            return newcomer, oldest_closed, again

    newcomer, oldest_closed, again = run(scenario)
    assert newcomer.status == 200
    assert oldest_closed
    assert again.status == 200


def test_at_the_cap_connections_being_answered_are_not_evicted(pki: Pki) -> None:
    release = asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    policy = ConnectionPolicy(max_connections=2, evict_after=0.2)

    async def scenario() -> Any:
        async with serving(pki, slow, policy=policy) as (server, port):
            waiting = [
                asyncio.create_task(asyncio.to_thread(exchange, port, client_context(pki), get()))
                for _ in range(2)
            ]
            await until(lambda: len(server._tasks) == 2)  # both handlers at work
            await asyncio.sleep(0.4)
            refused = await asyncio.to_thread(refused_without_tls, port)
            release.set()
            return refused, await asyncio.gather(*waiting)

    refused, answered = run(scenario)
    assert refused
    assert [reply.status for reply in answered] == [200, 200]


# --- timeouts of each phase --------------------------------------------------------------------


def drip(tls: ssl.SSLSocket, pieces: list[bytes], gap: float) -> bytes:
    """Send ``pieces`` ``gap`` seconds apart until the server answers; then read to the end."""
    received = b""
    for piece in pieces:
        tls.sendall(piece)
        if select.select([tls], [], [], gap)[0]:
            tls.setblocking(False)
            try:
                received = tls.recv(65536)  # an answer, or only TLS 1.3 session tickets
            except ssl.SSLWantReadError:
                continue
            finally:
                tls.setblocking(True)
            break
    try:
        return received + read_all(tls)
    except OSError:
        return received


def timed(pki: Pki, policy: ConnectionPolicy, talk: Any, app: Any = None) -> tuple[Any, float]:
    async def scenario() -> Any:
        async with serving(pki, app or EchoApp(), policy=policy) as (_, port):
            start = time.monotonic()
            result = await asyncio.to_thread(talk, port)
            return result, time.monotonic() - start

    return run(scenario)


def test_a_head_that_trickles_in_gets_408_at_the_head_timeout(pki: Pki) -> None:
    def slow_loris(port: int) -> bytes:
        with connect(port, client_context(pki)) as tls:
            pieces = [b"GET / HTTP/1.1\r\n"] + [b"X-Pad: %d\r\n" % n for n in range(40)]
            return drip(tls, pieces, 0.05)  # a header every 50 ms: never quiet for long

    answer, waited = timed(pki, ConnectionPolicy(head_timeout=0.4), slow_loris)
    reply = parse_reply(answer)
    assert reply.status == 408
    assert reply.json()["message"] == "the request head did not arrive within 0.4 s"
    assert reply.headers["connection"] == "close"
    assert waited < 1.9  # the drip would have lasted 2 s


def test_the_first_request_is_timed_from_the_end_of_the_handshake(pki: Pki) -> None:
    def silent(port: int) -> bytes:
        with connect(port, client_context(pki)) as tls:
            return read_all(tls)

    answer, waited = timed(pki, ConnectionPolicy(head_timeout=0.3), silent)
    assert parse_reply(answer).status == 408
    assert 0.25 < waited < 2


def test_keep_alive_waits_longer_than_a_head_may_take(pki: Pki) -> None:
    def pause_then_ask(port: int) -> tuple[int, int]:
        with connect(port, client_context(pki)) as tls:
            tls.sendall(KEEP_ALIVE)
            first = read_reply(tls).status
            time.sleep(0.6)  # past the head timeout, within keep-alive
            tls.sendall(KEEP_ALIVE)
            return first, read_reply(tls).status

    policy = ConnectionPolicy(head_timeout=0.3, keep_alive_timeout=2.0)
    statuses, _ = timed(pki, policy, pause_then_ask)
    assert statuses == (200, 200)


def body_request(declared: int) -> bytes:
    head = (
        f"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {declared}\r\n"
    )
    return head.encode() + b"\r\n"


@pytest.mark.parametrize(
    ("gap", "status"),
    [(0.01, 200), (0.1, 408)],
    ids=["ok/body-within-the-deadline", "fail/body-drips-past-the-deadline"],
)
def test_a_body_has_one_total_deadline(pki: Pki, gap: float, status: int) -> None:
    def send_body(port: int) -> bytes:
        with connect(port, client_context(pki)) as tls:
            tls.sendall(body_request(20))
            return drip(tls, [b"x"] * 20, gap)  # 0.2 s or 2 s in all, never 1 s quiet

    answer, waited = timed(pki, ConnectionPolicy(body_timeout=1.0), send_body)
    reply = parse_reply(answer)
    assert reply.status == status
    if status == 408:
        assert reply.json()["message"] == "the request body did not arrive within 1 s"
        assert waited < 1.9


def test_a_handler_past_its_timeout_is_cancelled_and_answered_503(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    cancelled: list[bool] = []

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        delay = 10.0 if scope["path"] == "/slow" else 0.05
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def both(port: int) -> tuple[Reply, Reply]:
        context = client_context(pki)
        return exchange(port, context, get("/fast")), exchange(port, context, get("/slow"))

    with caplog.at_level(logging.INFO, logger="devprov"):
        (fast, slow_reply), waited = timed(
            pki, ConnectionPolicy(handler_timeout=0.3), both, app=slow
        )
    assert fast.status == 200
    assert slow_reply.status == 503
    body = slow_reply.json()
    assert body["errorCode"] == 503000
    assert body["message"] == "the request was not handled within 0.3 s"
    assert len(body["trackingId"]) == 36
    assert cancelled == [True] and waited < 2
    assert [r.getMessage() for r in caplog.records] == [
        "GET /slow was not answered within 0.3 s (the handler timeout): cancelled"
    ]


def test_server_keeps_its_policy_and_gate(pki: Pki) -> None:
    async def scenario() -> Any:
        async with serving(pki, EchoApp()) as (server, _):
            assert isinstance(server, HttpsServer)
            return server.policy, server.gate.policy

    policy, gate_policy = run(scenario)
    assert policy is gate_policy and policy == ConnectionPolicy()


def test_accept_failures_are_counted_and_other_loop_errors_passed_on(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """What asyncio reports to the loop's exception handler when accept() fails (EMFILE), and
    when its retry runs after the listener closed, as asyncio words them (Python 3.11)."""
    emfile = OSError(24, "Too many open files")
    retry = "Exception in callback BaseSelectorEventLoop._start_serving(<function ...>, ...)"
    policy = ConnectionPolicy(report_interval=60)

    async def scenario() -> Any:
        loop = asyncio.get_running_loop()
        async with serving(pki, EchoApp(), policy=policy) as (server, _):
            for _ in range(50):
                loop.call_exception_handler(
                    {"message": "socket.accept() out of system resource", "exception": emfile}
                )
            loop.call_exception_handler({"message": "something else", "exception": emfile})
            refusals = server.gate._accept_failures
        loop.call_exception_handler({"message": retry, "exception": ValueError("fd -1")})
        return refusals

    caught: list[Any] = []

    async def watched() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: caught.append(ctx))
        return await scenario()

    with caplog.at_level(logging.WARNING, logger="devprov.transport"):
        failures = asyncio.run(watched())
    assert failures == 50
    assert [ctx["message"] for ctx in caught] == ["something else"]  # passed on, once
    (line,) = [r.getMessage() for r in caplog.records]
    assert "failed 50 accepts for want of file descriptors" in line
