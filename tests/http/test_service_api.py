"""The DPS service API in-process: SAS authentication and rights, DPS's etag rules, queries
with continuation, bulk operations and the DPS error body."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.core.sas import build_sas_token
from devprov.http.app import build_app
from tests import factory as f

KEY = base64.b64encode(b"s" * 32).decode()


@pytest.fixture
def container(tmp_path: Path):
    c = open_container(tmp_path / "data", initialize=True)
    yield c
    c.engine.dispose()


def owner_key(c: Container) -> str:
    return c.directory.policies("default")[0].primary_key


def token(
    key: str,
    policy: str = "provisioningserviceowner",
    *,
    resource: str = "testserver",
    expiry: int | None = None,
) -> str:
    return build_sas_token(key, resource, expiry or int(time.time()) + 600, policy)


@pytest.fixture
def client(container: Container):
    with TestClient(
        build_app(container), headers={"Authorization": token(owner_key(container))}
    ) as client:
        yield client


def sym_group(id: str, **extra):
    return {"enrollmentGroupId": id, "attestation": {"type": "symmetricKey"}, **extra}


def test_create_get_and_generated_keys(client) -> None:
    created = client.put("/enrollmentGroups/grp1?api-version=2021-10-01", json=sym_group("grp1"))
    assert created.status_code == 200, created.text
    body = created.json()
    assert (
        body["enrollmentGroupId"] == "grp1"
        and body["etag"]
        and body["provisioningStatus"] == "enabled"
    )
    # The PUT's answer carries the generated keys, as Azure's does; a GET carries none.
    generated = body["attestation"]["symmetricKey"]
    got = client.get("/enrollmentgroups/GRP1")
    assert got.status_code == 200 and got.json()["etag"] == body["etag"]
    assert got.json()["attestation"] == {"type": "symmetricKey"}
    keys = client.post("/enrollmentGroups/grp1/attestationmechanism").json()["symmetricKey"]
    assert keys == generated
    assert (
        len(base64.b64decode(keys["primaryKey"])) == 32
        and keys["primaryKey"] != keys["secondaryKey"]
    )


def test_dps_etag_rules(client) -> None:
    first = client.put("/enrollmentGroups/grp1", json=sym_group("grp1")).json()
    conflict = client.put("/enrollmentGroups/grp1", json=sym_group("grp1"))
    assert conflict.status_code == 409 and conflict.json()["errorCode"] == 409001
    stale = client.put(
        "/enrollmentGroups/grp1", json=sym_group("grp1"), headers={"If-Match": '"nope"'}
    )
    assert stale.status_code == 412
    updated = client.put(
        "/enrollmentGroups/grp1",
        json=sym_group("grp1", provisioningStatus="disabled"),
        headers={"If-Match": f'"{first["etag"]}"'},
    )
    assert updated.status_code == 200 and updated.json()["provisioningStatus"] == "disabled"
    assert (
        updated.json()["etag"] != first["etag"]
        and updated.json()["createdDateTimeUtc"] == first["createdDateTimeUtc"]
    )
    star = client.put("/enrollmentGroups/grp1", json=sym_group("grp1"), headers={"If-Match": "*"})
    assert star.status_code == 200
    missing = client.put(
        "/enrollmentGroups/grp2", json=sym_group("grp2"), headers={"If-Match": "*"}
    )
    assert missing.status_code == 412
    assert client.delete("/enrollmentGroups/grp1", headers={"If-Match": "stale"}).status_code == 412
    assert client.delete("/enrollmentGroups/grp1").status_code == 204
    gone = client.get("/enrollmentGroups/grp1")
    assert gone.status_code == 404 and gone.json()["errorCode"] == 404202


def test_error_body_is_dps_shaped(client) -> None:
    response = client.put("/enrollments/bad id!", json={"attestation": {"type": "symmetricKey"}})
    body = response.json()
    assert response.status_code == 400
    assert set(body) == {"errorCode", "trackingId", "message", "timestampUtc"}
    assert response.headers["x-ms-error-code"] == str(body["errorCode"])


def test_invalid_documents_change_nothing(client) -> None:
    for doc in (
        {"attestation": {"type": "x509", "x509": {}}},
        {"attestation": {"type": "magic"}},
        [],
        {"enrollmentGroupId": "other", "attestation": {"type": "symmetricKey"}},
    ):
        assert client.put("/enrollmentGroups/grp1", json=doc).status_code == 400
    assert client.post("/enrollmentGroups/query", json={"query": "*"}).json() == []


def test_ca_reference_must_exist_and_hubs_must_be_linked(client, container) -> None:
    doc = {
        "enrollmentGroupId": "g",
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "root"}}},
    }
    refused = client.put("/enrollmentGroups/g", json=doc)
    assert refused.status_code == 400 and "not in the registry" in refused.json()["message"]
    container.registry.upload(
        "default", "root", f.root().pem, is_verified=True, if_match=None, actor="t"
    )
    assert client.put("/enrollmentGroups/g", json=doc).status_code == 200
    unlinked = client.put(
        "/enrollmentGroups/h", json=sym_group("h", iotHubs=["nope.azure-devices.net"])
    )
    assert unlinked.status_code == 400 and "not linked" in unlinked.json()["message"]
    container.hubs.add("default", "nope.azure-devices.net", actor="test")
    assert (
        client.put(
            "/enrollmentGroups/h", json=sym_group("h", iotHubs=["nope.azure-devices.net"])
        ).status_code
        == 200
    )


def test_query_pages_with_continuation(client) -> None:
    for i in range(5):
        client.put(f"/enrollments/dev-{i}", json={"attestation": {"type": "symmetricKey"}})
    seen, continuation, pages = [], None, 0
    while True:
        headers = {"x-ms-max-item-count": "2"}
        if continuation:
            headers["x-ms-continuation"] = continuation
        response = client.post(
            "/enrollments/query?api-version=2021-10-01", json={"query": "*"}, headers=headers
        )
        assert response.headers["x-ms-item-type"] == "Enrollment"
        seen += [e["registrationId"] for e in response.json()]
        pages += 1
        continuation = response.headers.get("x-ms-continuation")
        if not continuation:
            break
    assert seen == [f"dev-{i}" for i in range(5)] and pages == 3
    sql = client.post("/enrollments/query", json={"query": "SELECT * FROM enrollments"})
    assert len(sql.json()) == 5
    assert (
        client.post(
            "/enrollments/query", json={"query": "SELECT * FROM enrollments WHERE x=1"}
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/enrollments/query", headers={"x-ms-continuation": "!!!"}, json={"query": "*"}
        ).status_code
        == 400
    )


def test_bulk_operations(client) -> None:
    create = {
        "mode": "create",
        "enrollments": [
            {"registrationId": f"b{i}", "attestation": {"type": "symmetricKey"}} for i in range(3)
        ],
    }
    result = client.post("/enrollments", json=create).json()
    assert result == {"isSuccessful": True, "errors": []}
    mixed = {
        "mode": "create",
        "enrollments": [
            {"registrationId": "b0", "attestation": {"type": "symmetricKey"}},
            {"registrationId": "b9", "attestation": {"type": "symmetricKey"}},
        ],
    }
    result = client.post("/enrollments/", json=mixed).json()
    assert result["isSuccessful"] is False
    assert result["errors"] == [
        {
            "registrationId": "b0",
            "errorCode": 409001,
            "errorStatus": result["errors"][0]["errorStatus"],
        }
    ]
    assert client.get("/enrollments/b9").status_code == 200
    too_many = {"mode": "delete", "enrollments": [{"registrationId": f"x{i}"} for i in range(11)]}
    assert client.post("/enrollments", json=too_many).status_code == 400
    deleted = client.post(
        "/enrollments",
        json={
            "mode": "delete",
            "enrollments": [{"registrationId": "b1"}, {"registrationId": "b2"}],
        },
    ).json()
    assert deleted["isSuccessful"] and client.get("/enrollments/b1").status_code == 404


def test_group_limit(client, monkeypatch) -> None:
    monkeypatch.setattr("devprov.service.enrollment.MAX_ENROLLMENT_GROUPS_PER_TYPE", 2)
    assert client.put("/enrollmentGroups/a1", json=sym_group("a1")).status_code == 200
    assert client.put("/enrollmentGroups/a2", json=sym_group("a2")).status_code == 200
    refused = client.put("/enrollmentGroups/a3", json=sym_group("a3"))
    assert refused.status_code == 409 and "at most 2" in refused.json()["message"]


@pytest.mark.parametrize(
    ("make_header", "status"),
    [
        pytest.param(lambda key: None, 401, id="fail/no-credentials"),
        pytest.param(lambda key: "Bearer abc", 401, id="fail/wrong-scheme"),
        pytest.param(
            lambda key: token(base64.b64encode(b"w" * 32).decode()), 401, id="fail/wrong-key"
        ),
        pytest.param(lambda key: token(key, expiry=int(time.time()) - 5), 401, id="fail/expired"),
        pytest.param(
            lambda key: token(key, resource="another-host"), 401, id="fail/other-resource"
        ),
        pytest.param(lambda key: token(key, policy="nobody"), 401, id="fail/unknown-policy"),
        pytest.param(lambda key: token(key, resource="testserver:80"), 200, id="ok/host-and-port"),
        pytest.param(lambda key: token(key, resource="https://testserver"), 200, id="ok/url"),
    ],
)
def test_authentication(container, make_header, status) -> None:
    header = make_header(owner_key(container))
    with TestClient(build_app(container)) as anonymous:
        response = anonymous.put(
            "/enrollmentGroups/g",
            json=sym_group("g"),
            headers={"Authorization": header} if header else {},
        )
        assert response.status_code == status, response.text
        if status == 401:
            assert response.json()["errorCode"] // 1000 == 401
            assert (
                anonymous.get(
                    "/enrollmentGroups/g", headers={"Authorization": token(owner_key(container))}
                ).status_code
                == 404
            )


def test_rights_per_policy(container) -> None:
    reader = container.directory.add_policy("default", "reader", frozenset({"EnrollmentRead"}))
    with TestClient(
        build_app(container), headers={"Authorization": token(reader.primary_key, "reader")}
    ) as c:
        assert c.post("/enrollmentGroups/query", json={"query": "*"}).status_code == 200
        denied = c.put("/enrollmentGroups/g", json=sym_group("g"))
        assert denied.status_code == 403 and "EnrollmentWrite" in denied.json()["message"]
        assert c.get("/registrations/anything").status_code == 403
    rotated = container.directory.rotate_key("default", "reader", "primary")
    with TestClient(
        build_app(container), headers={"Authorization": token(reader.primary_key, "reader")}
    ) as c:
        assert c.post("/enrollmentGroups/query", json={"query": "*"}).status_code == 401
    with TestClient(
        build_app(container), headers={"Authorization": token(rotated.secondary_key, "reader")}
    ) as c:
        assert c.post("/enrollmentGroups/query", json={"query": "*"}).status_code == 200


def test_services_are_told_apart_by_key(container) -> None:
    container.directory.create("second")
    second_key = container.directory.policies("second")[0].primary_key
    with TestClient(build_app(container), headers={"Authorization": token(second_key)}) as c:
        assert c.put("/enrollmentGroups/only-here", json=sym_group("only-here")).status_code == 200
    with TestClient(
        build_app(container), headers={"Authorization": token(owner_key(container))}
    ) as c:
        assert c.get("/enrollmentGroups/only-here").status_code == 404


def test_registration_states_not_found_and_query_empty(client) -> None:
    assert client.get("/registrations/nobody").json()["errorCode"] == 404203
    response = client.post("/registrations/grp/query")
    assert (
        response.status_code == 200
        and response.json() == []
        and response.headers["x-ms-item-type"] == "DeviceRegistration"
    )


def test_a_fetched_x509_group_can_be_written_back(client) -> None:
    doc = {
        "enrollmentGroupId": "x",
        "attestation": {
            "type": "x509",
            "x509": {
                "signingCertificates": {"primary": {"certificate": f.root("Kept").pem.decode()}}
            },
        },
    }
    created = client.put("/enrollmentGroups/x", json=doc).json()
    info = created["attestation"]["x509"]["signingCertificates"]["primary"]["info"]
    assert "certificate" not in created["attestation"]["x509"]["signingCertificates"]["primary"]
    fetched = client.get("/enrollmentGroups/x").json()
    fetched["provisioningStatus"] = "disabled"
    written = client.put("/enrollmentGroups/x", json=fetched, headers={"If-Match": fetched["etag"]})
    assert written.status_code == 200, written.text
    assert written.json()["attestation"]["x509"]["signingCertificates"]["primary"]["info"] == info
