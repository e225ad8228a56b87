"""Symmetric keys over the service API in-process: a PUT's answer carries them (supplied or
generated) as Azure's does, a GET, a query or a bulk result does not, and a record written back
without keys keeps its stored ones, by PUT and by bulk update alike."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.http.app import build_app
from tests import factory as f
from tests.http.test_service_api import owner_key, token

PRIMARY = base64.b64encode(b"p" * 32).decode()
SECONDARY = base64.b64encode(b"s" * 32).decode()
NEW = base64.b64encode(b"n" * 32).decode()

# collection, id member
KINDS = {
    "group": ("enrollmentGroups", "enrollmentGroupId"),
    "individual": ("enrollments", "registrationId"),
}


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


def record(kind: str, id: str, attestation: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {KINDS[kind][1]: id, "attestation": attestation, **extra}


def symmetric(primary: str | None = PRIMARY, secondary: str | None = SECONDARY) -> dict[str, Any]:
    keys = {
        name: key for name, key in (("primaryKey", primary), ("secondaryKey", secondary)) if key
    }
    return {"type": "symmetricKey", "symmetricKey": keys}


def keys_of(client: TestClient, kind: str, id: str) -> dict[str, str]:
    response = client.post(f"/{KINDS[kind][0]}/{id}/attestationmechanism")
    assert response.status_code == 200, response.text
    keys: dict[str, str] = response.json()["symmetricKey"]
    return keys


# --- where keys are shown -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_answer_to_a_put_carries_the_keys_a_get_does_not(client, kind: str) -> None:
    collection, _ = KINDS[kind]
    supplied = client.put(f"/{collection}/given", json=record(kind, "given", symmetric()))
    assert supplied.status_code == 200, supplied.text
    assert supplied.json()["attestation"] == symmetric()

    generated = client.put(
        f"/{collection}/made", json=record(kind, "made", {"type": "symmetricKey"})
    ).json()["attestation"]["symmetricKey"]
    assert len(base64.b64decode(generated["primaryKey"])) == 32
    assert generated == keys_of(client, kind, "made")

    # The reject twins: a GET, a query and a bulk answer show the type and nothing more.
    for id in ("given", "made"):
        assert client.get(f"/{collection}/{id}").json()["attestation"] == {"type": "symmetricKey"}
    listed = client.post(f"/{collection}/query", json={"query": "*"}).json()
    assert [item["attestation"] for item in listed] == [{"type": "symmetricKey"}] * 2
    bulk = client.post(
        f"/{collection}",
        json={"mode": "create", collection: [record(kind, "bulk", {"type": "symmetricKey"})]},
    ).json()
    assert bulk == {"isSuccessful": True, "errors": []}


def test_an_x509_answer_has_no_keys(client, container: Container) -> None:
    container.registry.upload(
        "default", "root", f.root().pem, is_verified=True, if_match=None, actor="t"
    )
    x509 = {"type": "x509", "x509": {"caReferences": {"primary": "root"}}}
    answer = client.put("/enrollmentGroups/x", json=record("group", "x", x509)).json()
    assert answer["attestation"] == x509


# --- keys a write-back leaves out are kept ------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(
    ("attestation", "expected"),
    [
        pytest.param(
            {"type": "symmetricKey", "symmetricKey": {}},
            (PRIMARY, SECONDARY),
            id="ok/empty-object-keeps-both",
        ),
        pytest.param({"type": "symmetricKey"}, (PRIMARY, SECONDARY), id="ok/as-fetched-keeps-both"),
        pytest.param(
            {"type": "symmetricKey", "symmetricKey": {"primaryKey": None}},
            (PRIMARY, SECONDARY),
            id="ok/null-primary-keeps-both",
        ),
        pytest.param(symmetric(NEW, None), (NEW, SECONDARY), id="ok/primary-only-changes-it"),
        pytest.param(symmetric(None, NEW), (PRIMARY, NEW), id="ok/secondary-only-changes-it"),
        pytest.param(symmetric(NEW, NEW), (NEW, NEW), id="ok/both-change-both"),
    ],
)
def test_a_write_back_keeps_the_keys_it_leaves_out(
    client, kind: str, attestation: dict[str, Any], expected: tuple[str, str]
) -> None:
    collection, _ = KINDS[kind]
    created = client.put(f"/{collection}/rec", json=record(kind, "rec", symmetric())).json()
    written = client.put(
        f"/{collection}/rec",
        json=record(kind, "rec", attestation, provisioningStatus="disabled"),
        headers={"If-Match": created["etag"]},
    )
    assert written.status_code == 200, written.text
    want = {"primaryKey": expected[0], "secondaryKey": expected[1]}
    assert written.json()["attestation"]["symmetricKey"] == want
    assert written.json()["provisioningStatus"] == "disabled"
    assert keys_of(client, kind, "rec") == want


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_fetched_record_written_back_keeps_its_generated_keys(client, kind: str) -> None:
    collection, _ = KINDS[kind]
    generated = client.put(
        f"/{collection}/rmw", json=record(kind, "rmw", {"type": "symmetricKey"})
    ).json()["attestation"]["symmetricKey"]
    fetched = client.get(f"/{collection}/rmw").json()
    fetched["provisioningStatus"] = "disabled"
    written = client.put(f"/{collection}/rmw", json=fetched, headers={"If-Match": fetched["etag"]})
    assert written.status_code == 200, written.text
    assert written.json()["attestation"]["symmetricKey"] == generated
    assert keys_of(client, kind, "rmw") == generated


@pytest.mark.parametrize("mode", ["update", "updateIfMatchETag"])
def test_a_bulk_update_keeps_the_keys_it_leaves_out(client, mode: str) -> None:
    created = client.put("/enrollments/bulk-1", json=record("individual", "bulk-1", symmetric()))
    client.put("/enrollments/bulk-2", json=record("individual", "bulk-2", symmetric()))
    items = [
        record("individual", "bulk-1", {"type": "symmetricKey", "symmetricKey": {}}),
        record("individual", "bulk-2", symmetric(NEW, None)),
    ]
    if mode == "updateIfMatchETag":
        items[0]["etag"] = created.json()["etag"]
        items[1]["etag"] = client.get("/enrollments/bulk-2").json()["etag"]
    result = client.post("/enrollments", json={"mode": mode, "enrollments": items}).json()
    assert result == {"isSuccessful": True, "errors": []}
    assert keys_of(client, "individual", "bulk-1") == symmetric()["symmetricKey"]
    assert keys_of(client, "individual", "bulk-2") == symmetric(NEW, SECONDARY)["symmetricKey"]


def test_changing_to_symmetric_key_generates_keys(client, container: Container) -> None:
    container.registry.upload(
        "default", "root", f.root().pem, is_verified=True, if_match=None, actor="t"
    )
    x509 = {"type": "x509", "x509": {"caReferences": {"primary": "root"}}}
    created = client.put("/enrollmentGroups/turn", json=record("group", "turn", x509)).json()
    turned = client.put(
        "/enrollmentGroups/turn",
        json=record("group", "turn", {"type": "symmetricKey"}),
        headers={"If-Match": created["etag"]},
    )
    assert turned.status_code == 200, turned.text
    keys = turned.json()["attestation"]["symmetricKey"]
    assert len(base64.b64decode(keys["primaryKey"])) == 32 and keys["secondaryKey"]
    assert keys_of(client, "group", "turn") == keys


@pytest.mark.parametrize(
    ("attestation", "headers", "status"),
    [
        pytest.param(symmetric("not base64!", None), "etag", 400, id="fail/bad-primary"),
        pytest.param(symmetric(None, "c2hvcnQ="), "etag", 400, id="fail/short-secondary"),
        pytest.param({"type": "symmetricKey"}, "stale", 412, id="fail/stale-etag"),
        pytest.param({"type": "symmetricKey"}, None, 409, id="fail/no-if-match"),
    ],
)
def test_a_refused_write_back_leaves_keys_and_etag(
    client, attestation: dict[str, Any], headers: str | None, status: int
) -> None:
    created = client.put("/enrollmentGroups/kept", json=record("group", "kept", symmetric()))
    etag = created.json()["etag"]
    if_match = {"etag": {"If-Match": etag}, "stale": {"If-Match": "AAAAAAAAAAA="}, None: {}}
    refused = client.put(
        "/enrollmentGroups/kept",
        json=record("group", "kept", attestation, provisioningStatus="disabled"),
        headers=if_match[headers],
    )
    assert refused.status_code == status, refused.text
    assert keys_of(client, "group", "kept") == symmetric()["symmetricKey"]
    after = client.get("/enrollmentGroups/kept").json()
    assert after["etag"] == etag and after["provisioningStatus"] == "enabled"
