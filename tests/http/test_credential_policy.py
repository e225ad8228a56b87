"""The credential policies' public routes in-process: the CRL as application/pkix-crl, the CA
chain as PEM, both without credentials; 404 with DPS's error body for a service or policy that
does not exist, and a failure of the server's own answered without its reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography import x509
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.core.credential_policy import IssuedCertificate
from devprov.http.app import build_app
from devprov.storage.issuing_key import FileIssuingKeyStore
from devprov.storage.repository import SqlUnitOfWork
from tests import factory as f

ACTOR = "test"


@pytest.fixture
def container(tmp_path: Path):
    c = open_container(tmp_path / "data", initialize=True)
    yield c
    c.engine.dispose()


@pytest.fixture
def anonymous(container: Container):
    with TestClient(build_app(container)) as client:
        yield client


@pytest.fixture
def fleet(container: Container) -> str:
    container.credential_policies.create("default", "Fleet-A", key_type="ec-p256", actor=ACTOR)
    return "Fleet-A"


def ca_of(container: Container, policy: str = "Fleet-A") -> x509.Certificate:
    chain = container.credential_policies.show("default", policy).ca_chain_pem
    return x509.load_pem_x509_certificates(chain.encode())[0]


def test_the_crl_is_der_pkix_crl_signed_by_the_policys_ca(anonymous, container, fleet) -> None:
    answer = anonymous.get("/credential-policies/default/fleet-a/crl")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(answer.content)
    assert crl.is_signature_valid(ca_of(container).public_key())
    assert crl.issuer == ca_of(container).subject and len(crl) == 0


def test_the_crl_lists_a_revocation_under_a_new_number(anonymous, container, fleet) -> None:
    issuer = f.Ca(ca_of(container), container.issuing_keys.load("default", fleet))
    leaf = f.device(issuer, "dev-1")
    record = IssuedCertificate(
        service="default",
        serial=f"{leaf.certificate.serial_number:X}",
        sha256="ab" * 32,
        registration_id="dev-1",
        policy=fleet,
        not_before=f.NOW,
        not_after=f.NOW,
        issued_at=f.NOW,
        certificate_der=leaf.der,
    )
    with SqlUnitOfWork(container.engine) as u:
        u.issued.add(record)
        u.commit()
    container.credential_policies.revoke("default", record.serial, actor=ACTOR)
    crl = x509.load_der_x509_crl(anonymous.get("/credential-policies/default/Fleet-A/crl").content)
    assert [entry.serial_number for entry in crl] == [leaf.certificate.serial_number]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1


def test_the_ca_chain_is_pem(anonymous, container, fleet) -> None:
    answer = anonymous.get("/credential-policies/default/fleet-a/ca.pem")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-pem-file"
    assert answer.text == container.credential_policies.show("default", fleet).ca_chain_pem
    assert x509.load_pem_x509_certificates(answer.content) == [ca_of(container)]


@pytest.mark.parametrize("resource", ["crl", "ca.pem"])
@pytest.mark.parametrize(
    ("service", "policy", "number"),
    [
        pytest.param("default", "nope", 404621, id="fail/unknown-policy"),
        pytest.param("nowhere", "Fleet-A", 404101, id="fail/unknown-service"),
    ],
)
def test_an_unknown_service_or_policy_is_404_json(
    anonymous, fleet, resource, service, policy, number
) -> None:
    answer = anonymous.get(f"/credential-policies/{service}/{policy}/{resource}")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["errorCode"] == number and set(body) == {
        "errorCode",
        "trackingId",
        "message",
        "timestampUtc",
    }
    assert f"'{policy if number == 404621 else service}'" in body["message"]


def test_only_get_is_allowed(anonymous, fleet) -> None:
    assert anonymous.post("/credential-policies/default/fleet-a/crl").status_code == 405


def test_a_missing_key_file_is_logged_and_not_told(anonymous, container, fleet, caplog) -> None:
    path = FileIssuingKeyStore(container.data.root).path("default", fleet)
    container.issuing_keys.remove("default", fleet)
    with caplog.at_level(logging.ERROR, logger="devprov.http"):
        answer = anonymous.get("/credential-policies/default/fleet-a/crl")
    assert answer.status_code == 500
    body = answer.json()
    assert str(path) not in body["message"] and "issuing-keys" not in answer.text
    (line,) = [r.getMessage() for r in caplog.records if body["trackingId"] in r.getMessage()]
    assert "IssuingKeyNotFound" in line and str(path) in line
    # The CA chain needs no key: it is still served.
    assert anonymous.get("/credential-policies/default/fleet-a/ca.pem").status_code == 200
