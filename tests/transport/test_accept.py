"""transport.accept on uvloop's event loop and on asyncio's: real listening sockets and real
connections; an accept() that runs out of descriptors is simulated (the one fault here)."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from devprov.transport.accept import ACCEPT_FAILED, RETRY_SECONDS, Acceptor, start_serving

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


class Echo(asyncio.Protocol):
    """Answers each chunk with itself, upper-cased."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())


class Exhaustible(socket.socket):
    """A listening socket whose accept() fails with ``error`` while it is set: the fault."""

    error: int | None = None

    def accept(self) -> tuple[socket.socket, Any]:
        if self.error is not None:
            raise OSError(self.error, "out of descriptors (simulated)")
        return super().accept()


def listening() -> Exhaustible:
    listener = Exhaustible()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener


def run(loop: str, scenario: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(scenario())


async def talk(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    answer = await reader.readexactly(len(data))
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize("loop", LOOPS)
def test_connections_are_served_and_close_stops_listening(loop: str) -> None:
    async def scenario() -> None:
        listener = listening()
        port = listener.getsockname()[1]
        server = await start_serving(Echo, listener)
        assert isinstance(server, Acceptor) == (loop == "uvloop")
        assert [s.getsockname()[1] for s in server.sockets] == [port]
        answers = await asyncio.gather(*(talk(port, b"abc%d" % i) for i in range(20)))
        assert answers == [b"ABC%d" % i for i in range(20)]
        server.close()
        await server.wait_closed()
        assert list(server.sockets) == []
        with pytest.raises(OSError):
            await talk(port, b"x")

    run(loop, scenario)


def test_running_out_of_descriptors_pauses_accepting_reports_and_retries() -> None:
    failures: list[dict[str, Any]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: failures.append(context))
        listener = listening()
        port = listener.getsockname()[1]
        acceptor = Acceptor(loop, listener, Echo)
        listener.error = errno.EMFILE
        acceptor.start()
        waiting = asyncio.ensure_future(talk(port, b"late"))
        await asyncio.sleep(RETRY_SECONDS / 2)
        # One report, then no more accept() calls until the pause is over.
        assert [f["message"] for f in failures] == [ACCEPT_FAILED]
        assert failures[0]["exception"].errno == errno.EMFILE
        assert not waiting.done()
        listener.error = None
        # After the pause the connection waiting in the backlog is served.
        assert await asyncio.wait_for(waiting, RETRY_SECONDS * 3) == b"LATE"
        assert len(failures) == 1
        acceptor.close()
        await acceptor.wait_closed()

    run("uvloop", scenario)


def test_a_retry_after_close_does_not_listen_again() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: None)
        listener = listening()
        acceptor = Acceptor(loop, listener, Echo)
        listener.error = errno.ENFILE
        acceptor.start()
        client = socket.create_connection(listener.getsockname())
        await asyncio.sleep(0.05)
        acceptor.close()
        acceptor.start()  # what the pending retry would do
        assert list(acceptor.sockets) == [] and listener.fileno() == -1
        client.close()

    run("uvloop", scenario)
