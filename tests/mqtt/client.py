"""A raw MQTT 3.1.1 client for tests: a real TLS socket and devprov's codec in the client role,
so that tests can send exactly the packets they mean, well-formed or not."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Message, Request

from devprov.cli.endpoints import WEBSOCKET_PATH
from devprov.mqtt.codec import (
    ConnAck,
    Connect,
    Decoder,
    Packet,
    PubAck,
    Publish,
    Subscribe,
    encode,
)

API = "api-version=2019-03-31"
RESPONSES = "$dps/registrations/res/#"


def tls_context(ca_file: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


class RawClient:
    """One MQTT connection over TLS, or inside a WebSocket at ``/$iothub/websocket`` on the
    HTTPS port (``websocket=True``, with wsproto as the client); every read has a deadline."""

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext,
        *,
        host: str = "localhost",
        websocket: bool = False,
        prefix: bytes = b"",
        source: str | None = None,
    ) -> None:
        bind = (source, 0) if source is not None else None
        raw = socket.create_connection((host, port), timeout=10, source_address=bind)
        raw.sendall(prefix)  # before TLS: a load balancer's PROXY protocol header, for example
        self.sock = context.wrap_socket(raw, server_hostname=host)
        self.decoder = Decoder(max_packet_bytes=1 << 20, role="client")
        self._packet_id = 0
        self._ws: WSConnection | None = None
        if websocket:
            self._upgrade(host)

    def _upgrade(self, host: str) -> None:
        ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(ws.send(Request(host=host, target=WEBSOCKET_PATH, subprotocols=["mqtt"])))
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection during the upgrade")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    assert event.subprotocol == "mqtt"
                    self._ws = ws
                    return
                raise ConnectionError(f"the upgrade was refused: {event!r}")

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, packet: Packet | bytes) -> None:
        data = packet if isinstance(packet, bytes) else encode(packet)
        if self._ws is not None:
            data = self._ws.send(Message(data=data))
        self.sock.sendall(data)

    def _receive(self, data: bytes) -> bool:
        """Feed what the socket delivered; False once the peer closed (WebSocket close)."""
        if self._ws is None:
            self.decoder.feed(data)
            return True
        self._ws.receive_data(data)
        for event in self._ws.events():
            if isinstance(event, BytesMessage):
                self.decoder.feed(bytes(event.data))
            elif isinstance(event, CloseConnection):
                return False
        return True

    def read(self, timeout: float = 10.0) -> Packet | None:
        """The next packet, or None when the server closed the connection."""
        deadline = time.monotonic() + timeout
        while True:
            packet = self.decoder.next_packet()
            if packet is not None:
                return packet
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no packet from the server")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return None
            if not data or not self._receive(data):
                packet = self.decoder.next_packet()
                return packet

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        """True when the server closes the connection (after any packets it still sends)."""
        while True:
            if self.read(timeout) is None:
                return True

    def next_id(self) -> int:
        self._packet_id = self._packet_id % 65535 + 1
        return self._packet_id

    # --- DPS -------------------------------------------------------------------------------

    def connect(
        self,
        scope: str,
        registration_id: str,
        *,
        password: str | None = None,
        client_id: str | None = None,
        username: str | None = None,
        keep_alive: int = 60,
        clean: bool = False,
    ) -> ConnAck:
        self.send(
            Connect(
                protocol_name="MQTT",
                protocol_level=4,
                clean_session=clean,
                keep_alive=keep_alive,
                client_id=registration_id if client_id is None else client_id,
                username=username or f"{scope}/registrations/{registration_id}/{API}",
                password=password.encode() if password is not None else None,
            )
        )
        answer = self.read()
        assert isinstance(answer, ConnAck), answer
        return answer

    def subscribe(self, topic: str = RESPONSES, qos: int = 1) -> Packet | None:
        self.send(Subscribe(self.next_id(), ((topic, qos),)))
        return self.read()

    def request(self, topic: str, payload: bytes, *, qos: int = 1) -> Publish:
        """Publish, skip the PUBACK, return the answer (acknowledged when at QoS 1)."""
        packet_id = self.next_id() if qos else None
        self.send(Publish(topic, payload, qos=qos, packet_id=packet_id))
        while True:
            answer = self.read()
            if isinstance(answer, PubAck):
                assert answer.packet_id == packet_id
                continue
            assert isinstance(answer, Publish), answer
            if answer.qos == 1 and answer.packet_id is not None:
                self.send(PubAck(answer.packet_id))
            return answer

    def register(self, registration_id: str, rid: str = "1", payload: Any = None) -> Publish:
        body = json.dumps({"registrationId": registration_id, "payload": payload}).encode()
        return self.request(f"$dps/registrations/PUT/iotdps-register/?$rid={rid}", body)

    def poll(self, operation_id: str, rid: str = "2") -> Publish:
        topic = f"$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operation_id}"
        return self.request(topic, b" ")


def status(answer: Publish) -> int:
    """The status in an answer topic: ``$dps/registrations/res/{status}/?$rid=...``."""
    return int(answer.topic.split("/")[3])


def body(answer: Publish) -> dict[str, Any]:
    return json.loads(answer.payload)  # type: ignore[no-any-return]
