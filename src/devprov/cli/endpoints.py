"""The endpoints one server process serves, assembled: HTTPS (management, service and device
APIs, and MQTT over WebSocket at ``/$iothub/websocket``) and MQTT over TLS, under one connection
policy and one gate, so that every connection of the process counts against one cap."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from devprov.bootstrap import Container
from devprov.http.app import build_app
from devprov.http.metrics import PrometheusMetrics
from devprov.http.server import HttpsServer
from devprov.http.websocket import WebSocketRoute
from devprov.mqtt import dps
from devprov.transport.gate import ConnectionGate
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream_server import TlsStreamServer
from devprov.transport.tls import server_contexts

# Where DPS serves MQTT over WebSocket, and the subprotocol it speaks there
# (docs/dps-wire.md#mqtt, docs/sdk-clients.md#mqtt-over-websocket-the-upgrade).
WEBSOCKET_PATH = "/$iothub/websocket"
WEBSOCKET_SUBPROTOCOL = "mqtt"


@dataclass
class Endpoints:
    https: HttpsServer
    mqtt: TlsStreamServer | None

    async def serve_on(
        self, https_listeners: list[socket.socket], mqtt_listeners: list[socket.socket]
    ) -> None:
        await self.https.serve_on(https_listeners)
        if self.mqtt is not None:
            await self.mqtt.serve_on(mqtt_listeners)

    async def close(self) -> None:
        if self.mqtt is not None:
            await self.mqtt.close()
        await self.https.close()


def build_endpoints(c: Container, policy: ConnectionPolicy, *, mqtt: bool) -> Endpoints:
    gate = ConnectionGate(policy)
    if isinstance(c.metrics, PrometheusMetrics):
        c.metrics.count_connections(lambda: gate.open)
    opener = dps.opener(c, policy)
    https = HttpsServer(
        build_app(c),
        server_contexts(c.data.server_cert_file, c.data.server_key_file),
        policy=policy,
        gate=gate,
        upgrades={WEBSOCKET_PATH: WebSocketRoute(WEBSOCKET_SUBPROTOCOL, opener)},
    )
    mqtt_server = None
    if mqtt:
        # A context of its own: the MQTT connections' sessions do not crowd out HTTPS's cache.
        contexts = server_contexts(c.data.server_cert_file, c.data.server_key_file)
        mqtt_server = TlsStreamServer(opener, contexts, policy=policy, gate=gate)
    return Endpoints(https, mqtt_server)
