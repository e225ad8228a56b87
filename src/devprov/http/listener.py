"""Listening sockets: bound once, by the process that owns the port, and shared with its workers.

A server with several processes has them accept on the very sockets the first process bound,
inherited as file descriptors, rather than each binding the port again with ``SO_REUSEPORT``:
with that option any other process of the same user may bind the same port too, and the kernel
then splits new connections between the two installations without a word (socket(7),
SO_REUSEPORT). Without it a second server on the port fails at once with ``PortInUse``.

``SO_REUSEADDR`` stays on, as asyncio sets it: it lets a restarted server bind a port whose old
connections linger in TIME_WAIT, and on Linux it never lets two sockets listen on one port.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket

from devprov.core.error import ConflictError, InvalidInputError

# listen(2)'s backlog: asyncio's default for create_server.
BACKLOG = 100


class PortInUseError(ConflictError):
    """The port is taken by another process (often a devprov server already running)."""

    code = "PortInUse"
    number = 409160


class CannotListenError(InvalidInputError):
    """The server cannot listen on that host and port (no such local address, a port below 1024
    without the right to bind it)."""

    code = "CannotListen"
    number = 400260


def bind_listeners(host: str, port: int, *, option: str = "--port") -> list[socket.socket]:
    """Bind and listen on every address ``host`` resolves to, all on one port (``port`` 0 picks
    a free one for the first and the others take the same).

    Raises :class:`PortInUseError` or :class:`CannotListenError` when an address cannot be
    bound, naming ``option`` as the way to choose another port; nothing stays bound then.
    """
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise listen_error(exc, host, port, option) from exc
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(
            (a[0], a[1], a[2], a[3], a[4]) for a in addresses
        ):
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                listener = socket.socket(family, kind, proto)
            except OSError:
                continue  # a family this machine lacks (IPv6 disabled), as asyncio skips it
            listeners.append(listener)
            chosen = int(listeners[0].getsockname()[1]) if len(listeners) > 1 else port
            _bind(listener, family, (address[0], chosen, *address[2:]))
    except OSError as exc:
        for listener in listeners:
            listener.close()
        raise listen_error(exc, host, port, option) from exc
    if not listeners:
        raise CannotListenError(f"cannot listen on {host}:{port}: no IPv4 or IPv6 address")
    return listeners


def _bind(listener: socket.socket, family: int, address: tuple[object, ...]) -> None:
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        # One socket per family, as asyncio does: the IPv6 one must not also claim IPv4.
        with contextlib.suppress(OSError):
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    listener.bind(address)
    listener.listen(BACKLOG)
    listener.setblocking(False)


def listen_error(
    exc: OSError, host: str, port: int, option: str = "--port"
) -> InvalidInputError | ConflictError:
    """The error a failure to listen on ``host``:``port`` becomes."""
    where = f"{host}:{port}"
    # asyncio's strerror repeats the address; the errno's own text is enough beside ``where``.
    reason = exc.strerror if isinstance(exc, socket.gaierror) else None
    reason = reason or (os.strerror(exc.errno) if exc.errno else str(exc))
    if exc.errno == errno.EADDRINUSE:
        return PortInUseError(
            f"{where} is already in use (is another 'devprov serve' running?); stop that "
            f"process or choose another port with {option}"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return CannotListenError(
            f"not permitted to listen on {where}: ports below 1024 need root or "
            f"CAP_NET_BIND_SERVICE; choose another port with {option}"
        )
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return CannotListenError(
            f"cannot listen on {where}: {host!r} is not an address of this machine "
            f"({reason}); pass --host 127.0.0.1, 0.0.0.0 or one of its addresses"
        )
    return CannotListenError(f"cannot listen on {where}: {reason}")
