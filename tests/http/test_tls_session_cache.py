"""The TLS session cache is bounded in memory (transport.tls.TlsContexts): a fresh SSL context
replaces one whose cache has taken its budget, the old context's connections are retired, and
the old context is freed with its sessions. Real TLS 1.2 and 1.3 handshakes on 127.0.0.1; the
memory test measures a real server process.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import weakref
from typing import Any

import pytest

from bench import session_cache
from devprov.transport.tls import (
    SESSION_BASE_BYTES,
    SESSION_BYTES_PER_CHAIN_BYTE,
    TlsContexts,
    build_server_context,
    server_contexts,
)
from tests.http.conftest import (
    EchoApp,
    Pki,
    client_context,
    connect,
    get,
    parse_reply,
    read_all,
    run,
    serving,
)
from tests.http.test_server import KEEP_ALIVE, read_reply


def closed_by_server(tls: ssl.SSLSocket) -> bool:
    try:
        return tls.recv(1) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


def resumed_connection(port: int, context: ssl.SSLContext, session: Any) -> tuple[bool, Any, str]:
    """One request on a new connection offering ``session``: (resumed?, its session, Connection)."""
    with connect(port, context, session=session) as tls:
        tls.sendall(get())
        reply = parse_reply(read_all(tls))
        return tls.session_reused, tls.session, reply.headers.get("connection", "")


@pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"]
)
def test_a_full_cache_starts_a_fresh_context_and_retires_the_old_one(
    pki: Pki, version: ssl.TLSVersion
) -> None:
    identity = (pki.device_chain_file, pki.device_key_file)
    chain_bytes = len(pki.device_der) + len(pki.intermediate_der)
    per_handshake = SESSION_BASE_BYTES + int(chain_bytes * SESSION_BYTES_PER_CHAIN_BYTE)
    # Each generation may take half the budget: the third handshake fills the first one.
    contexts = server_contexts(
        pki.server_chain_file, pki.server_key_file, session_cache_bytes=5 * per_handshake
    )
    first_context = weakref.ref(contexts.context)
    context = client_context(pki, identity=identity, version=version)

    async def scenario() -> Any:
        async with serving(pki, EchoApp(), context=contexts) as (server, port):
            idle = await asyncio.to_thread(connect, port, context)  # handshake 1, generation 0
            idle.sendall(KEEP_ALIVE)
            await asyncio.to_thread(read_reply, idle)
            first = await asyncio.to_thread(resumed_connection, port, context, None)  # 2
            second = await asyncio.to_thread(resumed_connection, port, context, first[1])  # 3
            generation = server.contexts.generation
            idle_closed = await asyncio.to_thread(closed_by_server, idle)
            idle.close()
            third = await asyncio.to_thread(resumed_connection, port, context, first[1])
            await asyncio.sleep(0.1)
            return first, second, generation, idle_closed, third

    first, second, generation, idle_closed, third = run(scenario)
    assert first[0] is False  # a full handshake
    assert second[0] is True  # resumed from the first context's cache, and it filled it
    assert generation == 1
    assert idle_closed  # the first context's idle keep-alive connection was retired
    assert third[0] is False  # the session died with the first context's cache
    gc.collect()
    assert first_context() is None  # the first context, its cache with it, is gone


def test_one_context_without_a_budget_keeps_resuming(pki: Pki) -> None:
    context = client_context(pki, identity=(pki.device_chain_file, pki.device_key_file))
    contexts = TlsContexts.fixed(build_server_context(pki.server_chain_file, pki.server_key_file))

    def many(port: int) -> list[bool]:
        _, session, _ = resumed_connection(port, context, None)
        return [resumed_connection(port, context, session)[0] for _ in range(10)]

    async def scenario() -> Any:
        async with serving(pki, EchoApp(), context=contexts) as (server, port):
            return await asyncio.to_thread(many, port), server.contexts.generation

    resumed, generation = run(scenario)
    assert resumed == [True] * 10 and generation == 0


def test_a_connection_of_the_old_generation_finishes_its_request_then_closes(pki: Pki) -> None:
    per_handshake = SESSION_BASE_BYTES  # clients present no chain here
    contexts = server_contexts(
        pki.server_chain_file, pki.server_key_file, session_cache_bytes=3 * per_handshake
    )
    context = client_context(pki)

    def talk(port: int) -> tuple[str, str, bool]:
        with connect(port, context) as old:  # handshake 1: generation 0
            with connect(port, context) as new:  # handshake 2: the budget is spent
                new.sendall(KEEP_ALIVE)
                read_reply(new)
            old.sendall(KEEP_ALIVE)  # its request is still answered, with Connection: close
            reply = read_reply(old)
            return reply.headers.get("connection", ""), str(reply.status), closed_by_server(old)

    async def scenario() -> Any:
        async with serving(pki, EchoApp(), context=contexts) as (_, port):
            return await asyncio.to_thread(talk, port)

    assert run(scenario) == ("close", "200", True)


# --- memory, measured on a server process ----------------------------------------------------

CONNECTIONS = 400
CHAIN_KB = 90


@pytest.fixture(scope="module")
def large_chain(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return session_cache.build_large_chain(tmp_path_factory.mktemp("large-chain"), CHAIN_KB)


@pytest.mark.parametrize(
    ("budget_mib", "bounded"),
    [(16, True), (None, False)],
    ids=["ok/bounded-cache", "negative-control/one-context"],
)
def test_memory_after_many_large_chains_is_bounded(
    large_chain: Any, budget_mib: int | None, bounded: bool
) -> None:
    before, after, _ = session_cache.measure(large_chain, budget_mib, CONNECTIONS)
    growth_mib = (after - before) / 1024
    # About 200 KiB stays per session of a 90 KB chain: 78 MiB for 400 in one context.
    if bounded:
        assert growth_mib < 32, f"RSS grew {growth_mib:.1f} MiB"
    else:
        assert growth_mib > 50, f"RSS grew only {growth_mib:.1f} MiB"


def test_large_chains_complete_the_handshake(large_chain: Any) -> None:
    # The chain is just under OpenSSL's 100 KB limit on a peer's certificate list.
    assert 85_000 < large_chain.chain_der_bytes < 100_000
    context = session_cache.client_context(large_chain)
    with session_cache.server_process(large_chain.directory, 16) as (port, _):
        assert session_cache.connect_many(port, context, 2) > 0
