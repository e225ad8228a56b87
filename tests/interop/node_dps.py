"""A devprov server with the demo PKI proven, and Microsoft's Node device SDK registering with it
(``tests/interop/node/register.js``): what the Node device test modules share.

The HTTP transport reaches the server's port through a test-only ``https.Agent``
(docs/sdk-clients.md#node-device-another-port-for-the-http-transport); ``Mqtt`` and ``Amqp`` are
given ``localhost:<port>``; a real device talks to 443, 8883 and 5671. ``MqttWs`` and ``AmqpWs``
connect to 443 and nothing else, so their cases run against a server on 443 (:func:`on_443`),
and skip, saying why, when that port cannot be had here (tests/interop/ports.py).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.iot.deviceprovisioning import DeviceProvisioningClient

from devprov.cli.main import main
from tests.instances import free_port
from tests.interop.nodejs import NODE_DIR, run_driver
from tests.interop.ports import skip_unless_free, websocket_refusal
from tests.server import ServerProcess, running_server

DRIVER = NODE_DIR / "register.js"
HUB = "node-hub.example.net"
ROOT_NAME = "node-root"


@dataclass(frozen=True)
class Outcome:
    """One line of register.js: the registration state, or what the SDK's error carried."""

    ok: bool
    result: dict[str, Any]
    name: str | None
    message: str | None
    status_code: int | None
    response_body: Any
    condition: str | None = None  # an AMQP error's condition

    @classmethod
    def parse(cls, line: dict[str, Any]) -> Outcome:
        return cls(
            ok=line["ok"],
            result=line.get("result") or {},
            name=line.get("name"),
            message=line.get("message"),
            status_code=line.get("statusCode"),
            response_body=line.get("responseBody"),
            condition=line.get("condition"),
        )


@dataclass(frozen=True)
class Dps:
    server: ServerProcess
    id_scope: str
    connection_string: str
    pki: Path
    node: str

    def service(self) -> DeviceProvisioningClient:
        return DeviceProvisioningClient.from_connection_string(
            self.connection_string, connection_verify=str(self.server.ca_file), retry_total=0
        )

    def register(
        self, registration_id: str, transport: str = "http", **credentials: Any
    ) -> Outcome:
        args = {
            "transport": transport,
            "port": self.server.port,
            "mqttPort": self.server.mqtt_port,
            "amqpPort": self.server.amqp_port,
            "ca": str(self.server.ca_file),
            "idScope": self.id_scope,
            "registrationId": registration_id,
            **{k: str(v) if isinstance(v, Path) else v for k, v in credentials.items()},
        }
        # The AMQP transports take no CA option: node trusts the server's CA through its
        # environment instead (docs/sdk-clients.md#node-device-amqp-and-amqp-over-websocket).
        extra_ca = self.server.ca_file if transport.startswith("amqp") else None
        run = run_driver(self.node, DRIVER, args, extra_ca=extra_ca)
        line = run.line
        assert run.returncode == (0 if line["ok"] else 1), (run.returncode, line, run.stderr)
        return Outcome.parse(line)


def quiet(*argv: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(list(argv)) == 0, argv


@contextlib.contextmanager
def serving(node: str, tmp_path_factory: pytest.TempPathFactory, *extra: str) -> Iterator[Dps]:
    """A devprov server with the demo root proven and one hub, as a :class:`Dps`."""
    pki = tmp_path_factory.mktemp("node-pki")
    with running_server(tmp_path_factory.mktemp("node") / "data", *extra) as server:
        quiet("ca", "demo", str(pki))
        root, root_key = str(pki / "root.pem"), str(pki / "root.key")
        quiet(
            "certificate", "prove", ROOT_NAME, "--cert", root, "--key", root_key, *server.cli_args()
        )
        quiet("hub", "add", HUB, *server.cli_args())
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["info", *server.cli_args(), "--json"]) == 0
        (service,) = json.loads(out.getvalue())["services"]
        yield Dps(server, service["idScope"], service["connectionString"], pki, node)


@contextlib.contextmanager
def on_free_ports(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dps]:
    """HTTPS, MQTT over TLS and AMQP over TLS, each on a free port."""
    ports = ("--mqtt-port", str(free_port()), "--amqp-port", str(free_port()))
    with serving(node, tmp_path_factory, *ports) as dps:
        yield dps


@contextlib.contextmanager
def on_443(node: str, tmp_path_factory: pytest.TempPathFactory, client: str) -> Iterator[Dps]:
    """HTTPS, with MQTT and AMQP over WebSocket, on 443: the only port ``MqttWs`` and ``AmqpWs``
    connect to; a skip naming ``client`` when 443 cannot be had."""
    skip_unless_free([443], client)
    with serving(node, tmp_path_factory, "--host", "localhost", "--port", "443") as dps:
        reason = websocket_refusal(dps.server.port, dps.server.ca_file)
        if reason is not None:
            pytest.skip(reason)
        yield dps


def create_x509_group(dps: Dps) -> str:
    """The enrollment group of the demo root, created unless the server has it already."""
    service = dps.service()
    with contextlib.suppress(ResourceNotFoundError):
        return str(service.enrollment_group.get(id="node-x509-group")["enrollmentGroupId"])
    service.enrollment_group.create_or_update(
        id="node-x509-group",
        enrollment_group={
            "enrollmentGroupId": "node-x509-group",
            "attestation": {"type": "x509", "x509": {"caReferences": {"primary": ROOT_NAME}}},
            "iotHubs": [HUB],
        },
    )
    return "node-x509-group"


def symmetric_group(dps: Dps, group_id: str, *, enabled: bool = True) -> str:
    """A symmetric-key group with keys the server generates; returns its primary key."""
    service = dps.service()
    service.enrollment_group.create_or_update(
        id=group_id,
        enrollment_group={
            "enrollmentGroupId": group_id,
            "attestation": {"type": "symmetricKey"},
            "provisioningStatus": "enabled" if enabled else "disabled",
        },
    )
    mechanism = service.enrollment_group.get_attestation_mechanism(id=group_id)
    key: str = mechanism["symmetricKey"]["primaryKey"]
    return key


def leaf_and_intermediate(pki: Path, name: str) -> Path:
    """The chain a device presents: its certificate, then the intermediate that signed it."""
    chain = pki / f"{name}-leaf-intermediate.pem"
    chain.write_text((pki / f"{name}.pem").read_text() + (pki / "intermediate.pem").read_text())
    return chain


def assert_assigned(outcome: Outcome, registration_id: str) -> dict[str, Any]:
    assert outcome.ok, outcome
    state = outcome.result
    assert state["registrationId"] == registration_id
    assert state["deviceId"] == registration_id
    assert state["status"] == "assigned" and state["substatus"] == "initialAssignment"
    assert state["assignedHub"] == HUB
    return state
