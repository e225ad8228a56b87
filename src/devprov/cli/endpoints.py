"""The endpoints one server process serves, assembled: HTTPS (management, service and device
APIs, and MQTT and AMQP over WebSocket at ``/$iothub/websocket``), MQTT over TLS and AMQP over
TLS, under one connection policy and one gate, so that every connection of the process counts
against one cap."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from devprov.amqp import dps as amqp_dps
from devprov.bootstrap import Container, public_host
from devprov.http.app import build_app
from devprov.http.listener import bind_listeners
from devprov.http.metrics import PrometheusMetrics
from devprov.http.server import HttpsServer
from devprov.http.websocket import WebSocketRoute
from devprov.mqtt import dps as mqtt_dps
from devprov.service.device_pending import PendingRegistrations
from devprov.transport.gate import ConnectionGate
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream import StreamOpener
from devprov.transport.stream_server import TlsStreamServer
from devprov.transport.tls import server_contexts

# Where DPS serves MQTT and AMQP over WebSocket, and the subprotocol each is told apart by
# (docs/dps-wire.md#mqtt, docs/sdk-clients.md#mqtt-over-websocket-the-upgrade,
# docs/amqp.md#amqp-over-websocket).
WEBSOCKET_PATH = "/$iothub/websocket"
WEBSOCKET_SUBPROTOCOL = "mqtt"
AMQP_WEBSOCKET_SUBPROTOCOL = "AMQPWSB10"


@dataclass
class Endpoints:
    https: HttpsServer
    mqtt: TlsStreamServer | None
    amqp: TlsStreamServer | None = None
    # The registrations the process settles in the background, waited for once no request is
    # left (service.device_pending.PendingRegistrations.close).
    pending: PendingRegistrations | None = None

    async def serve_on(
        self,
        https_listeners: list[socket.socket],
        mqtt_listeners: list[socket.socket],
        amqp_listeners: list[socket.socket] | None = None,
    ) -> None:
        await self.https.serve_on(https_listeners)
        if self.mqtt is not None:
            await self.mqtt.serve_on(mqtt_listeners)
        if self.amqp is not None:
            await self.amqp.serve_on(amqp_listeners or [])

    async def close(self) -> None:
        for server in (self.amqp, self.mqtt):
            if server is not None:
                await server.close()
        await self.https.close()
        if self.pending is not None:
            await self.pending.close()


def build_endpoints(
    c: Container, policy: ConnectionPolicy, *, mqtt: bool, amqp: bool = False
) -> Endpoints:
    """The process's servers: MQTT and AMQP over TLS when ``mqtt``, ``amqp`` (their ports are
    not 0); both over WebSocket on the HTTPS port always, as DPS serves them on 443."""
    gate = ConnectionGate(policy)
    if isinstance(c.metrics, PrometheusMetrics):
        c.metrics.count_connections(lambda: gate.open)
    mqtt_opener = mqtt_dps.opener(c, policy)
    amqp_opener = amqp_dps.opener(c, policy)
    routes = [
        WebSocketRoute(WEBSOCKET_SUBPROTOCOL, mqtt_opener),
        WebSocketRoute(AMQP_WEBSOCKET_SUBPROTOCOL, amqp_opener),
    ]
    https = HttpsServer(
        build_app(c),
        server_contexts(c.data.server_cert_file, c.data.server_key_file),
        policy=policy,
        gate=gate,
        upgrades={WEBSOCKET_PATH: routes},
    )
    return Endpoints(
        https,
        _stream_server(c, mqtt_opener, policy, gate) if mqtt else None,
        _stream_server(c, amqp_opener, policy, gate) if amqp else None,
        c.pending,
    )


@dataclass
class Listeners:
    """The sockets one ``devprov serve`` listens on (its worker processes accept on them too):
    HTTPS, and MQTT and AMQP over TLS when they are on."""

    https: list[socket.socket]
    mqtt: list[socket.socket] = field(default_factory=list)
    amqp: list[socket.socket] = field(default_factory=list)

    def close(self) -> None:
        for listener in self.https + self.mqtt + self.amqp:
            listener.close()

    def also_listening(self, host: str) -> str:
        """What the serve banner says after the HTTPS URL: " and mqtts://localhost:8883
        (0.0.0.0:8883) and amqps://localhost:5671 (0.0.0.0:5671)", for the ports that are on."""
        said = ""
        for scheme, listeners in (("mqtts", self.mqtt), ("amqps", self.amqp)):
            if listeners:
                port = int(listeners[0].getsockname()[1])
                said += f" and {scheme}://{public_host(host)}:{port} ({host}:{port})"
        return said


def bind_endpoints(host: str, https: int, *, mqtt: int | None, amqp: int | None) -> Listeners:
    """Bind the HTTPS port, and the MQTT and AMQP ports unless None; a port in use is refused
    naming its option (``PortInUseError``), and nothing stays bound then."""
    listeners = Listeners(bind_listeners(host, https))
    try:
        if mqtt is not None:
            listeners.mqtt = bind_listeners(host, mqtt, option="--mqtt-port (0 turns MQTT off)")
        if amqp is not None:
            listeners.amqp = bind_listeners(host, amqp, option="--amqp-port (0 turns AMQP off)")
    except BaseException:
        listeners.close()
        raise
    return listeners


def _stream_server(
    c: Container, opener: StreamOpener, policy: ConnectionPolicy, gate: ConnectionGate
) -> TlsStreamServer:
    # A context of its own: one protocol's connections' sessions do not crowd out another's
    # (or HTTPS's) cache.
    contexts = server_contexts(c.data.server_cert_file, c.data.server_key_file)
    return TlsStreamServer(opener, contexts, policy=policy, gate=gate)
