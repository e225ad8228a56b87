"""The credential policy pages: the list with each policy's use, creating one (and each refusal),
a policy's page with its CA chain, its public addresses and the certificates issued under it
(paged), revoking one after a confirmation (twice: a clear error), deleting a policy (in use:
only with the force choice), the 404s and the CSRF refusals."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from cryptography import x509
from starlette.testclient import TestClient

from devprov.bootstrap import Container
from devprov.core.certificate import describe_certificate, parse_certificates
from devprov.core.credential_policy import CredentialPolicy, IssuedCertificate
from devprov.core.enrollment import EnrollmentKind
from devprov.http.app import build_app
from devprov.service.credential_policy import CredentialPolicyNotFoundError
from tests import operational as op
from tests.portal.conftest import BASE_URL, csrf_of
from tests.portal.pages import link_named, post_form
from tests.portal.registered import register, symmetric_group

POLICIES = "/portal/s/default/credential-policies"
ADMIN = "portal:admin"
_ROW = re.compile(r"<tr>(.*?)</tr>", re.S)
_CELL = re.compile(r'<td data-label="([^"]+)">(.*?)</td>', re.S)
_TAG = re.compile(r"<[^>]+>")


def rows(text: str, caption: str) -> list[dict[str, str]]:
    """The body rows of the table captioned ``caption``: each cell's text by its label."""
    start = text.index(f"<caption>{html.escape(caption)}</caption>")
    table = text[start : text.index("</table>", start)]
    found = []
    for row in _ROW.findall(table):
        cells = {
            label: " ".join(html.unescape(_TAG.sub("", cell)).split())
            for label, cell in _CELL.findall(row)
        }
        if cells:
            found.append(cells)
    return found


def create_policy(container: Container, name: str = "fleet", **profile: object) -> CredentialPolicy:
    return container.credential_policies.create(
        "default", name, key_type="ec-p256", actor="test", **profile
    )


def issue(container: Container, device: str) -> IssuedCertificate:
    """``device`` registers with a CSR in a group naming the policy; the certificate it got."""
    outcome = register(container, device, csr=op.b64(op.csr(op.p384_key(), device)))
    assert outcome.issued_chain, outcome
    (leaf, *_) = op.chain_of(outcome.issued_chain)
    return container.credential_policies.issued_certificate("default", f"{leaf.serial_number:X}")


@pytest.fixture
def fleet(container: Container) -> Iterator[CredentialPolicy]:
    """Policy 'fleet' and group 'sensors' naming it."""
    policy = create_policy(container)
    symmetric_group(container, "sensors", policy="fleet")
    yield policy


def audit_actions(container: Container) -> list[tuple[str, str]]:
    return [(e.action, e.actor) for e in container.audit.events(limit=1000)]


# --- the list -----------------------------------------------------------------------------------


def test_the_list_shows_each_policy_with_its_ca_profile_and_use(
    signed_in: TestClient, container: Container, fleet: CredentialPolicy
) -> None:
    spare = create_policy(
        container,
        "spare",
        validity_days=7,
        organization="Contoso",
        organizational_unit="Plant 7",
        server_auth=True,
    )
    container.enrollments.create_or_update(
        "default",
        EnrollmentKind.INDIVIDUAL,
        "dev-1",
        {"attestation": {"type": "symmetricKey"}, "credentialPolicyName": "FLEET"},
        if_match=None,
        actor="test",
    )
    page = signed_in.get(POLICIES)
    assert page.status_code == 200
    listed = rows(page.text, "Credential policies of default")
    assert [row["Name"] for row in listed] == ["fleet", "spare"]
    for row, policy, naming in ((listed[0], fleet, 2), (listed[1], spare, 0)):
        ca = parse_certificates(policy.ca_chain_pem)[0]
        assert row["CA subject"] == describe_certificate(ca).subject
        assert row["Origin"] == policy.origin.value
        assert row["Key type"] == "ec-p256"
        assert row["Validity"] == f"{policy.validity_days} days"
        assert row["Enrollments"] == str(naming)
        assert row["Enrollments"] == str(
            container.credential_policies.enrollments_naming("default", policy.name)
        )
    assert listed[0]["Profile"] == "CN=<registration ID>; clientAuth"
    assert (
        listed[1]["Profile"]
        == "O=Contoso, OU=Plant 7, CN=<registration ID>; clientAuth, serverAuth"
    )
    assert link_named(page.text, "fleet") == f"{POLICIES}/fleet"
    assert link_named(page.text, "Credential policies") == POLICIES  # the section's nav entry


def test_the_list_of_an_unknown_service_is_404_in_the_page(signed_in: TestClient) -> None:
    answer = signed_in.get("/portal/s/nowhere/credential-policies")
    assert answer.status_code == 404
    assert "ServiceNotFound" in answer.text


# --- creating -----------------------------------------------------------------------------------


def test_a_policy_is_created_from_the_form(signed_in: TestClient, container: Container) -> None:
    answer = post_form(
        signed_in,
        POLICIES,
        POLICIES,
        {
            "name": "Plant-7",
            "key_type": "ec-p256",
            "validity_days": "14",
            "organization": "Contoso",
            "organizational_unit": "",
            "server_auth": "true",
        },
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{POLICIES}/Plant-7?created=1"
    policy = container.credential_policies.show("default", "plant-7")
    assert (policy.name, policy.validity_days, policy.organization) == ("Plant-7", 14, "Contoso")
    assert policy.organizational_unit is None and policy.server_auth
    assert parse_certificates(policy.ca_chain_pem)[0].public_key().curve.name == "secp256r1"
    assert ("credentialPolicy.create", ADMIN) in audit_actions(container)
    shown = signed_in.get(answer.headers["location"]).text
    assert "Credential policy Plant-7 created." in shown


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        pytest.param({"name": "x"}, "InvalidCredentialPolicy (400620)", id="fail/short-name"),
        pytest.param({"name": "bad name!"}, "InvalidCredentialPolicy (400620)", id="fail/name"),
        pytest.param({"validity_days": "0"}, "InvalidCredentialPolicy (400620)", id="fail/days-0"),
        pytest.param(
            {"validity_days": "91"}, "InvalidCredentialPolicy (400620)", id="fail/days-91"
        ),
        pytest.param(
            {"validity_days": "ten"}, "InvalidCredentialPolicy (400620)", id="fail/days-text"
        ),
        pytest.param(
            {"key_type": "dsa-1024"}, "InvalidCredentialPolicy (400620)", id="fail/key-type"
        ),
        pytest.param(
            {"organization": "O" * 65}, "InvalidCredentialPolicy (400620)", id="fail/long-o"
        ),
    ],
)
def test_a_refused_create_shows_why_and_keeps_what_was_typed(
    signed_in: TestClient, container: Container, fields: dict[str, str], code: str
) -> None:
    sent = {"name": "fleet", "key_type": "ec-p256", "validity_days": "30", **fields}
    answer = post_form(signed_in, POLICIES, POLICIES, sent)
    assert answer.status_code == 400
    assert f"Error {code}" in answer.text
    assert f'value="{html.escape(sent["name"])}"' in answer.text
    assert f'value="{sent["validity_days"]}"' in answer.text
    assert container.credential_policies.list("default") == []


def test_a_name_taken_is_refused_ignoring_case(
    signed_in: TestClient, container: Container, fleet: CredentialPolicy
) -> None:
    answer = post_form(
        signed_in,
        POLICIES,
        POLICIES,
        {"name": "FLEET", "key_type": "ec-p256", "validity_days": "30"},
    )
    assert answer.status_code == 409
    assert "AlreadyExists" in answer.text
    assert container.credential_policies.list("default") == [fleet]


# --- one policy ---------------------------------------------------------------------------------


def test_the_policy_page_shows_its_ca_chain_and_serves_its_addresses(
    signed_in: TestClient, container: Container, fleet: CredentialPolicy
) -> None:
    page = signed_in.get(f"{POLICIES}/FLEET")  # names compare ignoring case
    assert page.status_code == 200
    (shown,) = rows(page.text, "CA chain of fleet, issuing CA first")
    facts = describe_certificate(parse_certificates(fleet.ca_chain_pem)[0])
    assert shown["Subject"] == facts.subject and shown["Issuer"] == facts.issuer
    assert shown["SHA-256"] == facts.sha256_thumbprint
    assert shown["Not after"] == f"{facts.not_after:%Y-%m-%d %H:%M:%S} UTC"
    ca_url = link_named(page.text, "CA chain (PEM)")
    crl_url = link_named(page.text, "CRL (DER)")
    assert ca_url == "/credential-policies/default/fleet/ca.pem"
    assert crl_url == "/credential-policies/default/fleet/crl"
    assert f"{BASE_URL}{ca_url}" in page.text  # the full address, to copy
    # Both are served without a session, to the hubs and brokers that check the certificates.
    with TestClient(build_app(container), base_url=BASE_URL) as nobody:
        pem = nobody.get(ca_url)
        crl = nobody.get(crl_url)
    assert pem.status_code == 200 and pem.text == fleet.ca_chain_pem
    assert crl.status_code == 200
    issuer = parse_certificates(fleet.ca_chain_pem)[0]
    assert x509.load_der_x509_crl(crl.content).is_signature_valid(issuer.public_key())
    assert "No certificate issued under this policy" in page.text


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("nope", id="fail/page"),
        pytest.param("nope/delete", id="fail/delete"),
        pytest.param("nope/issued/0A/revoke", id="fail/revoke"),
    ],
)
def test_an_unknown_policy_is_404_in_the_page(
    signed_in: TestClient, fleet: CredentialPolicy, path: str
) -> None:
    answer = signed_in.get(f"{POLICIES}/{path}")
    assert answer.status_code == 404
    assert f"CredentialPolicyNotFound ({CredentialPolicyNotFoundError.number})" in answer.text
    # the twin: the same path of the policy that exists finds it
    twin = signed_in.get(f"{POLICIES}/{path.replace('nope', 'fleet')}")
    assert "CredentialPolicyNotFound" not in twin.text


def test_the_issued_certificates_are_paged_to_the_end_each_once(
    signed_in: TestClient, container: Container, fleet: CredentialPolicy
) -> None:
    first = issue(container, "dev-1")
    issue(container, "dev-2")
    issue(container, "dev-3")
    renewed = issue(container, "dev-1")  # supersedes the first
    expected = container.credential_policies.issued("default", policy="fleet")
    assert [c.serial for c in expected][-1] == renewed.serial
    seen: list[dict[str, str]] = []
    url: str | None = f"{POLICIES}/fleet?size=3"
    while url is not None:
        page = signed_in.get(url)
        assert page.status_code == 200
        found = rows(page.text, "Certificates issued under fleet")
        assert 1 <= len(found) <= 3
        seen += found
        url = link_named(page.text, "Next page")
        if url is not None:
            url = f"{POLICIES}/fleet{url}"
    assert "End of the list" in page.text
    assert [row["Serial"] for row in seen] == [c.serial for c in expected]
    by_serial = {row["Serial"]: row for row in seen}
    superseded = container.credential_policies.issued_certificate("default", first.serial)
    assert superseded.superseded_at is not None
    old = by_serial[first.serial]
    assert old["Registration ID"] == "dev-1"
    assert old["Superseded"] == f"{superseded.superseded_at:%Y-%m-%d %H:%M:%S} UTC"
    assert old["Not after"] == f"{first.not_after:%Y-%m-%d %H:%M:%S} UTC"
    assert old["Issued"] == f"{first.issued_at:%Y-%m-%d %H:%M:%S} UTC"
    assert by_serial[renewed.serial]["Superseded"] == "—"
    assert all(row["Revoked"] == "—" for row in seen)


def test_a_page_position_that_is_not_a_serial_is_refused(
    signed_in: TestClient, fleet: CredentialPolicy
) -> None:
    answer = signed_in.get(f"{POLICIES}/fleet?after=not-hex")
    assert answer.status_code == 400
    assert "InvalidSerialNumber" in answer.text


# --- revoking -----------------------------------------------------------------------------------


def revoke_url(record: IssuedCertificate, policy: str = "fleet") -> str:
    return f"{POLICIES}/{policy}/issued/{record.serial}/revoke"


def test_revoke_asks_first_then_revokes_and_a_second_time_is_a_clear_error(
    signed_in: TestClient, container: Container, fleet: CredentialPolicy
) -> None:
    record = issue(container, "dev-1")
    page = signed_in.get(f"{POLICIES}/fleet").text
    assert link_named(page, "Revoke") == revoke_url(record)
    confirm = signed_in.get(revoke_url(record))
    assert confirm.status_code == 200
    assert "dev-1" in confirm.text and "Revoke certificate" in confirm.text
    token = csrf_of(confirm.text)
    assert (
        container.credential_policies.issued_certificate("default", record.serial).revoked_at
        is None
    )

    answer = signed_in.post(revoke_url(record), data={"csrf": token})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{POLICIES}/fleet?revoked={record.serial}"
    revoked = container.credential_policies.issued_certificate("default", record.serial)
    assert revoked.revoked_at is not None
    assert ("issuedCertificate.revoke", ADMIN) in audit_actions(container)
    crl = x509.load_der_x509_crl(container.credential_policies.crl("default", "fleet"))
    assert [entry.serial_number for entry in crl] == [int(record.serial, 16)]
    after = signed_in.get(answer.headers["location"]).text
    assert f"Certificate {record.serial} revoked" in after
    (row,) = rows(after, "Certificates issued under fleet")
    assert row["Revoked"] == f"Revoked {revoked.revoked_at:%Y-%m-%d %H:%M:%S} UTC"
    assert link_named(after, "Revoke") is None

    # The same form sent again (another tab, a double click): refused, and nothing changes.
    again = signed_in.post(revoke_url(record), data={"csrf": token})
    assert again.status_code == 409
    assert "CertificateAlreadyRevoked (409622)" in again.text
    assert "revoked at" in again.text and "already" in again.text
    assert 'type="submit" class="danger"' not in again.text
    unchanged = container.credential_policies.issued_certificate("default", record.serial)
    assert unchanged.revoked_at == revoked.revoked_at
    assert container.credential_policies.show("default", "fleet").crl_number == 1
    shown = signed_in.get(revoke_url(record))
    assert shown.status_code == 200 and "revoked already" in shown.text


def test_revoke_refuses_a_serial_the_policy_did_not_issue(
    signed_in: TestClient, container: Container, fleet: CredentialPolicy
) -> None:
    record = issue(container, "dev-1")
    create_policy(container, "other")
    unknown = f"{int(record.serial, 16) + 1:X}"
    for url, status, code in (
        (f"{POLICIES}/fleet/issued/{unknown}/revoke", 404, "IssuedCertificateNotFound"),
        (revoke_url(record, "other"), 404, "IssuedCertificateNotFound"),
        (f"{POLICIES}/fleet/issued/not-hex/revoke", 400, "InvalidSerialNumber"),
    ):
        for answer in (
            signed_in.get(url),
            post_form(signed_in, f"{POLICIES}/fleet", url, {}),
        ):
            assert answer.status_code == status, url
            assert code in answer.text
    assert (
        container.credential_policies.issued_certificate("default", record.serial).revoked_at
        is None
    )


# --- deleting -----------------------------------------------------------------------------------


def test_delete_of_an_unused_policy_asks_first_then_deletes(
    signed_in: TestClient, container: Container
) -> None:
    create_policy(container, "spare")
    page = signed_in.get(f"{POLICIES}/spare").text
    delete = link_named(page, "Delete credential policy")
    assert delete == f"{POLICIES}/spare/delete"
    confirm = signed_in.get(delete)
    assert confirm.status_code == 200
    assert "No enrollment names this policy." in confirm.text
    assert 'name="force"' not in confirm.text
    assert [p.name for p in container.credential_policies.list("default")] == ["spare"]
    answer = post_form(signed_in, delete, delete, {})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{POLICIES}?deleted=spare"
    assert container.credential_policies.list("default") == []
    assert ("credentialPolicy.delete", ADMIN) in audit_actions(container)
    assert "Credential policy spare deleted" in signed_in.get(answer.headers["location"]).text


def test_delete_of_a_policy_in_use_needs_the_force_choice(
    signed_in: TestClient, container: Container, fleet: CredentialPolicy
) -> None:
    record = issue(container, "dev-1")
    delete = f"{POLICIES}/fleet/delete"
    confirm = signed_in.get(delete)
    assert "1 enrollment names this policy." in confirm.text
    assert 'name="force"' in confirm.text
    refused = post_form(signed_in, delete, delete, {})
    assert refused.status_code == 409
    assert "Nothing was deleted" in refused.text
    assert "CredentialPolicyInUse (409621)" in refused.text
    assert container.credential_policies.show("default", "fleet") == fleet

    answer = post_form(signed_in, delete, delete, {"force": "true"})
    assert answer.status_code == 303
    with pytest.raises(CredentialPolicyNotFoundError):
        container.credential_policies.show("default", "fleet")
    (event,) = [e for e in container.audit.events(limit=1000) if e.action.endswith("delete")]
    assert event.actor == ADMIN and event.reason is not None and "forced" in event.reason
    # What it issued stays on record, and the group's page says its policy is missing.
    assert [c.serial for c in container.credential_policies.issued("default")] == [record.serial]
    group = signed_in.get("/portal/s/default/groups/sensors").text
    assert "no longer exists" in group and "Missing" in group


# --- CSRF ---------------------------------------------------------------------------------------


def test_every_form_of_these_pages_without_the_csrf_token_is_refused(
    signed_in: TestClient, container: Container, fleet: CredentialPolicy
) -> None:
    record = issue(container, "dev-1")
    before = container.audit.events(limit=1000)
    for url, data in (
        (POLICIES, {"name": "other", "key_type": "ec-p256", "validity_days": "30"}),
        (f"{POLICIES}/fleet/delete", {"force": "true"}),
        (revoke_url(record), {}),
        ("/portal/s/default/groups/sensors/credential-policy", {"credential_policy": ""}),
    ):
        answer = signed_in.post(url, data=data)
        assert answer.status_code == 403, url
        assert "CsrfTokenMissing" in answer.text
    assert container.audit.events(limit=1000) == before
    assert container.credential_policies.list("default") == [fleet]
    assert (
        container.credential_policies.issued_certificate("default", record.serial).revoked_at
        is None
    )
    group = container.enrollments.get("default", EnrollmentKind.GROUP, "sensors")
    assert group.credential_policy == "fleet"
