"""Operational certificates in the portal, driven in chromium against a real `devprov serve`:
create a credential policy, name it from a symmetric-key group's form, register a device of the
group over HTTPS with a CSR and see its certificate under the policy, revoke it after the
confirmation (the server's CRL then lists it), and delete the policy, which the group names:
refused without the force choice, done with it. Every page visited is kept as a screenshot and
checked with axe-core (docs/portal.md#the-credential-policy-flow)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.portal.flow import (
    SERVICE,
    check,
    create_group,
    https_client,
    link_hub,
    open_section,
    register_with_csr,
    row_of,
    server_json,
    service_url,
    sign_in,
)
from tests.server import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

POLICY = "flow-policy"
GROUP = "flow-keys"
DEVICE = "flow-csr-device"
HUB = "flow-hub.azure-devices.net"
VALIDITY_DAYS = 7
ORGANIZATION = "Flow Org"


def csr_for(device: str) -> str:
    """A CSR for a new P-384 key whose CN is ``device``: base64 of its DER, as the register
    body carries it."""
    key = ec.generate_private_key(ec.SECP384R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device)]))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()


def create_policy(page: Page) -> None:
    from playwright.sync_api import expect

    open_section(page, "Credential policies")
    expect(page.get_by_role("table", name=f"Credential policies of {SERVICE}")).to_contain_text(
        "No credential policy yet"
    )
    check(page, "policies-empty")
    page.get_by_label("Name", exact=True).fill(POLICY)
    page.get_by_label("Key type of the new CA").select_option("ec-p256")
    page.get_by_label("Validity of each certificate (days)").fill(str(VALIDITY_DAYS))
    page.get_by_label("Organization (O), optional").fill(ORGANIZATION)
    page.get_by_label("serverAuth beside clientAuth").check()
    check(page, "policy-form")
    page.get_by_role("button", name="Create policy").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(POLICY)
    expect(page.get_by_role("status").first).to_contain_text(f"Credential policy {POLICY} created.")


def test_create_name_issue_revoke_and_delete_a_policy(
    page: Page, portal_server: ServerProcess
) -> None:
    from playwright.sync_api import expect

    server = portal_server
    sign_in(page, server)
    page.goto(service_url(server, "certificates"))
    create_policy(page)
    check(page, "policy-created")
    stored = server_json(server, "credential-policy", "show", POLICY)
    assert (stored["validityDays"], stored["organization"], stored["serverAuth"]) == (
        VALIDITY_DAYS,
        ORGANIZATION,
        True,
    )
    assert stored["ca"]["keyType"] == "ec-p256"
    chain = page.get_by_role("table", name=f"CA chain of {POLICY}, issuing CA first")
    expect(chain).to_contain_text(stored["ca"]["sha256Thumbprint"])
    # The CA chain the page links to is the one the server publishes, without a session.
    ca_link = page.get_by_role("link", name="CA chain (PEM)")
    with https_client(server) as anonymous:
        published = anonymous.get(ca_link.get_attribute("href") or "")
    assert published.status_code == 200
    (ca,) = x509.load_pem_x509_certificates(published.content)

    # a hub, and a symmetric-key group that names the policy from its form
    link_hub(page, server, HUB)
    create_group(page, server, GROUP, "Symmetric key", credential_policy=POLICY)
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text(f"Credential policy {POLICY}")
    check(page, "group-with-policy")
    assert server_json(server, "enrollment-group", "show", GROUP)["credentialPolicyName"] == POLICY

    # a device of the group registers over HTTPS with a CSR and gets a certificate of the CA
    group_key = server_json(server, "enrollment-group", "keys", GROUP)["symmetricKey"]["primaryKey"]
    answer = register_with_csr(server, DEVICE, group_key, csr_for(DEVICE))
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "assigned"
    issued = answer.json()["registrationState"]["issuedCertificateChain"]
    leaf = x509.load_der_x509_certificate(base64.b64decode(issued[0]))
    leaf.verify_directly_issued_by(ca)
    serial = f"{leaf.serial_number:X}"

    page.get_by_role("link", name=POLICY, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(POLICY)
    certificates = f"Certificates issued under {POLICY}"
    row = row_of(page, certificates, serial)
    expect(row).to_contain_text(DEVICE)
    check(page, "policy-issued")

    # revoke it: a confirmation first, then the policy's page says so, and so does the server
    page.get_by_role("link", name=f"Revoke {serial}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Revoke certificate {serial}?")
    check(page, "revoke-confirmation")
    page.get_by_role("button", name="Revoke certificate").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(POLICY)
    expect(row_of(page, certificates, serial)).to_contain_text("Revoked")
    expect(page.get_by_role("link", name=f"Revoke {serial}")).to_have_count(0)
    check(page, "policy-revoked")
    (record,) = server_json(server, "issued", "list", "--policy", POLICY)
    assert record["serialNumber"] == serial and record["revoked"] is not None
    with https_client(server) as anonymous:
        crl_answer = anonymous.get(
            page.get_by_role("link", name="CRL (DER)").get_attribute("href") or ""
        )
    assert crl_answer.status_code == 200
    crl = x509.load_der_x509_crl(crl_answer.content)
    assert crl.is_signature_valid(ca.public_key())
    assert [entry.serial_number for entry in crl] == [leaf.serial_number]

    # delete the policy the group names: refused without the force choice, done with it
    page.get_by_role("link", name="Delete credential policy").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Delete credential policy {POLICY}?")
    expect(page.get_by_role("status").first).to_contain_text("1 enrollment names this policy.")
    check(page, "policy-delete-confirmation")
    page.get_by_role("button", name="Delete credential policy").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was deleted")
    expect(page.get_by_role("alert")).to_contain_text("CredentialPolicyInUse")
    check(page, "policy-delete-refused")
    assert server_json(server, "credential-policy", "show", POLICY)["name"] == POLICY
    page.get_by_label("Delete it although enrollments name it").check()
    page.get_by_role("button", name="Delete credential policy").click()
    expect(page.get_by_role("status").first).to_contain_text(f"Credential policy {POLICY} deleted")
    expect(page.get_by_role("table", name=f"Credential policies of {SERVICE}")).to_contain_text(
        "No credential policy yet"
    )
    check(page, "policy-deleted")
    assert server_json(server, "credential-policy", "list") == []

    # the group still names it: its page says the policy is missing
    page.goto(service_url(server, f"groups/{GROUP}"))
    expect(page.get_by_role("status").first).to_contain_text(f"“{POLICY}” no longer exists")
    expect(facts).to_contain_text("Missing")
    check(page, "group-policy-missing")
