"""Microsoft's Python device SDK (``azure-iot-device``) registering against a real ``devprov
serve`` over MQTT (TLS, port 8883) and MQTT over WebSocket (port 443): X.509 group and individual
devices, symmetric-key individual and group devices, a payload through a custom allocation
webhook, and the refusals the SDK reports (an unknown certificate, a CA not verified, a disabled
enrollment, a wrong key).

The SDK runs unchanged in a child process (``tests/interop/python_device.py``) and picks its own
ports, so the server listens on exactly those; the module skips, naming the process in the way,
when it cannot have them (tests/interop/ports.py). The WebSocket cases skip too while this
devprov has no MQTT over WebSocket endpoint.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devprov.cli.main import main
from devprov.core.sas import derive_device_key
from tests.interop.ports import skip_unless_free, websocket_refusal
from tests.server import ServerProcess, running_server
from tests.webhook import Webhook, allocation_webhook

pytestmark = pytest.mark.interop

DRIVER = Path(__file__).with_name("python_device.py")
DRIVER_TIMEOUT_SECONDS = 60
SDK = "the Python device SDK"
MQTT_PORT, WEBSOCKET_PORT = 8883, 443  # the SDK's own, fixed (docs/sdk-clients.md)
HUB = "py-hub.azure-devices.net"
WEBHOOK_HUB = "py-webhook-hub.azure-devices.net"  # only the webhook picks it
ROOT_NAME = "py-root"


@dataclass(frozen=True)
class Dps:
    server: ServerProcess
    id_scope: str
    pki: Path
    websocket_refusal: str | None  # why this server cannot carry MQTT over WebSocket

    def cli(self, *argv: str) -> str:
        """Run a ``devprov`` command against the server; its standard output."""
        return devprov(*argv, *self.server.cli_args())

    def register(
        self, registration_id: str, websockets: bool, **credentials: Any
    ) -> dict[str, Any]:
        """One ``register()`` of the SDK in a child process: the line its driver printed."""
        args = {
            "host": "localhost",  # a name of the server certificate: the SDK checks it
            "idScope": self.id_scope,
            "registrationId": registration_id,
            "ca": str(self.server.ca_file),
            "websockets": websockets,
            "timeoutSeconds": DRIVER_TIMEOUT_SECONDS,
            **{k: str(v) if isinstance(v, Path) else v for k, v in credentials.items()},
        }
        done = subprocess.run(
            [sys.executable, str(DRIVER), json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT_SECONDS + 30,
            check=False,
        )
        lines = done.stdout.strip().splitlines()
        assert lines, f"the driver printed nothing (exit {done.returncode}):\n{done.stderr}"
        line: dict[str, Any] = json.loads(lines[-1])
        assert done.returncode == (0 if line["ok"] else 1), (done.returncode, line, done.stderr)
        return line


def devprov(*argv: str) -> str:
    """Run a ``devprov`` command in this process; its standard output."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0, argv
    return out.getvalue()


@pytest.fixture(scope="module")
def dps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dps]:
    skip_unless_free((MQTT_PORT, WEBSOCKET_PORT), SDK)
    pki = tmp_path_factory.mktemp("py-pki")
    data = tmp_path_factory.mktemp("py-device") / "data"
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(
                running_server(
                    data,
                    "--host",
                    "localhost",
                    "--port",
                    str(WEBSOCKET_PORT),
                    "--mqtt-port",
                    str(MQTT_PORT),
                )
            )
        except RuntimeError:  # taken since the check: say by whom
            skip_unless_free((MQTT_PORT, WEBSOCKET_PORT), SDK)
            raise
        devprov("ca", "demo", str(pki))
        (service,) = json.loads(devprov("info", "--json", *server.cli_args()))["services"]
        dps = Dps(server, service["idScope"], pki, websocket_refusal(server.port, server.ca_file))
        dps.cli("hub", "add", HUB)
        dps.cli("hub", "add", WEBHOOK_HUB, "--no-allocation")
        dps.cli(
            "certificate", "prove", ROOT_NAME, "--cert", str(pki / "root.pem"),
            "--key", str(pki / "root.key"),
        )  # fmt: skip
        yield dps


@pytest.fixture(params=[False, True], ids=["mqtt", "websocket"])
def websockets(request: pytest.FixtureRequest, dps: Dps) -> bool:
    """MQTT over TLS on 8883, or MQTT over WebSocket on 443."""
    if request.param and dps.websocket_refusal is not None:
        pytest.skip(dps.websocket_refusal)
    return bool(request.param)


@pytest.fixture(scope="module")
def x509_group(dps: Dps) -> str:
    dps.cli("enrollment-group", "create", "py-x509-group", "--ca-name", ROOT_NAME)
    return "py-x509-group"


def name(prefix: str, websockets: bool) -> str:
    """A registration id of its own for each transport, so that each case registers afresh."""
    return f"{prefix}-{'ws' if websockets else 'mqtt'}"


def device_certificate(dps: Dps, registration_id: str, *, pki: Path | None = None) -> Path:
    """A device of the demo intermediate (of ``pki``); its full chain, as the device presents."""
    where = pki or dps.pki
    devprov("ca", "device", registration_id, "--issuer", "intermediate", "--dir", str(where))
    return where / f"{registration_id}-full-chain.pem"


def self_signed(dps: Dps, registration_id: str) -> Path:
    devprov("ca", "device", registration_id, "--self-signed", "--dir", str(dps.pki))
    return dps.pki / f"{registration_id}.pem"


def assigned(registration_id: str, hub: str = HUB, payload: Any = None) -> dict[str, Any]:
    """The driver's line for a device the SDK reports assigned on its first registration."""
    return {
        "ok": True,
        "status": "assigned",
        "deviceId": registration_id,
        "assignedHub": hub,
        "substatus": "initialAssignment",
        "payload": payload,
    }


def registration_of(dps: Dps, registration_id: str) -> dict[str, Any] | None:
    """The device's registration state, None when it has none."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["registration", "show", registration_id, "--json", *dps.server.cli_args()])
    return json.loads(out.getvalue()) if code == 0 else None


def group_members(dps: Dps, group_id: str) -> set[str]:
    return {
        s["registrationId"] for s in json.loads(dps.cli("registration", "list", group_id, "--json"))
    }


# --- devices that register -------------------------------------------------------------------


def test_x509_group_device_presenting_its_chain(
    dps: Dps, x509_group: str, websockets: bool
) -> None:
    device = name("py-group", websockets)
    chain = device_certificate(dps, device)  # leaf, intermediate, root: as `ca demo` writes it
    outcome = dps.register(device, websockets, cert=chain, key=dps.pki / f"{device}.key")
    assert outcome == assigned(device)
    assert device in group_members(dps, x509_group)


def test_self_signed_individual_enrollment(dps: Dps, websockets: bool) -> None:
    device = name("py-self", websockets)
    cert = self_signed(dps, device)
    dps.cli("enrollment", "create", device, "--cert", str(cert))
    outcome = dps.register(device, websockets, cert=cert, key=dps.pki / f"{device}.key")
    assert outcome == assigned(device)
    state = json.loads(dps.cli("registration", "show", device, "--json"))
    assert state["assignedHub"] == HUB and state["status"] == "assigned"


def test_symmetric_key_individual_enrollment(dps: Dps, websockets: bool) -> None:
    device = name("py-sym", websockets)
    dps.cli("enrollment", "create", device, "--symmetric-key")
    key = dps.cli("enrollment", "keys", device, "--primary").strip()
    assert dps.register(device, websockets, symmetricKey=key) == assigned(device)


def test_symmetric_key_group_device_with_a_derived_key(dps: Dps, websockets: bool) -> None:
    group = name("py-sym-group", websockets)
    dps.cli("enrollment-group", "create", group, "--symmetric-key")
    group_key = dps.cli("enrollment-group", "keys", group, "--primary").strip()
    device = name("py-sym-member", websockets)
    outcome = dps.register(device, websockets, symmetricKey=derive_device_key(group_key, device))
    assert outcome == assigned(device)
    assert group_members(dps, group) == {device}


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """A real local allocation webhook that answers WEBHOOK_HUB with a payload for the device."""
    with allocation_webhook(WEBHOOK_HUB, {"tier": "gold"}) as hook:
        yield hook


def test_payload_reaches_the_webhook_and_its_answer_comes_back(
    dps: Dps, websockets: bool, webhook: Webhook
) -> None:
    url, seen = webhook.url, webhook.seen
    group = name("py-custom", websockets)
    dps.cli(
        "enrollment-group", "create", group, "--symmetric-key", "--allocation-policy", "custom",
        "--webhook-url", url, "--hub", HUB, "--hub", WEBHOOK_HUB,
    )  # fmt: skip
    group_key = dps.cli("enrollment-group", "keys", group, "--primary").strip()
    device = name("py-custom-1", websockets)
    outcome = dps.register(
        device,
        websockets,
        symmetricKey=derive_device_key(group_key, device),
        payload={"modelId": "dtmi:devprov:test;1"},
    )
    assert outcome == assigned(device, hub=WEBHOOK_HUB, payload={"tier": "gold"})
    (request,) = seen
    assert request["deviceRuntimeContext"]["registrationId"] == device
    assert request["deviceRuntimeContext"]["payload"] == {"modelId": "dtmi:devprov:test;1"}
    assert set(request["linkedHubs"]) == {HUB, WEBHOOK_HUB}


# --- refusals ----------------------------------------------------------------------------------

# What the SDK raises when the server refuses CONNECT with return code 5, not authorized
# (docs/mqtt.md#connect-return-codes): paho's message for it is the cause.
REFUSED_CONNECT = {
    "ok": False,
    "error": "CredentialError",
    "message": "Credentials invalid, could not connect",
    "cause": "UnauthorizedError: Connection Refused: not authorised.",
}


def test_unknown_certificate_is_refused(dps: Dps, websockets: bool) -> None:
    device = name("py-unknown", websockets)
    cert = self_signed(dps, device)  # enrolled nowhere
    outcome = dps.register(device, websockets, cert=cert, key=dps.pki / f"{device}.key")
    assert outcome == REFUSED_CONNECT
    assert registration_of(dps, device) is None


def test_chain_to_an_unverified_ca_is_refused(dps: Dps, websockets: bool, tmp_path: Path) -> None:
    other = tmp_path / "other-pki"
    devprov("ca", "demo", str(other))
    ca_name = name("py-unverified-root", websockets)
    dps.cli("certificate", "upload", ca_name, "--cert", str(other / "root.pem"))  # not proven
    group = name("py-unverified-group", websockets)
    dps.cli("enrollment-group", "create", group, "--ca-name", ca_name)
    device = name("py-unverified-1", websockets)
    chain = device_certificate(dps, device, pki=other)
    outcome = dps.register(device, websockets, cert=chain, key=other / f"{device}.key")
    assert outcome == REFUSED_CONNECT
    assert group_members(dps, group) == set()


def test_disabled_enrollment_is_reported(dps: Dps, websockets: bool) -> None:
    device = name("py-disabled", websockets)
    dps.cli("enrollment", "create", device, "--symmetric-key", "--disabled")
    key = dps.cli("enrollment", "keys", device, "--primary").strip()
    outcome = dps.register(device, websockets, symmetricKey=key)
    # The device authenticates; the operation ends with DPS's status "disabled", which the SDK
    # knows only as an unexpected status.
    assert outcome == {
        "ok": False,
        "error": "ClientError",
        "message": "Unexpected failure",
        "cause": "ServiceError: Query Status Operation encountered an invalid registration "
        "status disabled with a status code of 200",
    }
    state = json.loads(dps.cli("registration", "show", device, "--json"))
    assert state["status"] == "disabled" and "assignedHub" not in state


def test_wrong_symmetric_key_is_refused(dps: Dps, websockets: bool) -> None:
    device = name("py-wrong-key", websockets)
    dps.cli("enrollment", "create", device, "--symmetric-key")
    secondary = dps.cli("enrollment", "keys", device, "--secondary").strip()
    wrong = derive_device_key(secondary, device)  # a well-formed key, not the device's
    assert dps.register(device, websockets, symmetricKey=wrong) == REFUSED_CONNECT
