"""What a TLS port answers a client that speaks its protocol in plaintext, for the tests of each
protocol served over TLS (MQTT, AMQP)."""

from __future__ import annotations

import socket

TLS_ALERT = 21  # the TLS record type of an alert (RFC 8446 section 5.1)


def answer_to_plaintext(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """Everything the server sends after ``data`` until it closes the connection (a reset
    counts as a close)."""
    with socket.create_connection((host, port)) as sock:
        sock.sendall(data)
        sock.settimeout(5)
        received = b""
        try:
            while chunk := sock.recv(100):
                received += chunk
        except ConnectionResetError:
            pass
    return received
