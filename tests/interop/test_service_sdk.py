"""Microsoft's DPS service SDK (azure-iot-deviceprovisioning 1.0.0b1) against a real devprov
server over TLS: enrollment groups, individual enrollments, bulk operations and registration
states, each call as an operator's script would make it
(docs/sdk-clients.md#python-service-sdk-azure-iot-deviceprovisioning), with the negative
controls (wrong key, a policy without EnrollmentWrite, stale etags).

Devices register over HTTPS with httpx here (a client certificate, or a SAS token signed with
the device key), so the registration-state calls have something to read.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.iot.deviceprovisioning import DeviceProvisioningClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.core.sas import build_sas_token, derive_device_key
from tests import factory as f
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.interop

HUB = "sdk-hub.example.net"
ROOT_NAME = "sdk-root"  # the verified root that caReferences name
# what both device SDKs send (docs/sdk-clients.md#python-device-mqtt-connect-and-sas-token,
# docs/sdk-clients.md#node-device-http-transport)
DEVICE_API_VERSION = "2019-03-31"
GENERATED_KEY_BYTES = (32, 64)  # DPS generates 256- or 512-bit keys; either is a valid answer


@dataclass(frozen=True)
class Sent:
    """One request the SDK made, and the answer's status and headers."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes | None
    status: int
    response_headers: dict[str, str]


class Recorder(RequestsTransport):
    """The SDK's own transport, keeping every exchange so tests can assert on the wire.

    The client builds its pipeline without azure-core's CustomHookPolicy, so
    ``raw_response_hook`` is ignored; a transport is the seam it does take.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exchanges: list[Sent] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        response = super().send(request, **kwargs)
        url = urlsplit(request.url)
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        self.exchanges.append(
            Sent(
                request.method,
                url.path,
                url.query,
                dict(request.headers),
                body if isinstance(body, bytes) else None,
                response.status_code,
                dict(response.headers),
            )
        )
        return response

    def clear(self) -> None:
        self.exchanges.clear()


@dataclass(frozen=True)
class Dps:
    server: ServerProcess
    id_scope: str
    connection_string: str
    pki: Path

    def client(
        self, connection_string: str | None = None, **kwargs: Any
    ) -> DeviceProvisioningClient:
        return DeviceProvisioningClient.from_connection_string(
            connection_string or self.connection_string,
            connection_verify=str(self.server.ca_file),
            # azure-core would otherwise retry 5xx answers
            # (docs/sdk-clients.md#management-sdk-requests-etags-and-bodies)
            retry_total=0,
            **kwargs,
        )


def _info(server: ServerProcess) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["info", *server.cli_args(), "--json"]) == 0
    facts: dict[str, Any] = json.loads(out.getvalue())
    return facts


@pytest.fixture(scope="module")
def dps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dps]:
    pki = tmp_path_factory.mktemp("sdk-pki")
    with running_server(tmp_path_factory.mktemp("sdk") / "data") as server:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["ca", "demo", str(pki)]) == 0
            assert (
                main(
                    [
                        "certificate",
                        "prove",
                        ROOT_NAME,
                        "--cert",
                        str(pki / "root.pem"),
                        "--key",
                        str(pki / "root.key"),
                        *server.cli_args(),
                    ]
                )
                == 0
            )
            assert main(["hub", "add", HUB, *server.cli_args()]) == 0
        (service,) = _info(server)["services"]
        yield Dps(server, service["idScope"], service["connectionString"], pki)


@pytest.fixture
def recorder(dps: Dps) -> Recorder:
    return Recorder(connection_verify=str(dps.server.ca_file))


@pytest.fixture
def client(dps: Dps, recorder: Recorder) -> DeviceProvisioningClient:
    return dps.client(transport=recorder)


def symmetric_group(group_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "enrollmentGroupId": group_id,
        "attestation": {"type": "symmetricKey", "symmetricKey": {}},
        **extra,
    }


def symmetric_enrollment(registration_id: str, **extra: Any) -> dict[str, Any]:
    raw = registration_id.encode().ljust(32, b"k")
    primary, secondary = (base64.b64encode(k).decode() for k in (raw, raw[::-1]))
    return {
        "registrationId": registration_id,
        "attestation": {
            "type": "symmetricKey",
            "symmetricKey": {"primaryKey": primary, "secondaryKey": secondary},
        },
        **extra,
    }


def self_signed_device(dps: Dps, name: str) -> tuple[Path, Path]:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["ca", "device", name, "--self-signed", "--dir", str(dps.pki)]) == 0
    return dps.pki / f"{name}.pem", dps.pki / f"{name}.key"


def sha1_thumbprint(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA1()).hex().upper()


def status_of(caught: pytest.ExceptionInfo[HttpResponseError]) -> int | None:
    return caught.value.status_code


# --- a device registering over HTTPS ------------------------------------------------------------


def register_device(
    dps: Dps,
    registration_id: str,
    *,
    device_key: str | None = None,
    cert_chain: Path | None = None,
    key: Path | None = None,
) -> dict[str, Any]:
    """PUT register, then poll the operation while it is assigning, as a device SDK does
    (docs/sdk-clients.md#node-device-http-transport); devprov answers the outcome at once."""
    context = ssl.create_default_context(cafile=str(dps.server.ca_file))
    headers = {}
    if cert_chain is not None:
        context.load_cert_chain(cert_chain, key)
    if device_key is not None:
        resource = f"{dps.id_scope}/registrations/{registration_id}"
        headers["Authorization"] = build_sas_token(device_key, resource, int(time.time()) + 3600)
    base = f"/{dps.id_scope}/registrations/{registration_id}"
    params = {"api-version": DEVICE_API_VERSION}
    with httpx.Client(base_url=dps.server.url, verify=context, headers=headers, timeout=30) as http:
        answer = http.put(
            f"{base}/register", params=params, json={"registrationId": registration_id}
        )
        assert answer.status_code in (200, 202), answer.text
        body: dict[str, Any] = answer.json()
        operation = body["operationId"]
        for _ in range(10):
            if body["status"] != "assigning":
                return body
            time.sleep(float(answer.headers.get("retry-after", "1")))
            answer = http.get(f"{base}/operations/{operation}", params=params)
            assert answer.status_code in (200, 202), answer.text
            body = answer.json()
    raise AssertionError(f"{registration_id} was still assigning after 10 polls")


# --- enrollment groups --------------------------------------------------------------------------


def test_symmetric_group_gets_generated_keys(
    client: DeviceProvisioningClient, recorder: Recorder
) -> None:
    created = client.enrollment_group.create_or_update(
        id="sdk-sym-group", enrollment_group=symmetric_group("sdk-sym-group")
    )
    assert created["enrollmentGroupId"] == "sdk-sym-group"
    assert created["attestation"]["type"] == "symmetricKey"
    assert created["provisioningStatus"] == "enabled" and created["etag"]
    assert created["createdDateTimeUtc"] == created["lastUpdatedDateTimeUtc"]

    got = client.enrollment_group.get(id="sdk-sym-group")
    assert got["etag"] == created["etag"]
    assert got["createdDateTimeUtc"] == created["createdDateTimeUtc"]

    mechanism = client.enrollment_group.get_attestation_mechanism(id="sdk-sym-group")
    keys = mechanism["symmetricKey"]
    primary, secondary = keys["primaryKey"], keys["secondaryKey"]
    assert primary != secondary
    for key in (primary, secondary):
        assert len(base64.b64decode(key, validate=True)) in GENERATED_KEY_BYTES
    # The keys stay put: a second read returns the same ones.
    again = client.enrollment_group.get_attestation_mechanism(id="sdk-sym-group")
    assert again["symmetricKey"] == keys

    put, get, mech, _ = recorder.exchanges
    assert (put.method, put.path, put.status) == ("PUT", "/enrollmentGroups/sdk-sym-group", 200)
    assert "api-version=2021-10-01" in put.query and "If-Match" not in put.headers
    assert put.headers["Authorization"].startswith("SharedAccessSignature sr=localhost%3A")
    assert (get.method, get.status) == ("GET", 200)
    assert (mech.method, mech.path) == (
        "POST",
        "/enrollmentGroups/sdk-sym-group/attestationmechanism",
    )


def test_put_answers_with_the_keys_get_and_query_do_not(
    dps: Dps, client: DeviceProvisioningClient, recorder: Recorder
) -> None:
    created = client.enrollment_group.create_or_update(
        id="sdk-keys-shown", enrollment_group=symmetric_group("sdk-keys-shown")
    )
    generated = created["attestation"]["symmetricKey"]  # as Azure's answer to a PUT
    mechanism = client.enrollment_group.get_attestation_mechanism(id="sdk-keys-shown")
    assert generated == mechanism["symmetricKey"]
    got = client.enrollment_group.get(id="sdk-keys-shown")
    assert got["attestation"] == {"type": "symmetricKey"}

    # The query azure-iot-deviceprovisioning's own recorded tests send, answered as Azure does.
    recorder.clear()
    listed = {
        g["enrollmentGroupId"]: g for g in client.enrollment_group.query({"query": "SELECT *"})
    }
    assert listed["sdk-keys-shown"]["attestation"] == {"type": "symmetricKey"}
    assert json.loads(recorder.exchanges[0].body or b"") == {"query": "SELECT *"}
    assert recorder.exchanges[0].status == 200

    # The same over raw HTTP: the answer to a PUT of supplied keys carries them, a GET none.
    body = symmetric_enrollment("raw-keys")
    host = dps.connection_string.split(";", 1)[0].removeprefix("HostName=")
    key = dps.connection_string.rsplit("SharedAccessKey=", 1)[1]
    headers = {
        "Authorization": build_sas_token(
            key, host, int(time.time()) + 600, "provisioningserviceowner"
        )
    }
    with httpx.Client(
        base_url=dps.server.url,
        verify=ssl.create_default_context(cafile=str(dps.server.ca_file)),
        headers=headers,
        timeout=30,
    ) as http:
        put = http.put("/enrollments/raw-keys?api-version=2021-10-01", json=body)
        assert put.status_code == 200, put.text
        assert put.json()["attestation"] == body["attestation"]
        get = http.get("/enrollments/raw-keys?api-version=2021-10-01")
        assert get.json()["attestation"] == {"type": "symmetricKey"}
        http.delete("/enrollments/raw-keys")


def test_a_group_written_back_keeps_its_keys_and_its_devices(
    dps: Dps, client: DeviceProvisioningClient
) -> None:
    """The SDKs' usual read-modify-write: GET the group, change it, PUT it back with its etag.
    The GET carries no keys, so the PUT sends none; the group keeps its keys and its devices."""
    created = client.enrollment_group.create_or_update(
        id="sdk-rmw", enrollment_group=symmetric_group("sdk-rmw", iotHubs=[HUB])
    )
    group_key = created["attestation"]["symmetricKey"]["primaryKey"]
    register = ["device", "register", "sdk-rmw-1", "--group-key", group_key]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*register, *dps.server.cli_args()]) == 0

    fetched = client.enrollment_group.get(id="sdk-rmw")
    fetched["initialTwin"] = {"tags": {"floor": 2}, "properties": {"desired": {}}}
    written = client.enrollment_group.create_or_update(
        id="sdk-rmw", enrollment_group=fetched, if_match=fetched["etag"]
    )
    assert written["initialTwin"]["tags"] == {"floor": 2}
    assert written["attestation"]["symmetricKey"] == created["attestation"]["symmetricKey"]
    mechanism = client.enrollment_group.get_attestation_mechanism(id="sdk-rmw")
    assert mechanism["symmetricKey"] == created["attestation"]["symmetricKey"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*register, *dps.server.cli_args()]) == 0  # the same device, the same key
    state = client.device_registration_state.get(id="sdk-rmw-1")
    assert state["status"] == "assigned" and state["assignedHub"] == HUB


def test_x509_group_references_a_verified_root(client: DeviceProvisioningClient) -> None:
    created = client.enrollment_group.create_or_update(
        id="sdk-ca-ref",
        enrollment_group={
            "enrollmentGroupId": "sdk-ca-ref",
            "attestation": {"type": "x509", "x509": {"caReferences": {"primary": ROOT_NAME}}},
            "iotHubs": [HUB],
            "allocationPolicy": "static",
        },
    )
    assert created["attestation"]["x509"]["caReferences"]["primary"] == ROOT_NAME
    assert created["iotHubs"] == [HUB] and created["allocationPolicy"] == "static"
    mechanism = client.enrollment_group.get_attestation_mechanism(id="sdk-ca-ref")
    assert mechanism == {
        "type": "x509",
        "x509": {"caReferences": {"primary": ROOT_NAME}},
    }


def test_x509_group_refuses_an_unknown_ca_reference(client: DeviceProvisioningClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.enrollment_group.create_or_update(
            id="sdk-ca-missing",
            enrollment_group={
                "enrollmentGroupId": "sdk-ca-missing",
                "attestation": {
                    "type": "x509",
                    "x509": {"caReferences": {"primary": "no-such-certificate"}},
                },
            },
        )
    assert status_of(caught) == 400
    assert "no-such-certificate" in str(caught.value)
    with pytest.raises(ResourceNotFoundError):
        client.enrollment_group.get(id="sdk-ca-missing")


def test_x509_group_with_an_inline_signing_certificate(client: DeviceProvisioningClient) -> None:
    root = f.root("SDK Inline Root", now=datetime.now(UTC))
    created = client.enrollment_group.create_or_update(
        id="sdk-inline",
        enrollment_group={
            "enrollmentGroupId": "sdk-inline",
            "attestation": {
                "type": "x509",
                "x509": {"signingCertificates": {"primary": {"certificate": root.pem.decode()}}},
            },
        },
    )
    primary = created["attestation"]["x509"]["signingCertificates"]["primary"]
    assert "certificate" not in primary  # DPS returns the certificate's info, not the PEM
    info = primary["info"]
    assert info["subjectName"] == "CN=SDK Inline Root"
    assert info["issuerName"] == "CN=SDK Inline Root"
    assert info["sha1Thumbprint"] == sha1_thumbprint(root.pem)
    assert info["version"] == 3
    got = client.enrollment_group.get(id="sdk-inline")
    assert got["attestation"] == created["attestation"]


def test_group_query_pages_with_top(client: DeviceProvisioningClient, recorder: Recorder) -> None:
    wanted = {f"sdk-page-{n}" for n in range(5)}
    for group_id in sorted(wanted):
        client.enrollment_group.create_or_update(
            id=group_id, enrollment_group=symmetric_group(group_id)
        )
    recorder.clear()

    pages = [list(page) for page in client.enrollment_group.query({"query": "*"}, top=2).by_page()]
    ids = [item["enrollmentGroupId"] for page in pages for item in page]
    assert wanted <= set(ids)
    assert len(ids) == len(set(ids))  # no group twice across pages
    assert all(len(page) <= 2 for page in pages) and len(pages) >= 3

    queries = recorder.exchanges
    assert len(queries) == len(pages)
    assert all(q.method == "POST" and q.path == "/enrollmentGroups/query" for q in queries)
    assert all(q.headers["x-ms-max-item-count"] == "2" for q in queries)
    assert "x-ms-continuation" not in queries[0].headers
    for before, after in itertools.pairwise(queries):
        assert after.headers["x-ms-continuation"] == before.response_headers["x-ms-continuation"]
    assert "x-ms-continuation" not in queries[-1].response_headers
    assert json.loads(queries[0].body or b"") == {"query": "*"}

    # ItemPaged flattens the pages into one iteration.
    everything = {
        g["enrollmentGroupId"] for g in client.enrollment_group.query({"query": "*"}, top=2)
    }
    assert everything == set(ids)


def test_group_delete_honours_if_match(client: DeviceProvisioningClient) -> None:
    created = client.enrollment_group.create_or_update(
        id="sdk-delete-group", enrollment_group=symmetric_group("sdk-delete-group")
    )
    updated = client.enrollment_group.create_or_update(
        id="sdk-delete-group",
        enrollment_group=symmetric_group("sdk-delete-group", provisioningStatus="disabled"),
        if_match=created["etag"],
    )
    assert updated["etag"] != created["etag"] and updated["provisioningStatus"] == "disabled"

    with pytest.raises(HttpResponseError) as caught:
        client.enrollment_group.delete(id="sdk-delete-group", if_match=created["etag"])
    assert status_of(caught) == 412
    assert client.enrollment_group.get(id="sdk-delete-group")["etag"] == updated["etag"]

    assert client.enrollment_group.delete(id="sdk-delete-group", if_match=updated["etag"]) is None
    with pytest.raises(ResourceNotFoundError):
        client.enrollment_group.get(id="sdk-delete-group")
    with pytest.raises(ResourceNotFoundError):
        client.enrollment_group.delete(id="sdk-delete-group")


# --- individual enrollments ---------------------------------------------------------------------


def test_enrollment_lifecycle_with_etags(
    client: DeviceProvisioningClient, recorder: Recorder
) -> None:
    body = symmetric_enrollment("sdk-enr-1", deviceId="sdk-device-1")
    created = client.enrollment.create_or_update(id="sdk-enr-1", enrollment=body)
    assert created["registrationId"] == "sdk-enr-1" and created["deviceId"] == "sdk-device-1"
    assert created["attestation"]["type"] == "symmetricKey"
    got = client.enrollment.get(id="sdk-enr-1")
    assert got["etag"] == created["etag"] and "registrationState" not in got
    mechanism = client.enrollment.get_attestation_mechanism(id="sdk-enr-1")
    assert mechanism["symmetricKey"] == body["attestation"]["symmetricKey"]

    # Create again without If-Match: DPS refuses, the record is untouched.
    with pytest.raises(ResourceExistsError) as exists:
        client.enrollment.create_or_update(id="sdk-enr-1", enrollment=body)
    assert exists.value.status_code == 409

    twin = {"tags": {"floor": 3}, "properties": {"desired": {"mode": "eco"}}}
    updated = client.enrollment.create_or_update(
        id="sdk-enr-1",
        enrollment={**body, "initialTwin": twin, "provisioningStatus": "disabled"},
        if_match=created["etag"],
    )
    assert updated["etag"] != created["etag"]
    assert updated["initialTwin"] == twin and updated["provisioningStatus"] == "disabled"
    assert updated["createdDateTimeUtc"] == created["createdDateTimeUtc"]
    assert updated["lastUpdatedDateTimeUtc"] > created["lastUpdatedDateTimeUtc"]
    update_request = recorder.exchanges[-1]
    assert update_request.headers["If-Match"] == created["etag"]  # sent verbatim, unquoted

    # The etag the update replaced is stale now.
    with pytest.raises(HttpResponseError) as stale:
        client.enrollment.create_or_update(
            id="sdk-enr-1", enrollment=body, if_match=created["etag"]
        )
    assert status_of(stale) == 412
    assert client.enrollment.get(id="sdk-enr-1")["etag"] == updated["etag"]

    # A quoted etag and the wildcard both match.
    quoted = client.enrollment.create_or_update(
        id="sdk-enr-1", enrollment=body, if_match=f'"{updated["etag"]}"'
    )
    assert quoted["provisioningStatus"] == "enabled" and "initialTwin" not in quoted
    wildcard = client.enrollment.create_or_update(id="sdk-enr-1", enrollment=body, if_match="*")
    assert len({created["etag"], updated["etag"], quoted["etag"], wildcard["etag"]}) == 4

    recorder.clear()
    assert client.enrollment.delete(id="sdk-enr-1") is None
    assert recorder.exchanges[-1].status == 204
    with pytest.raises(ResourceNotFoundError):
        client.enrollment.get(id="sdk-enr-1")


def test_if_match_on_a_missing_enrollment_fails(client: DeviceProvisioningClient) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.enrollment.create_or_update(
            id="sdk-never", enrollment=symmetric_enrollment("sdk-never"), if_match="*"
        )
    assert status_of(caught) == 412
    with pytest.raises(ResourceNotFoundError):
        client.enrollment.get(id="sdk-never")


def test_x509_enrollment_with_a_self_signed_certificate(
    dps: Dps, client: DeviceProvisioningClient
) -> None:
    cert, _ = self_signed_device(dps, "sdk-self-signed")
    pem = cert.read_bytes()
    created = client.enrollment.create_or_update(
        id="sdk-self-signed",
        enrollment={
            "registrationId": "sdk-self-signed",
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": pem.decode()}}},
            },
        },
    )
    info = created["attestation"]["x509"]["clientCertificates"]["primary"]["info"]
    assert info["subjectName"] == info["issuerName"] == "CN=sdk-self-signed"
    assert info["sha1Thumbprint"] == sha1_thumbprint(pem)
    mechanism = client.enrollment.get_attestation_mechanism(id="sdk-self-signed")
    assert mechanism["type"] == "x509"
    assert mechanism["x509"]["clientCertificates"]["primary"]["info"] == info


def test_bulk_operations_report_each_item(client: DeviceProvisioningClient) -> None:
    ids = ["sdk-bulk-0", "sdk-bulk-1", "sdk-bulk-2"]
    created = client.enrollment.run_bulk_operation(
        {"mode": "create", "enrollments": [symmetric_enrollment(i) for i in ids]}
    )
    assert created == {"isSuccessful": True, "errors": []}
    listed = {e["registrationId"] for e in client.enrollment.query({"query": "*"})}
    assert set(ids) <= listed

    bad = symmetric_enrollment("sdk-bulk-bad")
    bad["attestation"]["symmetricKey"]["primaryKey"] = "not base64!"
    mixed = client.enrollment.run_bulk_operation(
        {
            "mode": "create",
            "enrollments": [symmetric_enrollment("sdk-bulk-3"), bad, symmetric_enrollment(ids[0])],
        }
    )
    assert mixed["isSuccessful"] is False
    errors = {e["registrationId"]: e for e in mixed["errors"]}
    assert set(errors) == {"sdk-bulk-bad", ids[0]}
    assert errors["sdk-bulk-bad"]["errorCode"] // 1000 == 400
    assert "primaryKey" in errors["sdk-bulk-bad"]["errorStatus"]
    assert errors[ids[0]]["errorCode"] // 1000 == 409
    # The good item went in; the bad ones did not, and the existing one kept its record.
    assert client.enrollment.get(id="sdk-bulk-3")["registrationId"] == "sdk-bulk-3"
    with pytest.raises(ResourceNotFoundError):
        client.enrollment.get(id="sdk-bulk-bad")

    deleted = client.enrollment.run_bulk_operation(
        {"mode": "delete", "enrollments": [{"registrationId": i} for i in [*ids, "sdk-bulk-3"]]}
    )
    assert deleted == {"isSuccessful": True, "errors": []}
    remaining = {e["registrationId"] for e in client.enrollment.query({"query": "*"})}
    assert remaining.isdisjoint({*ids, "sdk-bulk-3"})


def test_group_bulk_operation(client: DeviceProvisioningClient) -> None:
    result = client.enrollment_group.run_bulk_operation(
        {
            "mode": "create",
            "enrollmentGroups": [
                symmetric_group("sdk-bulk-group"),
                {"enrollmentGroupId": "sdk-bulk-tpm", "attestation": {"type": "tpm"}},
            ],
        }
    )
    assert result["isSuccessful"] is False
    assert [e["enrollmentGroupId"] for e in result["errors"]] == ["sdk-bulk-tpm"]
    assert client.enrollment_group.get(id="sdk-bulk-group")["enrollmentGroupId"] == "sdk-bulk-group"


# --- registration states ------------------------------------------------------------------------


def test_registration_states_of_a_group(
    dps: Dps, client: DeviceProvisioningClient, recorder: Recorder
) -> None:
    client.enrollment_group.create_or_update(
        id="sdk-reg-group", enrollment_group=symmetric_group("sdk-reg-group", iotHubs=[HUB])
    )
    group_key = client.enrollment_group.get_attestation_mechanism(id="sdk-reg-group")[
        "symmetricKey"
    ]["primaryKey"]
    devices = ["sdk-reg-a", "sdk-reg-b", "sdk-reg-c"]
    for device in devices:
        outcome = register_device(dps, device, device_key=derive_device_key(group_key, device))
        assert outcome["status"] == "assigned", outcome
        assert outcome["registrationState"]["assignedHub"] == HUB

    recorder.clear()
    pages = [
        list(p) for p in client.device_registration_state.query(id="sdk-reg-group", top=2).by_page()
    ]
    assert [len(p) for p in pages] == [2, 1]
    states = {s["registrationId"]: s for page in pages for s in page}
    assert set(states) == set(devices)
    for device, state in states.items():
        assert state["deviceId"] == device and state["assignedHub"] == HUB
        assert state["status"] == "assigned" and state["substatus"] == "initialAssignment"
    first = recorder.exchanges[0]
    assert (first.method, first.path) == ("POST", "/registrations/sdk-reg-group/query")
    # the SDK sends no body here (docs/sdk-clients.md#service-sdk-paths-and-status-codes)
    assert not first.body

    state = client.device_registration_state.get(id="sdk-reg-a")
    assert state == states["sdk-reg-a"]

    with pytest.raises(HttpResponseError) as stale:
        client.device_registration_state.delete(id="sdk-reg-a", if_match="AAAAAAAAAAA=")
    assert status_of(stale) == 412
    assert client.device_registration_state.delete(id="sdk-reg-a", if_match=state["etag"]) is None
    with pytest.raises(ResourceNotFoundError):
        client.device_registration_state.get(id="sdk-reg-a")
    remaining = {
        s["registrationId"] for s in client.device_registration_state.query(id="sdk-reg-group")
    }
    assert remaining == {"sdk-reg-b", "sdk-reg-c"}

    # A deleted registration state is a fresh start: the device registers again, initially.
    again = register_device(dps, "sdk-reg-a", device_key=derive_device_key(group_key, "sdk-reg-a"))
    assert again["registrationState"]["substatus"] == "initialAssignment"
    assert client.device_registration_state.get(id="sdk-reg-a")["etag"] != state["etag"]


def test_registration_state_of_an_x509_enrollment(
    dps: Dps, client: DeviceProvisioningClient
) -> None:
    cert, key = self_signed_device(dps, "sdk-reg-x509")
    client.enrollment.create_or_update(
        id="sdk-reg-x509",
        enrollment={
            "registrationId": "sdk-reg-x509",
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": cert.read_text()}}},
            },
        },
    )
    with pytest.raises(ResourceNotFoundError):
        client.device_registration_state.get(id="sdk-reg-x509")

    outcome = register_device(dps, "sdk-reg-x509", cert_chain=cert, key=key)
    assert outcome["status"] == "assigned", outcome

    state = client.device_registration_state.get(id="sdk-reg-x509")
    assert state["deviceId"] == "sdk-reg-x509" and state["assignedHub"] == HUB
    assert state["etag"] == outcome["registrationState"]["etag"]
    enrollment = client.enrollment.get(id="sdk-reg-x509")
    assert enrollment["registrationState"] == state

    client.device_registration_state.delete(id="sdk-reg-x509")
    assert "registrationState" not in client.enrollment.get(id="sdk-reg-x509")


# --- negative controls ------------------------------------------------------------------------


def test_a_wrong_key_is_refused(dps: Dps) -> None:
    wrong = base64.b64encode(b"w" * 32).decode()
    prefix = dps.connection_string.rsplit("SharedAccessKey=", 1)[0]
    client = dps.client(f"{prefix}SharedAccessKey={wrong}")
    with pytest.raises(ClientAuthenticationError) as caught:
        client.enrollment_group.get(id="sdk-sym-group")
    assert caught.value.status_code == 401
    with pytest.raises(ClientAuthenticationError):
        list(client.enrollment.query({"query": "*"}))
    with pytest.raises(ClientAuthenticationError):
        client.enrollment.create_or_update(id="sdk-intruder", enrollment=symmetric_enrollment("x"))


def test_a_read_only_policy_cannot_write(dps: Dps, client: DeviceProvisioningClient) -> None:
    container = open_container(dps.server.data_dir)
    try:
        policy = container.directory.add_policy("default", "reader", frozenset({"EnrollmentRead"}))
    finally:
        container.engine.dispose()
    host = dps.connection_string.split(";", 1)[0]
    reader = dps.client(f"{host};SharedAccessKeyName=reader;SharedAccessKey={policy.primary_key}")
    client.enrollment.create_or_update(
        id="sdk-readable", enrollment=symmetric_enrollment("sdk-readable")
    )

    assert reader.enrollment.get(id="sdk-readable")["registrationId"] == "sdk-readable"
    assert "sdk-readable" in {e["registrationId"] for e in reader.enrollment.query({"query": "*"})}
    with pytest.raises(HttpResponseError) as caught:
        reader.enrollment.create_or_update(
            id="sdk-unwritable", enrollment=symmetric_enrollment("sdk-unwritable")
        )
    assert status_of(caught) == 403
    assert caught.value.response is not None
    assert caught.value.response.json()["errorCode"] // 1000 == 403
    with pytest.raises(HttpResponseError) as delete:
        reader.enrollment.delete(id="sdk-readable")
    assert status_of(delete) == 403
    with pytest.raises(HttpResponseError) as states:
        reader.device_registration_state.get(id="sdk-readable")
    assert status_of(states) == 403  # EnrollmentRead does not cover registration states
    with pytest.raises(ResourceNotFoundError):
        client.enrollment.get(id="sdk-unwritable")
    assert client.enrollment.get(id="sdk-readable")["registrationId"] == "sdk-readable"
