"""The portal driven end to end in chromium against a real `devprov serve`, with a PKI made by
devprov's own CA tooling: prove possession of a CA certificate (a proof signed by the wrong key
first, then the right one), add one verified on upload, enroll a device through a group on the
proven certificate and see it registered, disable the group and see the device refused. Every
other kind of page is visited too, on a laptop-sized window and on a phone-sized one, and the
sign-in is done with the keyboard alone. Each page visited is kept as a screenshot and checked
with axe-core (docs/portal.md#browser-tests)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.portal.flow import (
    EXIT_ASSIGNED,
    EXIT_DISABLED,
    SERVICE,
    Pki,
    add_certificate,
    check,
    create_group,
    link_hub,
    make_pki,
    open_section,
    register_device,
    row_of,
    server_json,
    service_url,
    sign_in,
    stored_verified,
)
from tests.server import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

DEVICE = "flow-device-1"
HUB = "flow-hub.azure-devices.net"
PHONE = {"width": 390, "height": 844}  # CSS pixels of a current mid-size phone, portrait
SIGNER_MISMATCH = "The verification certificate was not signed by this certificate's key."


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("flow-pki"), DEVICE)


@pytest.fixture
def signed_in_page(page: Page, portal_server: ServerProcess) -> Iterator[Page]:
    sign_in(page, portal_server)
    yield page


def test_prove_enroll_register_and_disable(
    signed_in_page: Page, portal_server: ServerProcess, pki: Pki
) -> None:
    from playwright.sync_api import expect

    page, server = signed_in_page, portal_server
    check(page, "services")
    page.get_by_role("link", name=SERVICE, exact=True).click()
    expect(page).to_have_url(service_url(server, "certificates"))
    check(page, "certificates-empty")

    # Certificate A, unverified: the list and the server say so
    add_certificate(page, server, "flow-a", pki.file("root-a.pem"), verified=False)
    check(page, "certificate-a-added")
    open_section(page, "Certificates")
    expect(row_of(page, f"Certificates of {SERVICE}", "flow-a")).to_contain_text("Unverified")
    check(page, "certificates-a-unverified")
    assert stored_verified(server, "flow-a") is False

    page.get_by_role("link", name="flow-a", exact=True).click()
    page.get_by_role("button", name="Generate verification code").click()
    code = page.locator("#verification-code").inner_text().strip()
    assert re.fullmatch(r"[0-9A-F]{48}", code), code
    check(page, "certificate-a-code")

    # a proof signed by another root's key, with root A's name: refused, the check named
    page.get_by_label("Verification certificate (.pem or .cer)").set_input_files(
        pki.verification(code, "wrong")
    )
    page.get_by_role("button", name="Verify", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text(SIGNER_MISMATCH)
    expect(page.locator("#status")).to_contain_text("Unverified")
    check(page, "certificate-a-wrong-key")
    assert stored_verified(server, "flow-a") is False

    # the proof signed by root A's own key: verified by proof of possession
    page.get_by_label("Verification certificate (.pem or .cer)").set_input_files(
        pki.verification(code, "root-a")
    )
    page.get_by_role("button", name="Verify", exact=True).click()
    expect(page.locator("#status")).to_contain_text("Verified")
    expect(page.locator("#status")).not_to_contain_text("Unverified")
    expect(page.locator("#status .status-method")).to_have_text("proof-of-possession")
    check(page, "certificate-a-verified")
    assert stored_verified(server, "flow-a") is True

    # Certificate B, verified on upload: self-attested
    add_certificate(page, server, "flow-b", pki.file("root-b.pem"), verified=True)
    expect(page.locator("#status .status-word")).to_have_text("Verified")
    expect(page.locator("#status .status-method")).to_have_text("self-attested")
    check(page, "certificate-b-verified")
    assert stored_verified(server, "flow-b") is True
    open_section(page, "Certificates")
    table = f"Certificates of {SERVICE}"
    expect(row_of(page, table, "flow-a")).to_contain_text("proof-of-possession")
    expect(row_of(page, table, "flow-b")).to_contain_text("self-attested")
    check(page, "certificates-both-verified")

    # a hub to assign devices to, and a group on certificate A
    link_hub(page, server, HUB)
    check(page, "hubs")
    create_group(page, server, "flow-group", "X.509: a CA certificate of this service", ca="flow-a")
    expect(page.locator("dl.facts")).to_contain_text("X.509 CA: flow-a")
    check(page, "group")
    group = server_json(server, "enrollment-group", "show", "flow-group")
    assert group["attestation"]["x509"]["caReferences"]["primary"] == "flow-a"

    registered = register_device(server, pki)
    assert registered.returncode == EXIT_ASSIGNED, registered.stdout + registered.stderr
    assert HUB in registered.stdout

    open_section(page, "Registrations")
    registrations = f"Registrations of {SERVICE}"
    expect(row_of(page, registrations, DEVICE)).to_contain_text("assigned")
    expect(row_of(page, registrations, DEVICE)).to_contain_text(HUB)
    check(page, "registrations")
    page.get_by_label("Registration ID").fill(DEVICE.upper())  # a prefix, ignoring case
    page.get_by_role("button", name="Search").click()
    expect(row_of(page, registrations, DEVICE)).to_contain_text("assigned")
    check(page, "registrations-search")
    page.get_by_role("link", name="Group: flow-group").click()
    expect(row_of(page, "Registrations of flow-group", DEVICE)).to_contain_text("assigned")
    check(page, "group-registered")

    # disabled: the group says so, the server stored it, and the device is refused
    page.get_by_role("button", name="Disable", exact=True).click()
    expect(page.locator("dl.facts")).to_contain_text("Disabled")
    expect(page.get_by_role("button", name="Enable", exact=True)).to_be_visible()
    check(page, "group-disabled")
    group = server_json(server, "enrollment-group", "show", "flow-group")
    assert group["provisioningStatus"] == "disabled"
    refused = register_device(server, pki, "--force-registration")
    assert refused.returncode == EXIT_DISABLED, refused.stdout + refused.stderr

    page.reload()
    expect(row_of(page, "Registrations of flow-group", DEVICE)).to_contain_text("disabled")
    check(page, "group-refused")
    open_section(page, "Registrations")
    expect(row_of(page, registrations, DEVICE)).to_contain_text("disabled")
    check(page, "registrations-refused")
    open_section(page, "Audit log")
    page.get_by_label("Registration ID").fill(DEVICE)
    page.get_by_role("button", name="Filter").click()
    check(page, "audit-device")
    audit = page.get_by_role("table", name=f"Audit log of {SERVICE}")
    refusal = audit.get_by_role("row").filter(has_text="enrollment group 'flow-group' is disabled")
    expect(refusal).to_contain_text("failed")
    expect(audit.get_by_role("row").filter(has_text=f"assigned to {HUB}")).to_contain_text(
        "succeeded"
    )
