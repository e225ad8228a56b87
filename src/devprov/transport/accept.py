"""Accepting connections on sockets that already listen, alike on asyncio's own event loop and
on uvloop's (docs/performance.md#the-device-path-outside-the-use-case).

On asyncio's loop this is ``loop.create_server``. uvloop (libuv) answers a failed ``accept()``
differently: out of descriptors, it closes every connection waiting in the backlog at once,
silently, through a descriptor it keeps in reserve, and should that reserve be gone it closes
the listener for good. devprov's servers count such failures in their gate, once per interval,
and keep listening (``devprov.http.server``), so on any other loop :class:`Acceptor` accepts by
itself, as asyncio's loop does: up to a backlog's worth per wake-up, and on running out of
descriptors or memory it reports asyncio's own message to the loop's exception handler, stops
reading the listener and tries again a second later.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Sequence
from typing import Protocol

# asyncio's words for an accept() that failed for want of resources (BaseSelectorEventLoop's
# _accept_connection), which the servers' exception handler counts.
ACCEPT_FAILED = "socket.accept() out of system resource"

# The errors asyncio pauses on, and for how long (the same module).
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
RETRY_SECONDS = 1.0

# Connections accepted per wake-up at most: asyncio's default backlog, which it uses the same way.
ACCEPTS_PER_WAKEUP = 100


class Listening(Protocol):
    """One listening socket being served: what asyncio.Server offers and the servers use."""

    @property
    def sockets(self) -> Sequence[socket.socket]: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


async def start_serving(
    factory: Callable[[], asyncio.Protocol], listener: socket.socket
) -> Listening:
    """Serve ``listener``, a socket already listening, with a protocol from ``factory`` for
    each connection; asyncio's own server on asyncio's loop, an :class:`Acceptor` otherwise."""
    loop = asyncio.get_running_loop()
    if isinstance(loop, asyncio.BaseEventLoop):
        return await loop.create_server(factory, sock=listener)
    acceptor = Acceptor(loop, listener, factory)
    acceptor.start()
    return acceptor


class Acceptor:
    """Accepts on one listening socket as asyncio's selector loop does (module docstring),
    handing each connection to the loop's ``connect_accepted_socket``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        factory: Callable[[], asyncio.Protocol],
    ) -> None:
        listener.setblocking(False)
        self._loop = loop
        self._listener = listener
        self._factory = factory
        self._retry: asyncio.TimerHandle | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def sockets(self) -> Sequence[socket.socket]:
        return () if self._closed else (self._listener,)

    def start(self) -> None:
        self._retry = None
        if not self._closed:
            self._loop.add_reader(self._listener.fileno(), self._ready)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        self._loop.remove_reader(self._listener.fileno())
        self._listener.close()

    async def wait_closed(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def _ready(self) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _EXHAUSTED:
                    raise
                self._loop.call_exception_handler(
                    {"message": ACCEPT_FAILED, "exception": exc, "socket": self._listener}
                )
                self._loop.remove_reader(self._listener.fileno())
                self._retry = self._loop.call_later(RETRY_SECONDS, self.start)
                return
            task = self._loop.create_task(self._connect(sock))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports
        try:
            await self._loop.connect_accepted_socket(self._factory, sock)
        except OSError:  # the client left before its transport was made
            sock.close()
