"""One MQTT 3.1.1 connection, server side: the protocol's rules, timers and flow, for an
:class:`Application` that decides what the packets mean (DPS, ``devprov.mqtt.dps``).

It is a :class:`devprov.transport.stream.StreamSession`, so it runs over TLS (8883) and inside a
WebSocket (``/$iothub/websocket``) alike. The rules, documented in
docs/mqtt.md#what-devprov-accepts-and-refuses:

- The first packet must be CONNECT, within ``policy.head_timeout`` of the TLS handshake. A
  protocol other than MQTT 3.1.1 gets CONNACK 1 and the connection closes; a refused CONNECT
  gets the application's return code and the connection closes; a second CONNECT closes it.
- Sessions are clean whatever the flag says: nothing is kept after the connection and CONNACK
  never reports a session present.
- SUBSCRIBE: each filter is granted at the QoS asked, 2 granted as 1, or refused (0x80) when the
  application does not serve it. UNSUBSCRIBE is acknowledged.
- PUBLISH at QoS 0 or 1 (QoS 1 acknowledged at once) goes to the application, one at a time in
  order; its answers go out at the QoS of the matching subscription (at most 1), and not at all
  without one. QoS 2 packets (PUBLISH QoS 2, PUBREC, PUBREL, PUBCOMP) close the connection.
- Keep-alive: a connection silent for one and a half times its keep-alive closes
  ([MQTT-3.1.2-24]); keep-alive 0 (none) or one over MAX_KEEP_ALIVE_SECONDS is taken as that.
- A malformed packet, a packet over the size limit, a packet only a server sends, or more than
  MAX_QUEUED_PACKETS packets waiting behind the request at work close the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Protocol

from devprov.mqtt.codec import (
    ACCEPTED,
    SUBACK_FAILURE,
    UNACCEPTABLE_PROTOCOL,
    ConnAck,
    Connect,
    Decoder,
    Disconnect,
    MalformedPacket,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    encode,
)
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream import Carrier, Peer

logger = logging.getLogger("devprov.mqtt")

# DPS's maximum message size (docs/dps-wire.md#limits-and-quotas), plus room for a PUBLISH's
# fixed header, topic and packet id: a device's JSON body of 96 KiB fits, one byte more does not.
MAX_PACKET_BYTES = 96 * 1024 + 1024

# The longest keep-alive honoured: Microsoft's Python SDK allows at most 1740 s
# (docs/sdk-clients.md#python-device-mqtt-connect-and-sas-token). A client asking for none (0)
# or for more is closed after 1.5 times this much silence.
MAX_KEEP_ALIVE_SECONDS = 1740

# Packets a client may send while its previous request is at work. DPS's SDKs send one request
# and wait for its answer; a backlog past this is a client flooding one connection.
MAX_QUEUED_PACKETS = 16

# Packet ids of the answers this side publishes at QoS 1 run from 1 to 65535.
_MAX_PACKET_ID = 65535

MQTT_PROTOCOL = ("MQTT", 4)


class ProtocolViolation(Exception):
    """The client broke a rule of the application (a topic it does not serve): close."""


Answer = tuple[str, bytes]  # (topic, payload) of a message for the client


class Application(Protocol):
    """What the packets of one connection mean."""

    def connect(self, packet: Connect, peer: Peer) -> Awaitable[int]:
        """The CONNACK return code for this CONNECT (0 accepts). Packets that arrive meanwhile
        wait in the queue, as they do behind a PUBLISH at work."""

    def serves(self, topic_filter: str) -> bool:
        """Whether the client may subscribe to ``topic_filter``."""

    def publish(self, packet: Publish) -> Awaitable[Sequence[Answer]]:
        """Handle a PUBLISH; its answers. Raises :class:`ProtocolViolation` to close."""


class MqttSession:
    """An MQTT 3.1.1 server session over one :class:`Carrier` (see the module docstring)."""

    def __init__(
        self, carrier: Carrier, peer: Peer, application: Application, policy: ConnectionPolicy
    ) -> None:
        self._carrier = carrier
        self._peer = peer
        self._application = application
        self._loop = asyncio.get_running_loop()
        self._decoder = Decoder(max_packet_bytes=MAX_PACKET_BYTES)
        self._connected = self._closed = self._stopping = False
        self._subscriptions: dict[str, int] = {}
        self._queue: deque[Packet] = deque()
        self._working: asyncio.Task[None] | None = None
        self._next_id = 0
        self._silence_limit = policy.head_timeout  # until CONNECT: the time it has to arrive
        self._last_heard = self._loop.time()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(
            self._silence_limit, self._check_silence
        )
        carrier.idle()

    # --- StreamSession ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._last_heard = self._loop.time()
        self._decoder.feed(data)
        while not self._closed:
            try:
                packet = self._decoder.next_packet()
            except MalformedPacket as exc:
                self._close(f"malformed packet: {exc.reason}")
                return
            if packet is None:
                return
            if self._working is not None:
                if len(self._queue) >= MAX_QUEUED_PACKETS:
                    self._close(f"more than {MAX_QUEUED_PACKETS} packets behind a request at work")
                    return
                self._queue.append(packet)
            else:
                self._handle(packet)

    def eof_received(self) -> None:
        # A client that half-closes has nothing more to ask; answers in flight are dropped with
        # the connection, as DPS's clean sessions would.
        self._close("the client closed the connection")

    def connection_lost(self) -> None:
        self._closed = True
        self._cancel_timer()
        self._queue.clear()

    def shut_down(self) -> None:
        self._stopping = True
        if self._working is None:
            self._close("the server is stopping")

    # --- packets ----------------------------------------------------------------------------

    def _handle(self, packet: Packet) -> None:
        if not self._connected:
            self._on_connect(packet)
        elif isinstance(packet, Publish):
            self._on_publish(packet)
        elif isinstance(packet, PingReq):
            self._send(PingResp())
        elif isinstance(packet, PubAck):
            pass  # an answer sent at QoS 1 arrived; clean sessions keep nothing to resend
        elif isinstance(packet, Subscribe):
            granted = tuple(
                min(qos, 1) if self._application.serves(topic) else SUBACK_FAILURE
                for topic, qos in packet.topics
            )
            for (topic, _), qos in zip(packet.topics, granted, strict=True):
                if qos != SUBACK_FAILURE:
                    self._subscriptions[topic] = qos
            self._send(SubAck(packet.packet_id, granted))
        elif isinstance(packet, Unsubscribe):
            for topic in packet.topics:
                self._subscriptions.pop(topic, None)
            self._send(UnsubAck(packet.packet_id))
        elif isinstance(packet, Disconnect):
            self._close("the client disconnected")
        elif isinstance(packet, Connect):
            self._close("a second CONNECT [MQTT-3.1.0-2]")
        else:  # PUBREC, PUBREL, PUBCOMP: QoS 2, which DPS does not use
            self._close(f"{type(packet).__name__}: QoS 2 is not served")

    def _on_connect(self, packet: Packet) -> None:
        if not isinstance(packet, Connect):
            self._close(f"{type(packet).__name__} before CONNECT [MQTT-3.1.0-1]")
            return
        if (packet.protocol_name, packet.protocol_level) != MQTT_PROTOCOL:
            self._send(ConnAck(False, UNACCEPTABLE_PROTOCOL))
            self._close(
                f"protocol {packet.protocol_name!r} level {packet.protocol_level}: "
                "only MQTT 3.1.1 (level 4) is served"
            )
            return
        self._carrier.busy()
        self._working = asyncio.ensure_future(self._connecting(packet))

    async def _connecting(self, packet: Connect) -> None:
        try:
            code = await self._application.connect(packet, self._peer)
        except Exception:
            self._working = None
            logger.exception("MQTT CONNECT from %s failed", self._peer.address)
            self._close("internal error")
            return
        self._working = None
        if self._closed:
            return
        self._send(ConnAck(False, code))
        if code != ACCEPTED:
            self._close(f"CONNECT refused with return code {code}")
            return
        self._connected = True
        keep_alive = packet.keep_alive
        if not 0 < keep_alive <= MAX_KEEP_ALIVE_SECONDS:
            keep_alive = MAX_KEEP_ALIVE_SECONDS
        self._silence_limit = 1.5 * keep_alive
        self._carrier.idle()
        self._go_on()

    def _on_publish(self, packet: Publish) -> None:
        if packet.qos == 2:
            self._close("PUBLISH at QoS 2 is not served")
            return
        if packet.qos == 1 and packet.packet_id is not None:
            self._send(PubAck(packet.packet_id))
        self._carrier.busy()
        self._working = asyncio.ensure_future(self._work(packet))

    async def _work(self, packet: Publish) -> None:
        try:
            answers = await self._application.publish(packet)
        except ProtocolViolation as exc:
            self._working = None
            self._close(str(exc))
            return
        except Exception:
            self._working = None
            logger.exception("MQTT request from %s failed", self._peer.address)
            self._close("internal error")
            return
        self._working = None
        if self._closed:
            return
        for topic, payload in answers:
            self._deliver(topic, payload)
        self._carrier.idle()
        self._go_on()

    def _go_on(self) -> None:
        """After a CONNECT or a request: stop if the server is stopping, else handle the packets
        that arrived meanwhile."""
        if self._stopping:
            self._close("the server is stopping")
            return
        while self._queue and self._working is None and not self._closed:
            self._handle(self._queue.popleft())

    def _deliver(self, topic: str, payload: bytes) -> None:
        qos = max(
            (q for f, q in self._subscriptions.items() if topic_matches(f, topic)), default=None
        )
        if qos is None:
            return  # nobody subscribed: the answer goes nowhere, as with any broker
        packet_id = None
        if qos:
            self._next_id = self._next_id % _MAX_PACKET_ID + 1
            packet_id = self._next_id
        self._send(Publish(topic, payload, qos=qos, packet_id=packet_id))

    # --- output, timers and closing --------------------------------------------------------

    def _send(self, packet: Packet) -> None:
        if not self._closed:
            self._carrier.send(encode(packet))

    def _check_silence(self) -> None:
        self._timer = None
        if self._closed:
            return
        remaining = self._last_heard + self._silence_limit - self._loop.time()
        if remaining > 0:
            self._timer = self._loop.call_later(remaining, self._check_silence)
        elif self._connected:
            self._close(f"silent for {self._silence_limit:g} s (keep-alive)")
        else:
            self._close(f"no CONNECT within {self._silence_limit:g} s")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self, reason: str) -> None:
        # At DEBUG, as the HTTPS server logs malformed requests: a client's mistakes are not the
        # operator's news, and a hostile client must not fill the log. Refused CONNECTs and
        # requests reach the log through the refusal log (service.refusal_log).
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        self._queue.clear()
        logger.debug("MQTT connection from %s closed: %s", self._peer.address, reason)
        self._carrier.close()


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` with MQTT's wildcards ``+`` and ``#``."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False  # [MQTT-4.7.2-1]: wildcards at the start never match $ topics
    filter_levels = topic_filter.split("/")
    levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(levels) or (level != "+" and level != levels[index]):
            return False
    return len(filter_levels) == len(levels)


__all__ = ["Answer", "Application", "MqttSession", "ProtocolViolation", "topic_matches"]
