"""The device API over real mutual TLS against a ``devprov serve`` process: X.509 chains as
devices present them, symmetric-key tokens, DPS's answers, and trust that changes at run time
without a restart."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.core.sas import build_sas_token, derive_device_key
from tests.server import ServerProcess, running_server
from tests.webhook import allocation_webhook

pytestmark = pytest.mark.e2e

API = "api-version=2019-03-31"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("device") / "data") as server:
        assert main(["hub", "add", "hub-a.azure-devices.net", *server.cli_args()]) == 0
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("device-pki")
    assert main(["ca", "demo", str(directory)]) == 0
    return directory


def scope(server: ServerProcess) -> str:
    c = open_container(server.data_dir, database=server.database)
    try:
        return c.directory.get("default").id_scope
    finally:
        c.engine.dispose()


def service_client(server: ServerProcess) -> httpx.Client:
    c = open_container(server.data_dir, database=server.database)
    key = c.directory.policies("default")[0].primary_key
    c.engine.dispose()
    token = build_sas_token(
        key, f"localhost:{server.port}", int(time.time()) + 600, "provisioningserviceowner"
    )
    return httpx.Client(
        base_url=server.url,
        verify=ssl.create_default_context(cafile=str(server.ca_file)),
        headers={"Authorization": token},
    )


def device_client(
    server: ServerProcess, cert: Path | None = None, key: Path | None = None
) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return httpx.Client(base_url=server.url, verify=context)


def register(
    client: httpx.Client, id_scope: str, rid: str, *, poll: bool = True, **kw
) -> tuple[httpx.Response, dict | None]:
    """A register's answer and the registration's outcome (None when it is refused).

    Decided during the call, the register is answered 200 with the outcome, and a poll of its
    operation (which a device may send anyway) reads the same answer; with ``--always-poll`` it
    is answered 202 ``assigning`` and the outcome is the poll's. ``poll=False`` leaves out the
    poll of a decided register, where another register of the same device may come in between:
    a poll shows the registration's latest state."""
    response = client.put(
        f"/{id_scope}/registrations/{rid}/register?{API}", json={"registrationId": rid}, **kw
    )
    if response.status_code not in (200, 202):
        return response, None
    if response.status_code == 200 and not poll:
        assert response.json()["status"] != "assigning"
        return response, response.json()
    operation = response.json()["operationId"]
    polled = client.get(f"/{id_scope}/registrations/{rid}/operations/{operation}?{API}", **kw)
    assert polled.status_code == 200, polled.text
    if response.status_code == 200:
        assert response.json()["status"] != "assigning"
        assert polled.json() == response.json()
    else:
        assert response.json() == {"operationId": operation, "status": "assigning"}
    return response, polled.json()


def logged(server: ServerProcess, text: str, *, wait: float = 5.0) -> int:
    """How many lines of the server's output contain ``text``, once one does (the output is read
    by another thread, a moment after the answer arrives)."""
    deadline = time.monotonic() + wait
    while not any(text in line for line in server.output) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sum(text in line for line in server.output)


def test_trust_changes_take_effect_without_restart(server: ServerProcess, pki: Path) -> None:
    id_scope = scope(server)
    with service_client(server) as svc:
        assert (
            main(
                [
                    "certificate",
                    "upload",
                    "runtime-root",
                    "--cert",
                    str(pki / "root.pem"),
                    *server.cli_args(),
                ]
            )
            == 0
        )
        group = {
            "enrollmentGroupId": "runtime",
            "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "runtime-root"}}},
        }
        assert svc.put("/enrollmentGroups/runtime", json=group).status_code == 200
        with device_client(
            server, pki / "my-device-full-chain.pem", pki / "my-device.key"
        ) as device:
            refused, _ = register(device, id_scope, "my-device")
            assert refused.status_code == 401
            assert (
                refused.json()["errorCode"] == 401002
                and refused.json()["message"] == "Invalid certificate"
            )
            # The device learns nothing more; the operator reads why, once in the log and in
            # the audit trail, as the group's CA, not as a path-building error.
            reason = "enrollment group 'runtime': CA 'runtime-root' is not verified"
            assert logged(server, reason) == 1, "".join(server.output[-5:])
            audit = open_container(server.data_dir, database=server.database)
            try:
                events = audit.audit.events(registration_id="my-device")
            finally:
                audit.engine.dispose()
            assert [e.reason for e in events if e.action == "register"][-1].startswith(reason)
            assert (
                main(
                    [
                        "certificate",
                        "prove",
                        "runtime-root",
                        "--cert",
                        str(pki / "root.pem"),
                        "--key",
                        str(pki / "root.key"),
                        *server.cli_args(),
                    ]
                )
                == 0
            )
        with device_client(
            server, pki / "my-device-full-chain.pem", pki / "my-device.key"
        ) as device:
            accepted, result = register(device, id_scope, "my-device")
            # Decided during the call: the outcome at once, nothing to wait for.
            assert accepted.status_code == 200 and "retry-after" not in accepted.headers
            assert accepted.json()["operationId"] and accepted.json() == result
            assert result["status"] == "assigned"
            state = result["registrationState"]
            assert (
                state["assignedHub"] == "hub-a.azure-devices.net"
                and state["deviceId"] == "my-device"
            )
            assert state["x509"]["enrollmentGroupId"] == "runtime"
            assert (
                state["x509"]["signingCertificateInfo"]["subjectName"] == "CN=devprov Test Root CA"
            )
            etag = svc.get("/enrollmentGroups/runtime").json()["etag"]
            disabled = {**group, "provisioningStatus": "disabled"}
            assert (
                svc.put(
                    "/enrollmentGroups/runtime", json=disabled, headers={"If-Match": etag}
                ).status_code
                == 200
            )
        with device_client(
            server, pki / "my-device-full-chain.pem", pki / "my-device.key"
        ) as device:
            answered, result = register(device, id_scope, "my-device")
            assert answered.status_code == 200 and result["status"] == "disabled"
            lookup = device.post(
                f"/{id_scope}/registrations/my-device?{API}", json={"registrationId": "my-device"}
            )
            assert lookup.status_code == 200 and lookup.json()["status"] == "disabled"
        listed = svc.post("/registrations/runtime/query").json()
        assert [s["registrationId"] for s in listed] == ["my-device"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            ("my-device.pem", "my-device.key"), 401002, id="fail/leaf-without-intermediate"
        ),
        pytest.param((None, None), 401000, id="fail/no-certificate-no-token"),
    ],
)
def test_x509_rejects(server: ServerProcess, pki: Path, files, expected: int) -> None:
    cert, key = files
    with device_client(server, pki / cert if cert else None, pki / key if key else None) as device:
        response, _ = register(device, scope(server), "my-device")
    assert response.status_code == 401 and response.json()["errorCode"] == expected


def test_self_signed_unknown_device(server: ServerProcess, tmp_path: Path) -> None:
    assert main(["ca", "device", "stranger", "--self-signed", "--dir", str(tmp_path)]) == 0
    with device_client(server, tmp_path / "stranger.pem", tmp_path / "stranger.key") as device:
        response, _ = register(device, scope(server), "stranger")
    assert response.status_code == 401 and response.json()["message"] == "Invalid certificate"


def test_symmetric_key_device(server: ServerProcess) -> None:
    id_scope = scope(server)
    with service_client(server) as svc:
        assert (
            svc.put(
                "/enrollmentGroups/sym",
                json={"enrollmentGroupId": "sym", "attestation": {"type": "symmetricKey"}},
            ).status_code
            == 200
        )
        group_key = svc.post("/enrollmentGroups/sym/attestationmechanism").json()["symmetricKey"][
            "primaryKey"
        ]
    device_key = derive_device_key(group_key, "sensor-1")
    resource = f"{id_scope}/registrations/sensor-1"
    good = build_sas_token(
        device_key, resource, int(time.time()) + 600
    )  # Python SDK style: encoded sr, no skn
    node_style = build_sas_token(
        device_key, resource, int(time.time()) + 600, "registration", encode_resource=False
    )
    wrong = build_sas_token(group_key, resource, int(time.time()) + 600)
    with device_client(server) as device:
        for token in (good, node_style):
            response, result = register(
                device, id_scope, "sensor-1", headers={"Authorization": token}
            )
            assert response.status_code == 200 and result["status"] == "assigned"
            assert result["registrationState"]["symmetricKey"] == {"enrollmentGroupId": "sym"}
        refused, _ = register(device, id_scope, "sensor-1", headers={"Authorization": wrong})
        assert refused.status_code == 401 and refused.json()["message"] == "Unauthorized"
        other, _ = register(device, id_scope, "sensor-2", headers={"Authorization": good})
        assert other.status_code == 401


def test_bad_requests(server: ServerProcess, pki: Path) -> None:
    id_scope = scope(server)
    with device_client(server, pki / "my-device-full-chain.pem", pki / "my-device.key") as device:
        mismatch = device.put(
            f"/{id_scope}/registrations/my-device/register?{API}", json={"registrationId": "other"}
        )
        assert mismatch.status_code == 400 and set(mismatch.json()) == {
            "errorCode",
            "trackingId",
            "message",
            "timestampUtc",
        }
        tpm = device.put(
            f"/{id_scope}/registrations/my-device/register?{API}",
            json={"registrationId": "my-device", "tpm": {"endorsementKey": "x"}},
        )
        assert tpm.status_code == 400 and "TPM" in tpm.json()["message"]
        garbage = device.put(
            f"/{id_scope}/registrations/my-device/register?{API}",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert garbage.status_code == 400
        unknown = device.put(f"/0neFFFFFFFF/registrations/my-device/register?{API}", json={})
        assert unknown.status_code == 404
        big = device.put(
            f"/{id_scope}/registrations/my-device/register?{API}",
            content=b"{" + b" " * (97 * 1024) + b"}",
            headers={"Content-Type": "application/json"},
        )
        assert big.status_code == 413


def test_audit_trail_names_the_reason(server: ServerProcess, pki: Path, capsys) -> None:
    with device_client(server, pki / "my-device.pem", pki / "my-device.key") as device:
        register(device, scope(server), "my-device")
    capsys.readouterr()
    assert (
        main(["audit", "--registration", "my-device", "--limit", "1", "--json", *server.cli_args()])
        == 0
    )
    (event,) = json.loads(capsys.readouterr().out)
    assert event["outcome"] == "failed" and event["errorCode"] == "DeviceAttestationFailed"
    assert "does not validate" in event["reason"] or "no enrollment group" in event["reason"]


def test_custom_allocation_through_a_real_webhook(server: ServerProcess) -> None:
    with allocation_webhook("hub-b.azure-devices.net", {"tier": "gold"}) as webhook:
        assert main(["hub", "add", "hub-b.azure-devices.net", *server.cli_args()]) == 0
        id_scope = scope(server)
        with service_client(server) as svc:
            group = {
                "enrollmentGroupId": "custom",
                "attestation": {"type": "symmetricKey"},
                "allocationPolicy": "custom",
                "customAllocationDefinition": {
                    "webhookUrl": webhook.url,
                    "apiVersion": "2021-10-01",
                },
            }
            assert svc.put("/enrollmentGroups/custom", json=group).status_code == 200
            key = svc.post("/enrollmentGroups/custom/attestationmechanism").json()["symmetricKey"][
                "primaryKey"
            ]
        token = build_sas_token(
            derive_device_key(key, "custom-1"),
            f"{id_scope}/registrations/custom-1",
            int(time.time()) + 600,
        )
        with device_client(server) as device:
            response = device.put(
                f"/{id_scope}/registrations/custom-1/register?{API}",
                json={"registrationId": "custom-1", "payload": {"model": "m1"}},
                headers={"Authorization": token},
            )
            operation = response.json()["operationId"]
            result = device.get(
                f"/{id_scope}/registrations/custom-1/operations/{operation}?{API}",
                headers={"Authorization": token},
            ).json()
        assert result["status"] == "assigned"
        assert result["registrationState"]["assignedHub"] == "hub-b.azure-devices.net"
        assert result["registrationState"]["payload"] == {"tier": "gold"}
        (request,) = webhook.seen
        assert request["deviceRuntimeContext"]["registrationId"] == "custom-1"
        assert request["deviceRuntimeContext"]["payload"] == {"model": "m1"}
        assert "hub-b.azure-devices.net" in request["linkedHubs"]
