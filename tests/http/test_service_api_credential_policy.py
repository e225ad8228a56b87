"""The service API's enrollments and credential policies in-process: an enrollment or group that
names a policy its service does not have is refused (400 UnknownCredentialPolicy, the policy
named) and nothing is written; one that names a policy the service has is stored and echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.http.app import build_app
from tests.http.test_service_api import owner_key, token

ACTOR = "test"


@pytest.fixture
def container(tmp_path: Path):
    c = open_container(tmp_path / "data", initialize=True)
    yield c
    c.engine.dispose()


@pytest.fixture
def client(container: Container):
    with TestClient(
        build_app(container), headers={"Authorization": token(owner_key(container))}
    ) as client:
        yield client


def body(id_field: str, id: str, **extra):
    return {id_field: id, "attestation": {"type": "symmetricKey"}, **extra}


COLLECTIONS = [
    pytest.param("enrollments", "registrationId", id="individual"),
    pytest.param("enrollmentGroups", "enrollmentGroupId", id="group"),
]


@pytest.mark.parametrize(("collection", "id_field"), COLLECTIONS)
@pytest.mark.parametrize("member", ["credentialPolicyName", "certificatePolicyName"])
def test_an_enrollment_naming_a_missing_policy_is_refused(
    client, container, collection, id_field, member
) -> None:
    container.credential_policies.create("default", "other", key_type="ec-p256", actor=ACTOR)
    refused = client.put(
        f"/{collection}/dev-1?api-version=2025-07-01-preview",
        json=body(id_field, "dev-1", **{member: "fleet-a"}),
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["errorCode"] == 400629
    assert "'fleet-a'" in refused.json()["message"]
    assert client.get(f"/{collection}/dev-1").status_code == 404


@pytest.mark.parametrize(("collection", "id_field"), COLLECTIONS)
def test_an_enrollment_naming_a_policy_of_its_service_is_stored(
    client, container, collection, id_field
) -> None:
    container.credential_policies.create("default", "Fleet-A", key_type="ec-p256", actor=ACTOR)
    created = client.put(
        f"/{collection}/dev-1?api-version=2025-07-01-preview",
        json=body(id_field, "dev-1", credentialPolicyName="fleet-a"),
    )
    assert created.status_code == 200, created.text
    got = client.get(f"/{collection}/dev-1").json()
    assert got["credentialPolicyName"] == got["certificatePolicyName"] == "fleet-a"
    assert container.credential_policies.enrollments_naming("default", "Fleet-A") == 1


def test_a_policy_of_another_service_does_not_count(client, container) -> None:
    container.directory.create("plant")
    container.credential_policies.create("plant", "fleet-a", key_type="ec-p256", actor=ACTOR)
    refused = client.put(
        "/enrollments/dev-1", json=body("registrationId", "dev-1", credentialPolicyName="fleet-a")
    )
    assert refused.status_code == 400 and refused.json()["errorCode"] == 400629


def test_an_update_to_a_missing_policy_leaves_the_enrollment_as_it_was(client, container) -> None:
    container.credential_policies.create("default", "fleet-a", key_type="ec-p256", actor=ACTOR)
    first = client.put(
        "/enrollments/dev-1", json=body("registrationId", "dev-1", credentialPolicyName="fleet-a")
    ).json()
    refused = client.put(
        "/enrollments/dev-1",
        json=body("registrationId", "dev-1", credentialPolicyName="fleet-b"),
        headers={"If-Match": first["etag"]},
    )
    assert refused.status_code == 400 and "'fleet-b'" in refused.json()["message"]
    got = client.get("/enrollments/dev-1").json()
    assert (got["etag"], got["credentialPolicyName"]) == (first["etag"], "fleet-a")
    # The accepted twin: dropping the policy is an update like any other.
    dropped = client.put(
        "/enrollments/dev-1",
        json=body("registrationId", "dev-1"),
        headers={"If-Match": first["etag"]},
    )
    assert dropped.status_code == 200 and "credentialPolicyName" not in dropped.json()


def test_a_bulk_item_naming_a_missing_policy_fails_alone(client, container) -> None:
    container.credential_policies.create("default", "fleet-a", key_type="ec-p256", actor=ACTOR)
    result = client.post(
        "/enrollments",
        json={
            "mode": "create",
            "enrollments": [
                body("registrationId", "dev-1", credentialPolicyName="fleet-a"),
                body("registrationId", "dev-2", credentialPolicyName="nope"),
            ],
        },
    ).json()
    assert result["isSuccessful"] is False
    (error,) = result["errors"]
    assert (error["registrationId"], error["errorCode"]) == ("dev-2", 400629)
    assert client.get("/enrollments/dev-1").status_code == 200
    assert client.get("/enrollments/dev-2").status_code == 404


def test_the_refusal_is_audited(client, container) -> None:
    client.put(
        "/enrollments/dev-1", json=body("registrationId", "dev-1", credentialPolicyName="nope")
    )
    (event,) = container.audit.events(service="default", registration_id="dev-1")
    assert (event.outcome.value, event.error_code) == ("failed", "UnknownCredentialPolicy")
