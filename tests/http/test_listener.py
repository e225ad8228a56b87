"""Listening sockets bound once, without SO_REUSEPORT: a second bind of the port fails."""

from __future__ import annotations

import socket

import pytest

from devprov.http.listener import CannotListenError, PortInUseError, bind_listeners

HOST = "127.0.0.1"


def close(listeners: list[socket.socket]) -> None:
    for listener in listeners:
        listener.close()


def test_one_port_for_every_address_and_no_port_sharing() -> None:
    listeners = bind_listeners("localhost", 0)
    try:
        ports = {s.getsockname()[1] for s in listeners}
        assert len(ports) == 1, "port 0 gave each address its own port"
        for listener in listeners:
            assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
            assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        close(listeners)


def test_a_second_bind_of_the_port_fails_even_with_so_reuseport() -> None:
    listeners = bind_listeners(HOST, 0)
    port = listeners[0].getsockname()[1]
    try:
        with pytest.raises(PortInUseError, match=f"{HOST}:{port} is already in use"):
            bind_listeners(HOST, port)
        intruder = socket.socket()
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError, match="Address already in use"):
            intruder.bind((HOST, port))
        intruder.close()
    finally:
        close(listeners)
    again = bind_listeners(HOST, port)  # the twin: a closed listener frees the port at once
    close(again)


def test_an_address_of_another_machine_is_refused() -> None:
    with pytest.raises(CannotListenError, match="is not an address of this machine"):
        bind_listeners("192.0.2.1", 0)  # TEST-NET-1 (RFC 5737)
    with pytest.raises(CannotListenError, match="is not an address of this machine"):
        bind_listeners("no-such-host.invalid", 0)  # RFC 2606: never resolves
