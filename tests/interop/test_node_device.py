"""Microsoft's Node device provisioning SDK (azure-iot-provisioning-device) registering against a
real devprov server over TLS. With its HTTP transport: an X.509 device of an enrollment group, a
self-signed individual enrollment and a symmetric-key group device, each with a negative control
(an unknown CA, a wrong key, a disabled group). With its MQTT transports (``Mqtt`` over TLS,
``MqttWs`` over WebSocket): an X.509 group device and a symmetric-key group device, with an
unknown CA and a wrong key as their negative controls.

The SDK runs in a child ``node`` process (``tests/interop/node/register.js``) with the packages
pinned by ``tests/interop/node/package-lock.json``. The HTTP transport reaches the server's port
through a test-only ``https.Agent``
(docs/sdk-clients.md#node-device-another-port-for-the-http-transport), ``Mqtt`` is given
``localhost:<port>``; a real device talks to 443 and 8883. ``MqttWs`` connects to 443 and nothing
else, so its cases run against a second server on 443, and skip, saying why, when that port
cannot be had here or the server has no MQTT over WebSocket endpoint (tests/interop/ports.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.iot.deviceprovisioning import DeviceProvisioningClient

from devprov.cli.main import main
from devprov.core.sas import derive_device_key
from tests.interop.nodejs import NODE_DIR, run_driver
from tests.interop.ports import skip_unless_free, websocket_refusal
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.interop

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

    @classmethod
    def parse(cls, line: dict[str, Any]) -> Outcome:
        return cls(
            ok=line["ok"],
            result=line.get("result") or {},
            name=line.get("name"),
            message=line.get("message"),
            status_code=line.get("statusCode"),
            response_body=line.get("responseBody"),
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
            "ca": str(self.server.ca_file),
            "idScope": self.id_scope,
            "registrationId": registration_id,
            **{k: str(v) if isinstance(v, Path) else v for k, v in credentials.items()},
        }
        run = run_driver(self.node, DRIVER, args)
        line = run.line
        assert run.returncode == (0 if line["ok"] else 1), (run.returncode, line, run.stderr)
        return Outcome.parse(line)


def quiet(*argv: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(list(argv)) == 0, argv


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


@pytest.fixture(scope="module")
def dps(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dps]:
    """HTTPS and MQTT over TLS, each on a free port."""
    with serving(node, tmp_path_factory, "--mqtt-port", str(free_port())) as dps:
        yield dps


MQTT_WS = "Node's MqttWs transport"


@pytest.fixture(scope="module")
def dps_on_443(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dps]:
    """HTTPS, and MQTT over WebSocket with it, on 443: the only port ``MqttWs`` connects to."""
    skip_unless_free([443], MQTT_WS)
    with serving(node, tmp_path_factory, "--host", "localhost", "--port", "443") as dps:
        reason = websocket_refusal(dps.server.port, dps.server.ca_file)
        if reason is not None:
            pytest.skip(reason)
        yield dps


@pytest.fixture(params=["mqtt", "mqttws"])
def over_mqtt(request: pytest.FixtureRequest) -> tuple[Dps, str]:
    """A server and the MQTT transport to reach it with: ``Mqtt`` on the server's MQTT port, or
    ``MqttWs`` on 443."""
    if request.param == "mqtt":
        return request.getfixturevalue("dps"), "mqtt"
    return request.getfixturevalue("dps_on_443"), "mqttws"


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


@pytest.fixture(scope="module")
def x509_group(dps: Dps) -> str:
    return create_x509_group(dps)


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


# --- devices that register -------------------------------------------------------------------


def test_x509_group_device_with_its_chain(dps: Dps, x509_group: str) -> None:
    chain = leaf_and_intermediate(dps.pki, "my-device")
    outcome = dps.register(
        "my-device",
        cert=chain,
        key=dps.pki / "my-device.key",
        payload={"modelId": "dtmi:devprov:test;1"},
    )
    state = assert_assigned(outcome, "my-device")
    assert state["x509"]["enrollmentGroupId"] == x509_group
    assert state["x509"]["certificateInfo"]["subjectName"] == "CN=my-device"
    assert state["x509"]["signingCertificateInfo"]["subjectName"] == "CN=devprov Test Root CA"

    # The service API sees the same registration.
    service = dps.service()
    recorded = service.device_registration_state.get(id="my-device")
    assert recorded["etag"] == state["etag"] and recorded["assignedHub"] == HUB
    group_states = list(service.device_registration_state.query(id=x509_group))
    assert [s["registrationId"] for s in group_states] == ["my-device"]


def test_self_signed_individual_enrollment(dps: Dps) -> None:
    quiet("ca", "device", "node-self-signed", "--self-signed", "--dir", str(dps.pki))
    cert = dps.pki / "node-self-signed.pem"
    dps.service().enrollment.create_or_update(
        id="node-self-signed",
        enrollment={
            "registrationId": "node-self-signed",
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": cert.read_text()}}},
            },
        },
    )
    outcome = dps.register("node-self-signed", cert=cert, key=dps.pki / "node-self-signed.key")
    state = assert_assigned(outcome, "node-self-signed")
    assert "enrollmentGroupId" not in state["x509"]
    assert state["x509"]["certificateInfo"]["issuerName"] == "CN=node-self-signed"
    enrollment = dps.service().enrollment.get(id="node-self-signed")
    assert enrollment["registrationState"]["etag"] == state["etag"]


def test_symmetric_key_group_device(dps: Dps) -> None:
    group_key = symmetric_group(dps, "node-sym-group")
    device_key = derive_device_key(group_key, "node-sym-1")
    outcome = dps.register("node-sym-1", symmetricKey=device_key)
    state = assert_assigned(outcome, "node-sym-1")
    assert state["symmetricKey"] == {"enrollmentGroupId": "node-sym-group"}

    # Registering again changes nothing: same enrollment, same hub, so the current assignment
    # comes back as stored (devprov.core.registration.decide_assignment).
    again = assert_assigned(dps.register("node-sym-1", symmetricKey=device_key), "node-sym-1")
    assert again == state


# --- negative controls --------------------------------------------------------------------------


def test_device_of_an_unknown_ca_is_refused(dps: Dps, x509_group: str, tmp_path: Path) -> None:
    rogue = tmp_path / "rogue"
    quiet("ca", "demo", str(rogue))
    quiet("ca", "device", "node-rogue", "--issuer", "intermediate", "--dir", str(rogue))
    outcome = dps.register(
        "node-rogue", cert=leaf_and_intermediate(rogue, "node-rogue"), key=rogue / "node-rogue.key"
    )
    assert not outcome.ok
    assert outcome.name == "UnauthorizedError" and outcome.status_code == 401
    assert outcome.response_body["errorCode"] // 1000 == 401
    assert outcome.response_body["message"] == "Invalid certificate"  # nothing more for a device
    states = dps.service().device_registration_state.query(id=x509_group)
    assert "node-rogue" not in {s["registrationId"] for s in states}


def test_wrong_symmetric_key_is_refused(dps: Dps) -> None:
    group_key = symmetric_group(dps, "node-sym-wrong")
    wrong = derive_device_key(group_key, "someone-else")
    outcome = dps.register("node-sym-wrong-1", symmetricKey=wrong)
    assert not outcome.ok
    assert outcome.name == "UnauthorizedError" and outcome.status_code == 401
    assert outcome.response_body["errorCode"] // 1000 == 401
    # Its twin with the right key gets in.
    right = derive_device_key(group_key, "node-sym-wrong-1")
    assert_assigned(dps.register("node-sym-wrong-1", symmetricKey=right), "node-sym-wrong-1")


def test_disabled_group_is_reported(dps: Dps) -> None:
    group_key = symmetric_group(dps, "node-sym-disabled", enabled=False)
    outcome = dps.register(
        "node-disabled-1", symmetricKey=derive_device_key(group_key, "node-disabled-1")
    )
    assert not outcome.ok
    # The server answers the poll with status "disabled" (DPS's DeviceRegistrationResult
    # status); the SDK knows only assigned/assigning/failed and fails with a SyntaxError.
    assert outcome.name == "SyntaxError", outcome
    assert outcome.result["status"] == "disabled"
    assert outcome.result["registrationState"]["registrationId"] == "node-disabled-1"
    assert "assignedHub" not in outcome.result["registrationState"]
    state = dps.service().device_registration_state.get(id="node-disabled-1")
    assert state["status"] == "disabled" and "assignedHub" not in state


# --- the MQTT transports: Mqtt over TLS, MqttWs over WebSocket ---------------------------------


def test_x509_group_device_over_mqtt(over_mqtt: tuple[Dps, str]) -> None:
    dps, transport = over_mqtt
    group = create_x509_group(dps)
    device = f"node-{transport}-x509"
    quiet("ca", "device", device, "--issuer", "intermediate", "--dir", str(dps.pki))
    outcome = dps.register(
        device,
        transport,
        cert=leaf_and_intermediate(dps.pki, device),
        key=dps.pki / f"{device}.key",
        payload={"modelId": "dtmi:devprov:test;1"},
    )
    state = assert_assigned(outcome, device)
    assert state["x509"]["enrollmentGroupId"] == group
    assert state["x509"]["certificateInfo"]["subjectName"] == f"CN={device}"
    assert dps.service().device_registration_state.get(id=device)["etag"] == state["etag"]


def test_symmetric_key_group_device_over_mqtt(over_mqtt: tuple[Dps, str]) -> None:
    dps, transport = over_mqtt
    group_key = symmetric_group(dps, f"node-{transport}-sym-group")
    device = f"node-{transport}-sym-1"
    outcome = dps.register(device, transport, symmetricKey=derive_device_key(group_key, device))
    state = assert_assigned(outcome, device)
    assert state["symmetricKey"] == {"enrollmentGroupId": f"node-{transport}-sym-group"}


# The Node SDK hands on mqtt.js's error for a CONNACK refused with return code 5, not authorized
# (docs/mqtt.md#connect-return-codes), as a plain Error.
NOT_AUTHORIZED = ("Error", "Connection refused: Not authorized")


def test_device_of_an_unknown_ca_is_refused_over_mqtt(
    over_mqtt: tuple[Dps, str], tmp_path: Path
) -> None:
    dps, transport = over_mqtt
    create_x509_group(dps)
    rogue = tmp_path / "rogue"
    quiet("ca", "demo", str(rogue))
    device = f"node-{transport}-rogue"
    quiet("ca", "device", device, "--issuer", "intermediate", "--dir", str(rogue))
    outcome = dps.register(
        device, transport, cert=leaf_and_intermediate(rogue, device), key=rogue / f"{device}.key"
    )
    assert not outcome.ok
    assert (outcome.name, outcome.message) == NOT_AUTHORIZED
    states = dps.service().device_registration_state.query(id="node-x509-group")
    assert device not in {s["registrationId"] for s in states}


def test_wrong_symmetric_key_is_refused_over_mqtt(over_mqtt: tuple[Dps, str]) -> None:
    dps, transport = over_mqtt
    group_key = symmetric_group(dps, f"node-{transport}-sym-wrong")
    device = f"node-{transport}-sym-wrong-1"
    outcome = dps.register(
        device, transport, symmetricKey=derive_device_key(group_key, "someone-else")
    )
    assert not outcome.ok
    assert (outcome.name, outcome.message) == NOT_AUTHORIZED
