"""The management API in-process: wire shapes, etags, both body shapes, all three encodings,
authentication, size limits, and the error bodies of every refusal."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.core.certificate import describe_certificate
from devprov.http.app import build_app
from devprov.http.request import MAX_BODY_BYTES
from tests import factory as f

QUOTED_GUID = re.compile(r'"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"')
BASE = (
    "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Devices"
    "/provisioningServices/default/certificates"
)


@pytest.fixture
def container(tmp_path: Path) -> Container:
    c = open_container(tmp_path / "data", initialize=True)
    yield c
    c.engine.dispose()


@pytest.fixture
def client(container: Container) -> TestClient:
    token = container.data.admin_token()
    with TestClient(build_app(container), headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture(scope="module")
def root() -> f.Ca:
    return f.root("Http Root")


def put(client: TestClient, name: str, body, **headers):
    return client.put(f"{BASE}/{name}?api-version=2025-02-01-preview", json=body, headers=headers)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            lambda ca: {"properties": {"certificate": ca.pem.decode()}}, id="ok/properties-pem"
        ),
        pytest.param(
            lambda ca: {"properties": {"certificate": base64.b64encode(ca.pem).decode()}},
            id="ok/properties-b64-pem",
        ),
        pytest.param(
            lambda ca: {"properties": {"certificate": base64.b64encode(ca.der).decode()}},
            id="ok/properties-b64-der",
        ),
        pytest.param(
            lambda ca: {"certificate": ca.pem.decode(), "isVerified": False}, id="ok/top-level-pem"
        ),
        pytest.param(
            lambda ca: {"certificate": base64.b64encode(ca.der).decode()}, id="ok/top-level-b64-der"
        ),
        pytest.param(
            lambda ca: {
                "properties": {"certificate": base64.b64encode(base64.b64encode(ca.der)).decode()}
            },
            id="ok/properties-b64-b64-der",
        ),
    ],
)
def test_put_accepts_both_shapes_and_all_encodings(client, root, body) -> None:
    response = put(client, "root", body(root))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["name"] == "root"
    assert data["type"] == "Microsoft.Devices/provisioningServices/Certificates"
    assert data["id"] == f"{BASE}/root"
    props = data["properties"]
    assert props["subject"] == "Http Root"
    assert props["isVerified"] is False
    assert props["thumbprint"] == describe_certificate(root.certificate).thumbprint
    assert props["certificate"] is None
    assert parsedate_to_datetime(props["expiry"]) == root.certificate.not_valid_after_utc
    assert props["created"].endswith("GMT") and props["updated"].endswith("GMT")
    assert response.headers["etag"] == f'"{data["etag"]}"'
    assert QUOTED_GUID.fullmatch(base64.b64decode(data["etag"]).decode())


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(
            lambda ca: base64.b64encode(base64.b64encode(base64.b64encode(ca.der))),
            "MalformedCertificate",
            id="fail/b64-b64-b64-der",
        ),
        pytest.param(
            lambda ca: base64.b64encode(base64.b64encode(ca.der + f.root("Second").der)),
            "TooManyCertificatesInUpload",
            id="fail/b64-b64-der-bundle",
        ),
        pytest.param(
            lambda ca: base64.b64encode(base64.b64encode(ca.pem)),
            "MalformedCertificate",
            id="fail/b64-b64-pem",
        ),
    ],
)
def test_put_refuses_what_is_not_one_certificate(client, root, body, code) -> None:
    response = put(client, "root", {"properties": {"certificate": body(root).decode()}})
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert client.get(BASE).json() == {"value": []}


# docs/management-answers.md#the-subject-rule
@pytest.mark.parametrize(
    ("subject", "shown"),
    [
        pytest.param(
            [(NameOID.ORGANIZATION_NAME, "Contoso"), (NameOID.COMMON_NAME, "Contoso Root")],
            "Contoso Root",
            id="cn/value",
        ),
        pytest.param(
            [(NameOID.ORGANIZATION_NAME, "Contoso"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "CA")],
            "OU=CA, O=Contoso",
            id="no-cn/whole-subject",
        ),
    ],
)
def test_subject_is_the_cn_value_or_the_whole_subject(client, subject, shown) -> None:
    ca = f.raw_certificate(subject=x509.Name([x509.NameAttribute(o, v) for o, v in subject]))
    created = put(client, "odd", {"certificate": ca.pem.decode()}).json()
    assert created["properties"]["subject"] == shown
    assert client.get(BASE).json()["value"][0]["properties"]["subject"] == shown


def test_put_self_attested(client, root) -> None:
    response = put(
        client, "root", {"properties": {"certificate": root.pem.decode(), "isVerified": True}}
    )
    assert response.json()["properties"]["isVerified"] is True


def test_get_list_and_case_insensitive_paths(client, root) -> None:
    created = put(client, "root", {"certificate": root.pem.decode()}).json()
    assert client.get(f"{BASE}/root").json() == created
    assert client.get(f"{BASE.lower()}/ROOT").json()["name"] == "root"
    listed = client.get(BASE).json()
    assert listed == {"value": [created]}


def test_update_requires_if_match(client, root) -> None:
    created = put(client, "root", {"certificate": root.pem.decode()}).json()
    refused = put(client, "root", {"certificate": root.pem.decode()})
    assert refused.status_code == 412
    assert "IH412001" in refused.json()["message"]
    updated = put(
        client, "root", {"certificate": root.pem.decode()}, **{"If-Match": f'"{created["etag"]}"'}
    )
    assert updated.status_code == 200 and updated.json()["etag"] != created["etag"]


def post(client, path, etag=None, body=None):
    headers = {"If-Match": f'"{etag}"'} if etag else {}
    return client.post(f"{BASE}/{path}", headers=headers, json=body)


def test_proof_of_possession_over_http(client, root) -> None:
    created = put(client, "root", {"certificate": root.pem.decode()}).json()
    assert post(client, "root/generateVerificationCode").status_code == 412
    coded = post(client, "root/generateVerificationCode", created["etag"])
    assert coded.status_code == 200
    code = coded.json()["properties"]["verificationCode"]
    assert len(code) == 48 and coded.json()["etag"] != created["etag"]
    assert next(iter(coded.json()["properties"])) == "verificationCode"
    assert base64.b64decode(coded.json()["properties"]["certificate"]) == root.pem
    assert client.get(f"{BASE}/root").json()["properties"]["certificate"] is None
    proof_cert = f.verification(root, code, now=datetime.now(UTC))
    proof = f.pem(proof_cert)
    stale = post(client, "root/verify", created["etag"], {"certificate": proof.decode()})
    assert stale.status_code == 412
    nested_too_deep = base64.b64encode(base64.b64encode(base64.b64encode(f.der(proof_cert))))
    refused = post(
        client, "root/verify", coded.json()["etag"], {"certificate": nested_too_deep.decode()}
    )
    assert refused.json()["error"]["code"] == "MalformedVerificationCertificate"
    unchanged = client.get(f"{BASE}/root").json()
    assert unchanged["etag"] == coded.json()["etag"]
    assert unchanged["properties"]["isVerified"] is False
    verified = post(
        client,
        "root/verify",
        coded.json()["etag"],
        {"certificate": base64.b64encode(base64.b64encode(f.der(proof_cert))).decode()},
    )
    assert verified.status_code == 200, verified.text
    assert verified.json()["properties"]["isVerified"] is True
    assert verified.json()["properties"]["certificate"] is None
    assert "verificationCode" not in verified.json()["properties"]
    again = post(client, "root/verify", verified.json()["etag"], {"certificate": proof.decode()})
    assert (
        again.status_code == 400 and again.json()["error"]["code"] == "VerificationCodeAlreadyUsed"
    )


def test_refused_proof_has_precise_arm_error_and_changes_nothing(client, root) -> None:
    created = put(client, "root", {"certificate": root.pem.decode()}).json()
    coded = post(client, "root/generateVerificationCode", created["etag"]).json()
    code = coded["properties"]["verificationCode"]
    wrong = f.pem(
        f.verification(
            f.root("Not Http Root"),
            code,
            now=datetime.now(UTC),
        )
    )
    response = post(client, "root/verify", coded["etag"], {"certificate": wrong.decode()})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 400507 and body["httpStatusCode"] == "BadRequest"
    assert body["error"]["code"] == "VerificationSignerMismatch"
    assert "CN=Not Http Root" in body["message"] and "CN=Http Root" in body["message"]
    assert response.headers["x-ms-error-code"] == "400507"
    assert client.get(f"{BASE}/root").json()["etag"] == coded["etag"]


def test_delete(client, root) -> None:
    created = put(client, "root", {"certificate": root.pem.decode()}).json()
    assert client.delete(f"{BASE}/root").status_code == 412
    assert client.delete(f"{BASE}/root", headers={"If-Match": "wrong"}).status_code == 412
    assert client.delete(f"{BASE}/root", headers={"If-Match": created["etag"]}).status_code == 200
    assert client.get(f"{BASE}/root").status_code == 404
    assert client.delete(f"{BASE}/root", headers={"If-Match": "*"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(b"{not json", 400, "MalformedRequest", id="fail/not-json"),
        pytest.param(b"[]", 400, "MalformedRequest", id="fail/array"),
        pytest.param(b"{}", 400, "MalformedRequest", id="fail/no-certificate"),
        pytest.param(b'{"certificate": 5}', 400, "MalformedRequest", id="fail/number"),
        pytest.param(b'{"certificate": "garbage"}', 400, "MalformedCertificate", id="fail/garbage"),
        pytest.param(
            b'{"certificate": "x", "isVerified": "yes"}',
            400,
            "MalformedRequest",
            id="fail/isverified-string",
        ),
    ],
)
def test_put_rejects_bad_bodies(client, body: bytes, status: int, code: str) -> None:
    response = client.put(
        f"{BASE}/root", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert client.get(BASE).json() == {"value": []}


def test_put_rejects_leaf_and_key(client, root) -> None:
    leaf = f.device(root)
    assert (
        put(client, "leaf", {"certificate": leaf.pem.decode()}).json()["error"]["code"]
        == "NotACaCertificate"
    )
    keyed = put(client, "key", {"certificate": root.key_pem().decode()})
    assert keyed.status_code == 400 and "private key" in keyed.json()["message"]
    two = put(client, "two", {"certificate": (root.pem + leaf.pem).decode()})
    assert two.json()["error"]["code"] == "TooManyCertificatesInUpload"
    assert client.get(BASE).json() == {"value": []}


def test_oversized_body(client) -> None:
    body = b'{"certificate": "' + b"A" * MAX_BODY_BYTES + b'"}'
    response = client.put(
        f"{BASE}/root", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "RequestBodyTooLarge"


def test_bad_certificate_name(client, root) -> None:
    response = put(client, "bad%20name", {"certificate": root.pem.decode()})
    assert (
        response.status_code == 400 and response.json()["error"]["code"] == "InvalidCertificateName"
    )


def test_unknown_service_and_route(client) -> None:
    other = BASE.replace("/default/", "/nope/")
    response = client.get(other)
    assert (
        response.status_code == 404
        and response.json()["error"]["code"] == "ProvisioningServiceNotFound"
    )
    assert client.get("/nothing/here").status_code == 404


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, "MissingCredentials", id="fail/none"),
        pytest.param(
            {"Authorization": "Bearer wrong"}, "InvalidCredentials", id="fail/wrong-token"
        ),
        pytest.param({"Authorization": "Basic abc"}, "MissingCredentials", id="fail/basic"),
        pytest.param({"Authorization": "Bearer "}, "MissingCredentials", id="fail/empty-bearer"),
    ],
)
def test_authentication_is_required(container, root, headers, code) -> None:
    with TestClient(build_app(container)) as anonymous:
        response = anonymous.put(
            f"{BASE}/root", json={"certificate": root.pem.decode()}, headers=headers
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == code
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert container.registry.list("default") == []


def test_any_api_version_is_accepted_and_recorded(client, container, root) -> None:
    for version in ("2021-10-15", "2026-11-01", "anything"):
        name = f"r{version.replace('-', '')}"
        response = client.put(
            f"{BASE}/{name}?api-version={version}", json={"certificate": root.pem.decode()}
        )
        assert response.status_code == 200
    assert (
        client.put(f"{BASE}/noversion", json={"certificate": root.pem.decode()}).status_code == 200
    )
    versions = [e.api_version for e in container.audit.events(service="default")]
    assert versions == ["2021-10-15", "2026-11-01", "anything", None]
