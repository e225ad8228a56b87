"""Microsoft's Node provisioning service SDK (azure-iot-provisioning-service 1.11.2) against a
real devprov server over TLS: individual enrollments and enrollment groups with DPS's etag rules,
queries paged with continuation, a bulk operation with a bad item, registration states after a
device registered, and a symmetric-key group read and written back, keeping its keys.

The SDK runs in a child ``node`` process (``tests/interop/node/service.js``) with the packages
pinned by ``tests/interop/node/package-lock.json``. The client is the one
``ProvisioningServiceClient.fromConnectionString`` builds from what ``devprov info`` prints for a
server on port 443 (``HostName=localhost``, the policy and its key); the SDK always connects to
443, so a test-only ``https.Agent`` moves it to the test server's port.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from devprov.cli.main import main
from devprov.core.sas import derive_device_key
from tests.interop.nodejs import NODE_DIR, run_driver
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.interop

DRIVER = NODE_DIR / "service.js"
HUB = "node-svc-hub.example.net"
KEY_BYTES = 32  # what devprov generates


def symmetric_key(seed: str) -> str:
    return base64.b64encode(seed.encode().ljust(32, b"k")[:32]).decode()


@dataclass(frozen=True)
class NodeService:
    """Calls the Node service SDK's ProvisioningServiceClient methods, one driver run per batch."""

    node: str
    server: ServerProcess
    policy: str
    key: str

    def calls(self, *calls: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Each call is ``(method, *args)``; returns one outcome per call, in order."""
        args = {
            "host": "localhost",
            "port": self.server.port,
            "ca": str(self.server.ca_file),
            "policy": self.policy,
            "key": self.key,
            "calls": [{"method": method, "args": list(rest)} for method, *rest in calls],
        }
        run = run_driver(self.node, DRIVER, args)
        line = run.line
        assert run.returncode == 0 and "results" in line, (run.returncode, line, run.stderr)
        results: list[dict[str, Any]] = line["results"]
        assert len(results) == len(calls)
        return results

    def call(self, method: str, *args: Any) -> dict[str, Any]:
        (result,) = self.calls((method, *args))
        return result

    def ok(self, method: str, *args: Any) -> Any:
        outcome = self.call(method, *args)
        assert outcome["ok"], outcome
        return outcome.get("result")


def refused(outcome: dict[str, Any], status: int) -> dict[str, Any]:
    """The SDK's error for a refusal, with DPS's error body."""
    assert not outcome["ok"], outcome
    assert outcome["statusCode"] == status, outcome
    body: dict[str, Any] = outcome["responseBody"]
    assert body["errorCode"] // 1000 == status and body["trackingId"] and body["message"]
    return body


def cli(server: ServerProcess, *argv: str) -> tuple[int, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([*argv, *server.cli_args(), "--json"])
    text = out.getvalue().strip()
    return code, json.loads(text) if text else None


@pytest.fixture(scope="module")
def service(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeService]:
    with running_server(tmp_path_factory.mktemp("node-svc") / "data") as server:
        assert cli(server, "hub", "add", HUB)[0] == 0
        code, info = cli(server, "info")
        assert code == 0
        (facts,) = info["services"]
        # The key and policy come from devprov info; its connection string names the port
        # because the test server is not on 443 (tests/cli/test_admin.py shows the 443 form).
        assert facts["connectionString"] == (
            f"HostName=localhost:{server.port};SharedAccessKeyName={facts['policy']};"
            f"SharedAccessKey={facts['primaryKey']}"
        )
        yield NodeService(node, server, facts["policy"], facts["primaryKey"])


def register(server: ServerProcess, registration_id: str, device_key: str) -> dict[str, Any]:
    """A device of a symmetric-key group registers with its derived key over the device API."""
    argv = ("device", "register", registration_id, "--symmetric-key", device_key)
    code, operation = cli(server, *argv)
    assert code == 0, operation
    state: dict[str, Any] = operation["registrationState"]
    assert state["status"] == "assigned" and state["assignedHub"] == HUB
    return state


def refused_registration(server: ServerProcess, registration_id: str, device_key: str) -> None:
    argv = ("device", "register", registration_id, "--symmetric-key", device_key)
    assert cli(server, *argv)[0] == 4  # authentication failed


# --- individual enrollments ----------------------------------------------------------------------


def test_individual_enrollment_create_get_update_delete(service: NodeService) -> None:
    primary, secondary = symmetric_key("node-enr-p"), symmetric_key("node-enr-s")
    body = {
        "registrationId": "node-enr",
        "deviceId": "node-enr-device",
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
        },
    }
    created, got, mechanism, again = service.calls(
        ("createOrUpdateIndividualEnrollment", body),
        ("getIndividualEnrollment", "node-enr"),
        ("getIndividualEnrollmentAttestationMechanism", "node-enr"),
        ("createOrUpdateIndividualEnrollment", body),  # no etag: a second create
    )
    assert created["ok"] and created["statusCode"] == 200
    record = created["result"]
    assert record["registrationId"] == "node-enr" and record["deviceId"] == "node-enr-device"
    assert record["attestation"]["symmetricKey"] == body["attestation"]["symmetricKey"]
    assert got["ok"] and got["result"]["etag"] == record["etag"]
    assert got["result"]["attestation"] == {"type": "symmetricKey"}  # a GET shows no keys
    assert mechanism["result"]["symmetricKey"] == body["attestation"]["symmetricKey"]
    refused(again, 409)

    # The SDK copies the record's etag into If-Match: an update of what was read.
    fetched = got["result"]
    fetched["provisioningStatus"] = "disabled"
    updated = service.ok("createOrUpdateIndividualEnrollment", fetched)
    assert updated["provisioningStatus"] == "disabled" and updated["etag"] != fetched["etag"]
    assert updated["attestation"]["symmetricKey"] == body["attestation"]["symmetricKey"]
    stale = service.call("createOrUpdateIndividualEnrollment", fetched)  # the old etag
    refused(stale, 412)

    gone, missing = service.calls(
        ("deleteIndividualEnrollment", "node-enr", updated["etag"]),
        ("getIndividualEnrollment", "node-enr"),
    )
    assert gone["ok"]
    assert refused(missing, 404)["errorCode"] == 404201


# --- enrollment groups ---------------------------------------------------------------------------


def test_enrollment_group_etags(service: NodeService) -> None:
    group = {"enrollmentGroupId": "node-grp", "attestation": {"type": "symmetricKey"}}
    created = service.ok("createOrUpdateEnrollmentGroup", group)
    keys = created["attestation"]["symmetricKey"]  # generated, and shown by the PUT's answer
    assert len(base64.b64decode(keys["primaryKey"])) == KEY_BYTES

    exists, got = service.calls(
        ("createOrUpdateEnrollmentGroup", group), ("getEnrollmentGroup", "node-grp")
    )
    refused(exists, 409)
    assert got["result"]["etag"] == created["etag"]  # the refused create changed nothing

    updated = service.ok(
        "createOrUpdateEnrollmentGroup",
        {**group, "etag": created["etag"], "iotHubs": [HUB], "allocationPolicy": "static"},
    )
    assert updated["etag"] != created["etag"] and updated["iotHubs"] == [HUB]
    assert updated["attestation"]["symmetricKey"] == keys  # {} written back keeps the keys
    stale_update, stale_delete, still = service.calls(
        ("createOrUpdateEnrollmentGroup", {**group, "etag": created["etag"]}),
        ("deleteEnrollmentGroup", "node-grp", created["etag"]),
        ("getEnrollmentGroup", "node-grp"),
    )
    refused(stale_update, 412)
    refused(stale_delete, 412)
    assert still["result"]["etag"] == updated["etag"]
    assert still["result"]["allocationPolicy"] == "static"

    deleted, missing = service.calls(
        ("deleteEnrollmentGroup", "node-grp", updated["etag"]),
        ("getEnrollmentGroup", "node-grp"),
    )
    assert deleted["ok"]
    assert refused(missing, 404)["errorCode"] == 404202


def test_queries_page_with_continuation(service: NodeService) -> None:
    ids = [f"node-page-{n}" for n in range(5)]
    sym = {"attestation": {"type": "symmetricKey"}}
    created = service.calls(
        *[("createOrUpdateEnrollmentGroup", {"enrollmentGroupId": i, **sym}) for i in ids],
        *[("createOrUpdateIndividualEnrollment", {"registrationId": i, **sym}) for i in ids],
    )
    assert all(outcome["ok"] for outcome in created), created

    groups, enrollments, wrong = service.calls(
        ("createEnrollmentGroupQuery", {"query": "*"}, 2),
        ("createIndividualEnrollmentQuery", {"query": "SELECT * FROM enrollments"}, 2),
        ("createIndividualEnrollmentQuery", {"query": "SELECT * FROM enrollments WHERE x = 1"}, 2),
    )
    for outcome, id_field, item_type in (
        (groups, "enrollmentGroupId", "EnrollmentGroup"),
        (enrollments, "registrationId", "Enrollment"),
    ):
        assert outcome["ok"], outcome
        pages = outcome["pages"]
        assert len(pages) >= 3 and all(len(page["items"]) <= 2 for page in pages)
        assert all(page["itemType"] == item_type for page in pages)
        assert all(page["continuation"] for page in pages[:-1]) and not pages[-1]["continuation"]
        listed = [item[id_field] for page in pages for item in page["items"]]
        assert set(ids) <= set(listed) and len(listed) == len(set(listed))
        assert all(
            item["attestation"] == {"type": "symmetricKey"} for p in pages for item in p["items"]
        )
    body = refused(wrong, 400)
    assert body["errorCode"] == 400402 and "WHERE x = 1" in body["message"]


def test_bulk_create_reports_the_bad_item(service: NodeService) -> None:
    good = [
        {"registrationId": f"node-bulk-{n}", "attestation": {"type": "symmetricKey"}}
        for n in range(2)
    ]
    bad = {
        "registrationId": "node-bulk-bad",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "not base64!"}},
    }
    result = service.ok(
        "runBulkEnrollmentOperation", {"mode": "create", "enrollments": [good[0], bad, good[1]]}
    )
    assert result["isSuccessful"] is False
    (error,) = result["errors"]
    assert error["registrationId"] == "node-bulk-bad" and error["errorCode"] // 1000 == 400
    assert "primaryKey" in error["errorStatus"]
    first, second, missing = service.calls(
        ("getIndividualEnrollment", "node-bulk-0"),
        ("getIndividualEnrollment", "node-bulk-1"),
        ("getIndividualEnrollment", "node-bulk-bad"),
    )
    assert first["ok"] and second["ok"]
    refused(missing, 404)


# --- registration states -------------------------------------------------------------------------


def test_registration_state_get_query_delete(service: NodeService) -> None:
    created = service.ok(
        "createOrUpdateEnrollmentGroup",
        {"enrollmentGroupId": "node-reg-grp", "attestation": {"type": "symmetricKey"}},
    )
    group_key = created["attestation"]["symmetricKey"]["primaryKey"]
    registered = register(service.server, "node-reg-1", derive_device_key(group_key, "node-reg-1"))

    state, query, wrong_query = service.calls(
        ("getDeviceRegistrationState", "node-reg-1"),
        ("createEnrollmentGroupDeviceRegistrationStateQuery", {"query": "*"}, "node-reg-grp", 1),
        (
            "createEnrollmentGroupDeviceRegistrationStateQuery",
            {"query": "SELECT * FROM enrollments"},
            "node-reg-grp",
        ),
    )
    assert state["ok"] and state["result"]["etag"] == registered["etag"]
    assert state["result"]["assignedHub"] == HUB and state["result"]["deviceId"] == "node-reg-1"
    assert [item["registrationId"] for page in query["pages"] for item in page["items"]] == [
        "node-reg-1"
    ]
    assert query["pages"][0]["itemType"] == "DeviceRegistration"
    assert "deviceRegistrations" in refused(wrong_query, 400)["message"]

    stale, kept = service.calls(
        ("deleteDeviceRegistrationState", "node-reg-1", "AAAAAAAAAAA="),
        ("getDeviceRegistrationState", "node-reg-1"),
    )
    refused(stale, 412)
    assert kept["ok"] and kept["result"]["etag"] == registered["etag"]
    deleted, missing = service.calls(
        ("deleteDeviceRegistrationState", "node-reg-1", registered["etag"]),
        ("getDeviceRegistrationState", "node-reg-1"),
    )
    assert deleted["ok"]
    refused(missing, 404)


# --- the symmetric-key read-modify-write ---------------------------------------------------------


def test_a_group_read_and_written_back_keeps_its_keys(service: NodeService) -> None:
    created = service.ok(
        "createOrUpdateEnrollmentGroup",
        {"enrollmentGroupId": "node-rmw", "attestation": {"type": "symmetricKey"}},
    )
    keys = created["attestation"]["symmetricKey"]
    device_key = derive_device_key(keys["primaryKey"], "node-rmw-1")
    register(service.server, "node-rmw-1", device_key)

    fetched = service.ok("getEnrollmentGroup", "node-rmw")
    assert fetched["attestation"] == {"type": "symmetricKey"}  # no keys to write back
    fetched["initialTwin"] = {"tags": {"site": "lab"}, "properties": {"desired": {}}}
    written = service.ok("createOrUpdateEnrollmentGroup", fetched)  # If-Match: fetched etag
    assert written["initialTwin"]["tags"] == {"site": "lab"}
    assert written["attestation"]["symmetricKey"] == keys
    assert service.ok("getEnrollmentGroupAttestationMechanism", "node-rmw")["symmetricKey"] == keys

    # Every device of the group still gets in with the key it had; a wrong key does not.
    register(service.server, "node-rmw-1", device_key)
    register(service.server, "node-rmw-2", derive_device_key(keys["secondaryKey"], "node-rmw-2"))
    refused_registration(service.server, "node-rmw-3", symmetric_key("someone else's"))
