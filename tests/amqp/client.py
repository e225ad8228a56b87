"""A small blocking AMQP 1.0 client over a TLS socket, built on devprov's codec in the client
role, for tests and benches: it sends exactly the frames it is told to, well-formed or not
(:meth:`AmqpClient.send_raw`), and every read has a deadline.

    client = AmqpClient.connect("localhost", port, context, sasl=("PLAIN", user, password))
    client.open(); client.begin()
    client.attach_receiver(address); client.attach_sender(address)
    outcome = client.send(Message(body=b"{}", correlation_id="1"))
    answer = client.receive(timeout=5)
    client.close()
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections import deque
from typing import Any

from devprov.amqp.application import AmqpError, Message
from devprov.amqp.frames import (
    AMQP_FRAME,
    AMQP_HEADER,
    SASL_FRAME,
    SASL_HEADER,
    Accepted,
    Attach,
    Begin,
    Close,
    DeliveryState,
    Detach,
    Disposition,
    End,
    Flow,
    Frame,
    FrameReader,
    Open,
    Performative,
    SaslFrame,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    Source,
    Target,
    Transfer,
    encode_frame,
)
from devprov.amqp.message import decode_message, encode_message

Sasl = None | str | tuple[str, str, str]  # None, "ANONYMOUS", "EXTERNAL", ("PLAIN", user, pw)


class ServerClosed(Exception):
    """The server ended the connection while the client waited for a frame."""


class AmqpClient:
    """One AMQP connection: channel 0, one session, links by address."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.reader = FrameReader(1 << 24)
        self.pending: deque[Frame] = deque()  # frames read while waiting for another
        self.heartbeats = 0
        self.server_open: Open | None = None
        self.max_frame_size = 65536  # the largest frame this client sends
        self.mechanisms: tuple[str, ...] = ()
        self._handles: dict[str, int] = {}  # by address and role, "s:addr" / "r:addr"
        self._next_handle = 0
        self._delivery_id = 0

    # --- connecting -------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        context: ssl.SSLContext,
        *,
        sasl: Sasl = None,
        hostname: str | None = None,
    ) -> AmqpClient:
        """TLS, then the SASL exchange (or none: the AMQP header straight away) and the AMQP
        header. Raises ServerClosed when the server refuses."""
        raw = socket.create_connection((host, port), timeout=10)
        client = cls(context.wrap_socket(raw, server_hostname=host))
        try:
            client.handshake(sasl, hostname=hostname)
        except BaseException:
            client.sock.close()
            raise
        return client

    def handshake(self, sasl: Sasl, *, hostname: str | None = None) -> None:
        if sasl is not None:
            self.send_raw(SASL_HEADER)
            assert self.read_header() == SASL_HEADER
            mechanisms = self.read_sasl()
            assert isinstance(mechanisms, SaslMechanisms)
            self.mechanisms = mechanisms.sasl_server_mechanisms
            self.send_sasl(sasl_init(sasl, hostname))
            outcome = self.read_sasl()
            assert isinstance(outcome, SaslOutcome)
            if outcome.code != 0:
                raise ServerClosed(f"SASL outcome {outcome.code}")
        self.send_raw(AMQP_HEADER)
        header = self.read_header()
        assert header == AMQP_HEADER, header

    def open(self, *, idle_time_out: int | None = None, max_frame_size: int = 65536) -> Open:
        self.max_frame_size = max_frame_size
        self.send_frame(
            Open(container_id="test", max_frame_size=max_frame_size, idle_time_out=idle_time_out)
        )
        answer = self.expect(Open)
        self.server_open = answer
        return answer

    def begin(self) -> Begin:
        self.send_frame(Begin(next_outgoing_id=0, incoming_window=5000, outgoing_window=5000))
        return self.expect(Begin)

    # --- links ------------------------------------------------------------------------------

    def attach_sender(
        self, address: str, properties: dict[str, Any] | None = None, **fields: Any
    ) -> Attach | Detach:
        """Attach a link on which the client sends to ``address``: the server's attach, or its
        detach when it refused the link."""
        handle = self._handle("s:" + address)
        self.send_frame(
            Attach(
                name=f"sender-{handle}",
                handle=handle,
                role=False,
                source=Source(address="client"),
                target=Target(address=address),
                initial_delivery_count=0,
                properties=properties,
                **fields,
            )
        )
        return self._attached()

    def attach_receiver(
        self,
        address: str,
        properties: dict[str, Any] | None = None,
        *,
        credit: int = 10,
        **fields: Any,
    ) -> Attach | Detach:
        """Attach a link on which the client receives from ``address``, and give ``credit``."""
        handle = self._handle("r:" + address)
        self.send_frame(
            Attach(
                name=f"receiver-{handle}",
                handle=handle,
                role=True,
                source=Source(address=address),
                target=Target(address="client"),
                properties=properties,
                **fields,
            )
        )
        answer = self._attached()
        if isinstance(answer, Attach) and credit:
            self.flow(address, credit)
        return answer

    def flow(
        self,
        address: str,
        credit: int,
        *,
        delivery_count: int = 0,
        incoming_window: int = 5000,
        **fields: Any,
    ) -> None:
        """Give the server ``credit`` on the receiving link at ``address``."""
        self.send_frame(
            Flow(
                next_incoming_id=0,
                incoming_window=incoming_window,
                next_outgoing_id=self._delivery_id,
                outgoing_window=5000,
                handle=self._handles["r:" + address],
                delivery_count=delivery_count,
                link_credit=credit,
                **fields,
            )
        )

    def _handle(self, key: str) -> int:
        self._handles[key] = self._next_handle
        self._next_handle += 1
        return self._handles[key]

    def _attached(self) -> Attach | Detach:
        answer = self.expect(Attach)
        if answer.source is None and answer.target is None:
            return self.expect(Detach)
        return answer

    # --- messages ---------------------------------------------------------------------------

    def send(
        self,
        message: Message,
        *,
        address: str | None = None,
        settled: bool = False,
        frame_payload: int | None = None,
    ) -> DeliveryState | None:
        """Send ``message`` on the sending link (the one at ``address``, or the only one) in
        transfers of at most ``frame_payload`` bytes; the server's outcome, or None when sent
        settled."""
        self.transfer(encode_message(message), address=address, settled=settled, size=frame_payload)
        if settled:
            return None
        return self.expect(Disposition).state

    def transfer(
        self,
        data: bytes,
        *,
        address: str | None = None,
        settled: bool = False,
        size: int | None = None,
    ) -> int:
        """Send ``data`` as one delivery; its delivery id."""
        key = f"s:{address}" if address else next(k for k in self._handles if k[0] == "s")
        handle, delivery_id = self._handles[key], self._delivery_id
        self._delivery_id += 1
        limit = self.server_open.max_frame_size if self.server_open else 512
        size = size or limit - 64  # room for the frame header and the transfer performative
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        frames = b"".join(
            encode_frame(
                Frame(
                    AMQP_FRAME,
                    0,
                    Transfer(
                        handle=handle,
                        delivery_id=delivery_id if index == 0 else None,
                        delivery_tag=delivery_id.to_bytes(4, "big") if index == 0 else None,
                        message_format=0,
                        settled=settled,
                        more=index < len(chunks) - 1,
                    ),
                    chunk,
                )
            )
            for index, chunk in enumerate(chunks)
        )
        self.send_raw(frames)
        return delivery_id

    def receive(self, timeout: float = 5.0, *, settle: bool = True) -> Message:
        """The next message the server sends, reassembled; accepted when sent unsettled."""
        data, first = b"", None
        while True:
            transfer = self.expect(Transfer, timeout=timeout)
            first = first or transfer
            data += self.last_payload
            if not transfer.more:
                break
        if settle and not first.settled:
            self.send_frame(
                Disposition(role=True, first=first.delivery_id or 0, settled=True, state=Accepted())
            )
        self.last_transfer = first
        return decode_message(data)

    def close(self, error: AmqpError | None = None) -> Close:
        self.send_frame(Close(error=error))
        return self.expect(Close)

    # --- frames -----------------------------------------------------------------------------

    def expect(self, kind: type, timeout: float = 5.0) -> Any:
        """The next frame of ``kind``: frames of other kinds read meanwhile are kept for later
        expects, except a close, which raises ServerClosed with its error."""
        for index, frame in enumerate(self.pending):
            if isinstance(frame.body, kind):
                del self.pending[index]
                self.last_payload = frame.payload
                return frame.body
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read_frame(deadline - time.monotonic())
            if frame is None:
                raise ServerClosed(f"the server closed the connection before {kind.__name__}")
            if isinstance(frame.body, kind):
                self.last_payload = frame.payload
                return frame.body
            if isinstance(frame.body, Close):
                raise ServerClosed(f"close: {frame.body.error}")
            self.pending.append(frame)

    def expect_close(self, timeout: float = 5.0) -> AmqpError | None:
        """The error of the server's close, once it arrives (frames before it are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.read_frame(deadline - time.monotonic())
            if frame is None:
                raise ServerClosed("the server closed the connection without a close frame")
            if isinstance(frame.body, Close):
                return frame.body.error

    def read_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame, empty frames counted in ``heartbeats`` and skipped; None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.reader.next_frame()
            if frame is not None:
                if frame.body is None:
                    self.heartbeats += 1
                    continue
                return frame
            if not self._fill(deadline):
                return None

    def read_header(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while (header := self.reader.protocol_header()) is None:
            if not self._fill(deadline):
                raise ServerClosed("the server closed the connection before its header")
        return header

    def read_sasl(self) -> SaslFrame | None:
        frame = self.read_frame()
        if frame is None:
            raise ServerClosed("the server closed the connection during SASL")
        assert frame.type == SASL_FRAME
        return frame.body  # type: ignore[return-value]

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no frame from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
            return False
        except ssl.SSLError as exc:
            if "APPLICATION_DATA_AFTER_CLOSE_NOTIFY" in str(exc):
                return False
            raise
        if not data:
            return False
        self.reader.feed(data)
        return True

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """Whether the server ends the connection within ``timeout`` (what it sends first is
        read and dropped)."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
        except TimeoutError:
            return False
        except OSError:
            pass
        return True

    def send_frame(self, body: Performative, channel: int = 0, payload: bytes = b"") -> None:
        self.send_raw(encode_frame(Frame(AMQP_FRAME, channel, body, payload)))

    def send_sasl(self, body: SaslFrame) -> None:
        self.send_raw(encode_frame(Frame(SASL_FRAME, 0, body)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def __enter__(self) -> AmqpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


connect = AmqpClient.connect


def sasl_init(sasl: Sasl, hostname: str | None = None) -> SaslInit:
    if isinstance(sasl, tuple):
        mechanism, user, password = sasl
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        return SaslInit(mechanism=mechanism, initial_response=response, hostname=hostname)
    return SaslInit(mechanism=str(sasl), hostname=hostname)


__all__ = ["AmqpClient", "End", "ServerClosed", "connect", "sasl_init"]
