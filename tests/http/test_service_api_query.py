"""The three query endpoints of the service API in-process: the query forms DPS's clients send
are answered with every record, any other query is refused with DPS's error body."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.http.app import build_app
from tests.http.test_service_api import owner_key, token

ENDPOINTS = {
    "enrollments": ("/enrollments/query", "registrationId", "Enrollment"),
    "groups": ("/enrollmentGroups/query", "enrollmentGroupId", "EnrollmentGroup"),
}


@pytest.fixture
def client(tmp_path: Path):
    container: Container = open_container(tmp_path / "data", initialize=True)
    try:
        with TestClient(
            build_app(container), headers={"Authorization": token(owner_key(container))}
        ) as client:
            for n in range(3):
                sym = {"attestation": {"type": "symmetricKey"}}
                assert client.put(f"/enrollments/dev-{n}", json=sym).status_code == 200
                assert client.put(f"/enrollmentGroups/grp-{n}", json=sym).status_code == 200
            yield client
    finally:
        container.engine.dispose()


@pytest.mark.parametrize(
    ("endpoint", "query"),
    [
        pytest.param("groups", "SELECT *", id="ok/select-star-as-python-sdk-tests"),
        pytest.param("enrollments", "SELECT *", id="ok/select-star-enrollments"),
        pytest.param("enrollments", "*", id="ok/star-as-node-sdk"),
        pytest.param("enrollments", "select * from enrollments", id="ok/from-as-java-sdk"),
        pytest.param("groups", "SELECT\t*\n  FROM   ENROLLMENTGROUPS", id="ok/any-case-spacing"),
    ],
)
def test_accepted_queries_list_every_record(client, endpoint: str, query: str) -> None:
    path, id_field, item_type = ENDPOINTS[endpoint]
    response = client.post(f"{path}?api-version=2021-10-01", json={"query": query})
    assert response.status_code == 200, response.text
    assert response.headers["x-ms-item-type"] == item_type
    assert sorted(item[id_field] for item in response.json()) == [
        f"{'dev' if endpoint == 'enrollments' else 'grp'}-{n}" for n in range(3)
    ]


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [
        pytest.param(
            "groups",
            {"query": "SELECT * FROM enrollments"},
            "this endpoint lists enrollmentGroups",
            id="fail/other-collection",
        ),
        pytest.param(
            "enrollments",
            {"query": "SELECT * FROM enrollments WHERE provisioningStatus = 'enabled'"},
            "is not supported",
            id="fail/where",
        ),
        pytest.param(
            "enrollments",
            {"query": "SELECT registrationId"},
            "unsupported query",
            id="fail/projection",
        ),
        pytest.param("groups", {"query": ""}, "the query is empty", id="fail/empty"),
        pytest.param("groups", {}, "'query' is missing", id="fail/no-query-member"),
        pytest.param("enrollments", ["*"], "got an array", id="fail/not-an-object"),
    ],
)
def test_other_queries_are_refused_in_dps_error_body(
    client, endpoint: str, body: object, message: str
) -> None:
    path, _, _ = ENDPOINTS[endpoint]
    response = client.post(path, json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["errorCode"] == 400402 and message in error["message"]
    assert set(error) == {"errorCode", "trackingId", "message", "timestampUtc"}


def test_a_query_without_a_body_lists_everything(client) -> None:
    assert len(client.post("/enrollmentGroups/query").json()) == 3


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(None, id="ok/no-body-as-python-sdk"),
        pytest.param({"query": "*"}, id="ok/star-as-node-sdk"),
        pytest.param({"query": "SELECT *"}, id="ok/select-star"),
        pytest.param({"query": "SELECT * FROM deviceRegistrations"}, id="ok/from-as-java-sdk"),
    ],
)
def test_registration_query_forms(client, body: object) -> None:
    response = client.post("/registrations/grp-0/query", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == [] and response.headers["x-ms-item-type"] == "DeviceRegistration"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"query": "SELECT * FROM enrollments"},
            "this endpoint lists deviceRegistrations",
            id="fail/enrollments",
        ),
        pytest.param(
            {"query": "SELECT * FROM deviceRegistrations WHERE status = 'assigned'"},
            "is not supported",
            id="fail/where",
        ),
        pytest.param({"query": 5}, "'query' is not a string", id="fail/query-number"),
    ],
)
def test_registration_query_refusals(client, body: object, message: str) -> None:
    response = client.post("/registrations/grp-0/query", json=body)
    assert response.status_code == 400
    assert response.json()["errorCode"] == 400402 and message in response.json()["message"]
