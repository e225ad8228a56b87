"""The server log, counted per request: one INFO line for each change an operator cares about,
one for each refusal (never one from the use case and another from the adapter), and nothing
above DEBUG for a read of something that does not exist."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.http.app import build_app
from tests import factory as f

CERTIFICATES = (
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Devices"
    "/provisioningServices/default/certificates"
)
HUB = "hub-log.azure-devices.net"
GROUP_KEY = base64.b64encode(b"g" * 32).decode()


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = open_container(tmp_path / "data", initialize=True)
    c.hubs.add("default", HUB, weight=1, apply_allocation_policy=True, actor="test")
    yield c
    c.engine.dispose()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(build_app(container)) as client:
        yield client


Logged = Callable[[Callable[[], httpx.Response]], tuple[httpx.Response, list[logging.LogRecord]]]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Logged:
    """Run one request; return its response and the devprov records it logged, DEBUG included."""

    def run(
        request: Callable[[], httpx.Response],
    ) -> tuple[httpx.Response, list[logging.LogRecord]]:
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="devprov"):
            response = request()
        return response, [r for r in caplog.records if r.name.startswith("devprov")]

    return run


def info(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.INFO]


def admin(c: Container) -> dict[str, str]:
    return {"Authorization": f"Bearer {c.data.admin_token()}"}


def service(c: Container) -> dict[str, str]:
    key = c.directory.policies("default")[0].primary_key
    expiry = int(time.time()) + 600
    return {"Authorization": build_sas_token(key, "testserver", expiry, "provisioningserviceowner")}


def device(c: Container, registration_id: str, group_key: str) -> dict[str, str]:
    scope = c.directory.get("default").id_scope
    key = derive_device_key(group_key, registration_id)
    resource = f"{scope}/registrations/{registration_id}"
    token = build_sas_token(key, resource, int(time.time()) + 600, "registration")
    return {"Authorization": token}


def test_certificates(client: TestClient, container: Container, logged: Logged) -> None:
    headers = admin(container)
    root = f.root("Log Root")

    def put(body: Any, **extra: str) -> Callable[[], httpx.Response]:
        return lambda: client.put(f"{CERTIFICATES}/log-root", json=body, headers=headers | extra)

    reply, records = logged(lambda: client.get(f"{CERTIFICATES}/log-root", headers=headers))
    assert reply.status_code == 404
    assert info(records) == [] and len(records) == 1  # at DEBUG, not above

    reply, records = logged(put({"properties": {"certificate": "not a certificate"}}))
    assert reply.status_code == 400
    (line,) = info(records)
    assert "MalformedCertificate" in line

    reply, records = logged(put({"properties": {"certificate": root.pem.decode()}}))
    assert reply.status_code == 200
    assert info(records) == [
        "certificate 'log-root' of service 'default' uploaded by admin (not verified)"
    ]
    etag = reply.json()["etag"]

    code = lambda: client.post(  # noqa: E731
        f"{CERTIFICATES}/log-root/generateVerificationCode", headers=headers | {"If-Match": etag}
    )
    reply, records = logged(code)
    assert reply.status_code == 200
    assert info(records) == [
        "certificate 'log-root' of service 'default' given a new verification code by admin"
    ]
    coded = reply.json()

    def verify(proof: Any) -> Callable[[], httpx.Response]:
        body = {"certificate": f.pem(proof).decode()}
        return lambda: client.post(
            f"{CERTIFICATES}/log-root/verify", json=body, headers=headers | {"If-Match": etag}
        )

    etag = coded["etag"]
    wrong = f.verification(f.root("Other"), coded["properties"]["verificationCode"])
    reply, records = logged(verify(wrong))
    assert reply.status_code == 400
    (line,) = info(records)
    assert "VerificationSignerMismatch" in line

    right = f.verification(root, coded["properties"]["verificationCode"])
    reply, records = logged(verify(right))
    assert reply.status_code == 200
    assert info(records) == [
        "certificate 'log-root' of service 'default' verified by admin (proof-of-possession)"
    ]
    etag = reply.json()["etag"]

    reply, records = logged(
        lambda: client.delete(f"{CERTIFICATES}/log-root", headers=headers | {"If-Match": etag})
    )
    assert reply.status_code == 200
    assert info(records) == ["certificate 'log-root' of service 'default' deleted by admin"]

    reply, records = logged(
        lambda: client.get(f"{CERTIFICATES}", headers={"Authorization": "Bearer wrong"})
    )
    assert reply.status_code == 401
    (line,) = info(records)
    assert "InvalidCredentials" in line


def test_enrollments(client: TestClient, container: Container, logged: Logged) -> None:
    headers = service(container)
    group = {
        "enrollmentGroupId": "log-grp",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}},
    }
    path = "/enrollmentGroups/log-grp?api-version=2021-10-01"
    actor = "policy:provisioningserviceowner"

    reply, records = logged(lambda: client.get(path, headers=headers))
    assert reply.status_code == 404 and info(records) == []

    reply, records = logged(lambda: client.put(path, json=group, headers=headers))
    assert reply.status_code == 200, reply.text
    assert info(records) == [f"enrollment group 'log-grp' of service 'default' created by {actor}"]
    etag = reply.json()["etag"]

    reply, records = logged(lambda: client.put(path, json=group, headers=headers))
    assert reply.status_code == 409
    (line,) = info(records)
    assert "AlreadyExists" in line

    changed = {**group, "provisioningStatus": "disabled"}
    reply, records = logged(
        lambda: client.put(path, json=changed, headers=headers | {"If-Match": etag})
    )
    assert reply.status_code == 200
    assert info(records) == [f"enrollment group 'log-grp' of service 'default' updated by {actor}"]

    reply, records = logged(lambda: client.delete(path, headers=headers))
    assert reply.status_code == 204
    assert info(records) == [f"enrollment group 'log-grp' of service 'default' deleted by {actor}"]


def test_devices(client: TestClient, container: Container, logged: Logged) -> None:
    group = {
        "enrollmentGroupId": "dev-grp",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}},
    }
    created = client.put("/enrollmentGroups/dev-grp", json=group, headers=service(container))
    assert created.status_code == 200
    scope = container.directory.get("default").id_scope
    register = f"/{scope}/registrations/dev-1/register?api-version=2021-10-01"

    reply, records = logged(
        lambda: client.put(
            register,
            json={"registrationId": "dev-1"},
            headers=device(container, "dev-1", GROUP_KEY),
        )
    )
    assert reply.status_code == 200 and reply.json()["status"] == "assigned"
    assert info(records) == [
        f"device 'dev-1' of service 'default': assigned to {HUB} as device 'dev-1' "
        "(initialAssignment) by enrollment group 'dev-grp'"
    ]
    outcome = reply.json()

    poll = (
        f"/{scope}/registrations/dev-1/operations/{outcome['operationId']}?api-version=2021-10-01"
    )
    reply, records = logged(lambda: client.get(poll, headers=device(container, "dev-1", GROUP_KEY)))
    assert reply.status_code == 200 and reply.json() == outcome
    assert info(records) == []  # a poll changes nothing

    other = base64.b64encode(b"o" * 32).decode()
    reply, records = logged(
        lambda: client.put(
            register, json={"registrationId": "dev-1"}, headers=device(container, "dev-1", other)
        )
    )
    assert reply.status_code == 401
    (line,) = info(records)  # one line, from the adapter, with the precise reason
    assert "DeviceUnauthorized" in line and "no enrollment's key verifies" in line
    assert reply.json()["message"] == "Unauthorized"  # the device gets the generic one

    disabled = {**group, "provisioningStatus": "disabled"}
    etag = created.json()["etag"]
    assert (
        client.put(
            "/enrollmentGroups/dev-grp",
            json=disabled,
            headers=service(container) | {"If-Match": etag},
        ).status_code
        == 200
    )
    reply, records = logged(
        lambda: client.put(
            register.replace("dev-1", "dev-2"),
            json={"registrationId": "dev-2"},
            headers=device(container, "dev-2", GROUP_KEY),
        )
    )
    assert reply.status_code == 200 and reply.json()["status"] == "disabled"
    assert info(records) == [
        "device 'dev-2' of service 'default': not assigned: enrollment group 'dev-grp' is disabled"
    ]

    reply, records = logged(
        lambda: client.delete("/registrations/dev-1", headers=service(container))
    )
    assert reply.status_code == 204
    assert info(records) == [
        "registration state of 'dev-1' in service 'default' deleted by "
        "policy:provisioningserviceowner"
    ]
