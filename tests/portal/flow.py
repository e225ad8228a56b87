"""What the portal's browser flow tests share: devprov's CLI run as a subprocess (the CA tooling
that makes the test PKI, and the API client that reads what the server stored), and the steps a
person takes in the portal, each followed by a screenshot and an accessibility check
(tests/browser.py). The tests themselves are in test_browser_flow.py."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from devprov.core.sas import build_sas_token, derive_device_key
from tests.browser import assert_accessible, screenshot
from tests.server import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

SERVICE = "default"  # the provisioning service `devprov serve` creates in a new data directory
CLI_TIMEOUT_SECONDS = 120  # one CLI command; a device registration polls for a few seconds

# The CLI's exit codes of `device register` (devprov.cli.device, its epilog).
EXIT_ASSIGNED = 0
EXIT_DISABLED = 5

# The register's api-version that carries a CSR (docs/operational-certificates.md#the-wire).
CSR_API_VERSION = "2025-07-01-preview"
SAS_LIFETIME_SECONDS = 600  # a device's SAS token, for one registration

ROOT_CN = "devprov Flow Root A"
OTHER_ROOT_CN = "devprov Flow Root B"


def devprov(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``devprov ARGS`` as a separate process, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "devprov.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


def devprov_ok(*args: str | Path) -> str:
    """``devprov ARGS``, which must succeed; its standard output."""
    done = devprov(*args)
    assert done.returncode == 0, f"devprov {' '.join(map(str, args))}:\n{done.stdout}{done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class Pki:
    """Files `devprov ca` wrote: root A with an intermediate and a device below it; root B;
    and "wrong", a root with root A's subject name but a key of its own."""

    directory: Path
    device: str  # the device's registration ID, its certificate's CN

    def file(self, name: str) -> Path:
        return self.directory / name

    def issuer(self, prefix: str) -> tuple[str, Path, str, Path]:
        return (
            "--issuer-cert",
            self.file(f"{prefix}.pem"),
            "--issuer-key",
            self.file(f"{prefix}.key"),
        )

    def verification(self, code: str, signer: str) -> Path:
        """A verification certificate for ``code``, signed by the CA files ``signer``.pem and .key."""
        out = self.file(f"proof-by-{signer}.pem")
        devprov_ok("ca", "verification", code, *self.issuer(signer), "--out", out, "--force")
        return out


def make_pki(directory: Path, device: str) -> Pki:
    pki = Pki(directory, device)
    into = ("--dir", directory)
    devprov_ok("ca", "root", "--name", "root-a", "--cn", ROOT_CN, *into)
    devprov_ok("ca", "root", "--name", "root-b", "--cn", OTHER_ROOT_CN, *into)
    # the same subject as root A, so that only the signature can tell its proofs apart
    devprov_ok("ca", "root", "--name", "wrong", "--cn", ROOT_CN, *into)
    devprov_ok("ca", "intermediate", "--name", "intermediate-a", *pki.issuer("root-a"), *into)
    devprov_ok("ca", "device", device, *pki.issuer("intermediate-a"), *into)
    return pki


def server_json(server: ServerProcess, *args: str) -> Any:
    """What the server stored, through the CLI's management and service API client."""
    return json.loads(devprov_ok(*args, *server.cli_args(), "--json"))


def stored_verified(server: ServerProcess, certificate: str) -> bool:
    verified: bool = server_json(server, "certificate", "show", certificate)["properties"][
        "isVerified"
    ]
    return verified


def register_device(
    server: ServerProcess, pki: Pki, *extra: str
) -> subprocess.CompletedProcess[str]:
    full_chain = pki.file(f"{pki.device}-full-chain.pem")
    key = pki.file(f"{pki.device}.key")
    return devprov(
        "device", "register", pki.device, "--cert", full_chain, "--key", key,
        *server.cli_args(), *extra,
    )  # fmt: skip


def https_client(server: ServerProcess) -> httpx.Client:
    """A client of the server's HTTPS port that trusts its data directory's server CA."""
    return httpx.Client(
        base_url=server.url, verify=ssl.create_default_context(cafile=str(server.ca_file))
    )


def register_with_csr(
    server: ServerProcess, device: str, group_key: str, csr: str
) -> httpx.Response:
    """A device of a symmetric-key group registers over HTTPS with ``csr`` (base64 DER), as a
    device does: ``PUT /{idScope}/registrations/{id}/register`` with its SAS token."""
    scope = server_json(server, "service", "show", SERVICE)["idScope"]
    token = build_sas_token(
        derive_device_key(group_key, device),
        f"{scope}/registrations/{device}",
        int(time.time()) + SAS_LIFETIME_SECONDS,
    )
    with https_client(server) as client:
        return client.put(
            f"/{scope}/registrations/{device}/register?api-version={CSR_API_VERSION}",
            json={"registrationId": device, "csr": csr},
            headers={"Authorization": token},
        )


def check(page: Page, step: str) -> None:
    """Every page visited: a screenshot for the artefacts, then axe-core's WCAG 2.1 AA rules."""
    screenshot(page, step)
    assert_accessible(page)


def portal_url(server: ServerProcess, path: str) -> str:
    return f"{server.url}/portal/{path}"


def service_url(server: ServerProcess, path: str) -> str:
    return portal_url(server, f"s/{SERVICE}/{path}")


def token_form(page: Page) -> Locator:
    """The sign-in page's admin-token form (the page has a user-and-password one too, with a
    "Sign in" button of its own)."""
    return page.locator("form").filter(has=page.get_by_label("Admin token"))


def sign_in(page: Page, server: ServerProcess, token: str | None = None) -> None:
    from playwright.sync_api import expect

    page.goto(portal_url(server, "sign-in"))
    form = token_form(page)
    form.get_by_label("Admin token").fill(server.token if token is None else token)
    form.get_by_role("button", name="Sign in").click()
    if token is None:
        expect(page).to_have_url(portal_url(server, "services"))


def open_section(page: Page, name: str) -> None:
    """Follow a link of the service's section navigation."""
    page.get_by_role("navigation", name=f"Sections of {SERVICE}").get_by_role(
        "link", name=name, exact=True
    ).click()


def row_of(page: Page, table: str, text: str) -> Locator:
    """The row of the table named ``table`` (its caption) whose cells include ``text``."""
    return (
        page.get_by_role("table", name=table)
        .get_by_role("row")
        .filter(has=page.get_by_role("cell", name=re.compile(rf"^\s*{re.escape(text)}\b")))
    )


def add_certificate(
    page: Page, server: ServerProcess, name: str, file: Path, *, verified: bool
) -> None:
    from playwright.sync_api import expect

    page.goto(service_url(server, "certificates"))
    page.get_by_role("link", name="Add a certificate").first.click()
    check(page, f"certificate-add-{name}")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Certificate file (.pem or .cer)").set_input_files(file)
    if verified:
        page.get_by_label("Set certificate status to verified on upload").check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)


def link_hub(page: Page, server: ServerProcess, host: str) -> None:
    from playwright.sync_api import expect

    page.goto(service_url(server, "hubs"))
    page.get_by_label("Host name").fill(host)
    page.get_by_role("button", name="Link hub").click()
    expect(row_of(page, f"Linked hubs of {SERVICE}", host)).to_have_count(1)


def create_group(
    page: Page,
    server: ServerProcess,
    group: str,
    attestation: str,
    ca: str | None = None,
    credential_policy: str | None = None,
) -> None:
    from playwright.sync_api import expect

    page.goto(service_url(server, "groups"))
    page.get_by_role("link", name="Create an enrollment group").click()
    page.get_by_label("Group ID").fill(group)
    page.get_by_label(attestation, exact=True).check()
    if ca is not None:
        page.get_by_label("CA certificate", exact=True).select_option(ca)
    if credential_policy is not None:
        page.get_by_label("Credential policy", exact=True).select_option(credential_policy)
    check(page, f"group-new-{group}")
    page.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(group)


def has_no_horizontal_scroll(page: Page) -> bool:
    scrolls: bool = page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    return scrolls
