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
    devprov_ok,
    has_no_horizontal_scroll,
    link_hub,
    make_pki,
    open_section,
    portal_url,
    register_device,
    row_of,
    server_json,
    service_url,
    sign_in,
    stored_verified,
    token_form,
)
from tests.server import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

DEVICE = "flow-device-1"
HUB = "flow-hub.azure-devices.net"
PHONE = {"width": 390, "height": 844}  # CSS pixels of a current mid-size phone, portrait
MAX_TABS = 30  # more than any portal page has links, buttons and fields
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


def test_every_other_kind_of_page(page: Page, portal_server: ServerProcess, pki: Pki) -> None:
    from playwright.sync_api import expect

    server = portal_server
    # a token that is not this server's: refused in the page, nobody signed in
    sign_in(page, server, token="not-the-admin-token")
    expect(page).to_have_url(portal_url(server, "sign-in"))
    expect(page.get_by_role("alert")).to_contain_text("That admin token is not this server's.")
    expect(token_form(page).get_by_label("Admin token")).to_be_empty()
    check(page, "sign-in-wrong-token")
    sign_in(page, server)
    check(page, "services")

    page.goto(service_url(server, "groups"))
    check(page, "groups-empty")
    open_section(page, "Individual enrollments")
    check(page, "enrollments")
    page.get_by_role("link", name="Create an individual enrollment").click()
    expect(page.get_by_label("Registration ID")).to_be_visible()
    check(page, "enrollment-new")

    # a symmetric-key group, its keys shown once: the keys the server holds
    create_group(page, server, "flow-symmetric", "Symmetric key")
    check(page, "group-symmetric")
    page.get_by_role("button", name="Show keys").click()
    keys = server_json(server, "enrollment-group", "keys", "flow-symmetric")["symmetricKey"]
    expect(page.locator("#primary-key")).to_have_text(keys["primaryKey"])
    expect(page.locator("#secondary-key")).to_have_text(keys["secondaryKey"])
    check(page, "group-symmetric-keys")
    page.get_by_role("link", name="Back to flow-symmetric").click()
    page.get_by_role("link", name="Delete enrollment group").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Delete enrollment group flow-symmetric?"
    )
    check(page, "group-delete-confirmation")
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("flow-symmetric")

    link_hub(page, server, HUB)
    check(page, "hubs")
    page.get_by_role("link", name=f"Remove {HUB}").click()
    check(page, "hub-remove-confirmation")
    page.get_by_role("link", name="Cancel").click()
    expect(row_of(page, f"Linked hubs of {SERVICE}", HUB)).to_have_count(1)

    # a certificate's delete confirmation, not confirmed: the certificate stays
    add_certificate(page, server, "flow-b", pki.file("root-b.pem"), verified=True)
    page.get_by_role("link", name="Delete certificate").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete certificate flow-b?")
    check(page, "certificate-delete-confirmation")
    page.get_by_role("link", name="Cancel").click()
    assert stored_verified(server, "flow-b") is True

    # the audit log, filtered by what the portal's session did
    open_section(page, "Audit log")
    page.get_by_label("Actor").fill("portal:admin")
    page.get_by_label("Outcome").select_option("succeeded")
    page.get_by_role("button", name="Filter").click()
    audit = page.get_by_role("table", name=f"Audit log of {SERVICE}")
    expect(audit.get_by_role("row").filter(has_text="flow-symmetric").first).to_be_visible()
    expect(audit.get_by_role("row").filter(has_text="flow-b").first).to_be_visible()
    expect(page.get_by_role("link", name="Clear filters")).to_be_visible()
    check(page, "audit-filtered")
    actors = audit.locator('td[data-label="Actor"]').all_inner_texts()
    assert actors and {actor.strip() for actor in actors} == {"portal:admin"}
    # the twin: an actor who did nothing matches no event
    page.get_by_label("Actor").fill("device:nobody")
    page.get_by_role("button", name="Filter").click()
    expect(audit).to_contain_text("No event matches these filters.")

    # error pages: an unknown certificate, an unknown service
    for step, path in (
        ("error-unknown-certificate", f"s/{SERVICE}/certificates/no-such-certificate"),
        ("error-unknown-service", "s/no-such-service/certificates"),
    ):
        answer = page.goto(portal_url(server, path))
        assert answer is not None and answer.status == 404
        expect(page.get_by_role("alert")).to_be_visible()
        check(page, step)


def populate(server: ServerProcess, pki: Pki) -> None:
    """Something in every list, through the CLI: a verified certificate, a credential policy, a
    hub, a group on the certificate, a device registered through it, and an individual
    enrollment."""
    cli = server.cli_args()
    devprov_ok(
        "certificate", "upload", "flow-a", "--cert", pki.file("root-a.pem"), "--verified", *cli
    )
    devprov_ok("credential-policy", "create", "flow-policy", "--key-type", "ec-p256", *cli)
    devprov_ok("hub", "add", HUB, *cli)
    devprov_ok("enrollment-group", "create", "flow-group", "--ca-name", "flow-a", *cli)
    devprov_ok("enrollment", "create", "flow-individual", "--symmetric-key", *cli)
    registered = register_device(server, pki)
    assert registered.returncode == EXIT_ASSIGNED, registered.stdout + registered.stderr


def test_list_pages_fit_a_phone(page: Page, portal_server: ServerProcess, pki: Pki) -> None:
    from playwright.sync_api import expect

    populate(portal_server, pki)
    page.set_viewport_size(PHONE)
    page.goto(portal_url(portal_server, "sign-in"))
    check(page, "phone-sign-in")
    assert has_no_horizontal_scroll(page)
    sign_in(page, portal_server)
    lists = (
        "certificates",
        "credential-policies",
        "groups",
        "enrollments",
        "registrations",
        "hubs",
        "audit",
    )
    for step, url in [
        ("services", portal_url(portal_server, "services")),
        *((name, service_url(portal_server, name)) for name in lists),
    ]:
        page.goto(url)
        expect(page.locator("tbody tr, ul.cards li").first).to_be_visible()
        check(page, f"phone-{step}")
        assert has_no_horizontal_scroll(page), f"{url} scrolls sideways on a phone"
    # the twin: a page wider than the phone does scroll sideways, and the check says so
    page.goto("about:blank")  # a document of its own, without the portal's policy or styles
    page.set_content('<main style="width: 800px">wider than the phone</main>')
    assert not has_no_horizontal_scroll(page)


def focus_outline(page: Page) -> tuple[str, str, str]:
    """The focused element's tag and its computed outline style and width."""
    found: list[str] = page.evaluate(
        """() => {
            const element = document.activeElement;
            const style = getComputedStyle(element);
            return [element.tagName, style.outlineStyle, style.outlineWidth];
        }"""
    )
    tag, style, width = found
    return tag, style, width


def test_sign_in_with_the_keyboard_alone(page: Page, portal_server: ServerProcess) -> None:
    from playwright.sync_api import expect

    page.goto(portal_url(portal_server, "sign-in"))
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "token":
            break
    else:
        pytest.fail(f"the admin token field was not reached in {MAX_TABS} presses of Tab")
    check(page, "keyboard-token-focused")
    page.keyboard.type(portal_server.token)
    page.keyboard.press("Enter")
    expect(page).to_have_url(portal_url(portal_server, "services"))

    # nothing focused yet: the skip link and the service link show no outline
    assert focus_outline(page)[0] == "BODY"
    service = page.get_by_role("link", name=SERVICE, exact=True)
    assert service.evaluate("e => getComputedStyle(e).outlineStyle") == "none"
    # each link and button reached with Tab shows its focus
    reached: set[str] = set()
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        tag, style, width = focus_outline(page)
        if tag == "BODY":
            break  # past the last focusable element
        assert style != "none" and width != "0px", f"a focused {tag} has no visible outline"
        reached.add(tag)
        if service.evaluate("e => e === document.activeElement"):
            check(page, "keyboard-service-link-focused")
    assert {"A", "BUTTON"} <= reached
    service.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(service_url(portal_server, "certificates"))
