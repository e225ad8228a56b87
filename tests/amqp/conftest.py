"""A real AMQP server in this process: devprov's engine behind the TLS stream server on loopback,
on an event loop in a thread, with a small test application; and for the DPS application's
tests (tests/amqp/dps_device.py has the rest), a container on a fresh data directory and a device
PKI."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devprov.amqp.application import (
    AmqpError,
    LinkRequest,
    Message,
    Reject,
    Reply,
    SaslIdentity,
)
from devprov.amqp.connection import opener
from devprov.amqp.frames import Flow
from devprov.bootstrap import Container
from devprov.http.listener import bind_listeners
from devprov.transport.gate import ConnectionGate
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream import Peer
from devprov.transport.stream_server import TlsStreamServer
from devprov.transport.tls import server_contexts
from tests import factory as f
from tests.amqp.client import AmqpClient, Sasl
from tests.amqp.dps_device import demo_pki, opened
from tests.http.conftest import HOST, Pki, build_pki, client_context

# Short, so that the timeout tests are quick; everything else as in production.
TEST_POLICY = ConnectionPolicy(
    max_connections=100,
    handshake_timeout=2.0,
    head_timeout=1.0,
    keep_alive_timeout=3.0,
    evict_after=0.5,
)

REFUSED = "refused/"  # links at addresses starting so are refused
ANSWER_ERROR = AmqpError("com.microsoft:argument-error", "no", {"retry-after": 3})


@dataclass
class Seen:
    """What the test application was asked, across connections."""

    attaches: list[tuple[SaslIdentity, LinkRequest, Peer]] = field(default_factory=list)
    requests: list[tuple[str, Message]] = field(default_factory=list)


class ProbeApplication:
    """Echoes each message on the same address, or does what its "op" property says:
    "reject" (rejected with ANSWER_ERROR), "silent" (accepted, no answer), "sleep" (answers
    after the "seconds" property), "fail" (raises). Refuses links at REFUSED addresses."""

    def __init__(self, peer: Peer, seen: Seen) -> None:
        self.peer, self.seen = peer, seen

    async def attach(self, sasl: SaslIdentity, link: LinkRequest) -> AmqpError | None:
        self.seen.attaches.append((sasl, link, self.peer))
        if link.address.startswith(REFUSED):
            return AmqpError("amqp:unauthorized-access", '{"errorCode":401002}')
        return None

    async def request(self, sasl: SaslIdentity, address: str, message: Message) -> Reply | Reject:
        self.seen.requests.append((address, message))
        op = message.application_properties.get("op")
        if op == "reject":
            return Reject(ANSWER_ERROR)
        if op == "silent":
            return Reply(None)
        if op == "fail":
            raise RuntimeError("the application failed")
        if op == "sleep":
            await asyncio.sleep(float(str(message.application_properties["seconds"])))
        properties = {
            "address": address,
            "mechanism": sasl.mechanism or "none",
            "username": sasl.username,
            "password": sasl.password,
            "chain": len(self.peer.chain_der),
            "size": len(message.body),
        }
        return Reply(
            Message(
                body=message.body,
                correlation_id=message.correlation_id,
                application_properties=properties,
                content_type="application/json",
            )
        )


@dataclass
class AmqpServer:
    port: int
    pki: Pki
    seen: Seen
    loop: asyncio.AbstractEventLoop
    server: TlsStreamServer
    thread: threading.Thread

    def connect(
        self, sasl: Sasl = None, *, identity: tuple[Path, Path] | None = None
    ) -> AmqpClient:
        return AmqpClient.connect(HOST, self.port, self.context(identity), sasl=sasl)

    def context(self, identity: tuple[Path, Path] | None = None):
        return client_context(self.pki, identity=identity)

    def request_seen(self, correlation_id: str, timeout: float = 5.0) -> tuple[str, Message]:
        """The (address, message) of the request with ``correlation_id``, once the application
        has it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for address, message in reversed(self.seen.requests):
                if message.correlation_id == correlation_id:
                    return address, message
            time.sleep(0.01)
        raise AssertionError(f"no request {correlation_id!r} reached the application")

    def ready(self, sasl: Sasl = None, address: str = "echo", **kwargs) -> AmqpClient:
        """A client opened, begun, with a receiver then a sender at ``address``."""
        client = self.connect(sasl, **kwargs)
        client.open()
        client.begin()
        client.attach_receiver(address)
        client.attach_sender(address)
        client.expect(Flow)  # the credit to send
        return client


def start_server(pki: Pki, policy: ConnectionPolicy = TEST_POLICY) -> AmqpServer:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    seen = Seen()

    async def start() -> tuple[TlsStreamServer, int]:
        contexts = server_contexts(pki.server_chain_file, pki.server_key_file)
        server = TlsStreamServer(
            opener(lambda peer: ProbeApplication(peer, seen), policy),
            contexts,
            policy=policy,
            gate=ConnectionGate(policy),
        )
        listeners = bind_listeners(HOST, 0)
        await server.serve_on(listeners)
        return server, int(listeners[0].getsockname()[1])

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    return AmqpServer(port, pki, seen, loop, server, thread)


def stop_server(server: AmqpServer) -> None:
    asyncio.run_coroutine_threadsafe(server.server.close(), server.loop).result(30)
    server.loop.call_soon_threadsafe(server.loop.stop)
    server.thread.join(10)
    server.loop.close()


@pytest.fixture(scope="package")
def amqp_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return build_pki(tmp_path_factory.mktemp("amqp-pki"))


@pytest.fixture(scope="package")
def amqp_server(amqp_pki: Pki) -> Iterator[AmqpServer]:
    server = start_server(amqp_pki)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    with opened(tmp_path) as c:
        yield c


@pytest.fixture
def pki() -> tuple[f.Ca, f.Ca, f.Ca]:
    return demo_pki()
