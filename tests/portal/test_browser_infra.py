"""The browser tests' own parts, with no portal page: axe-core passes an accessible page and
names the rules a broken one breaks; screenshots are numbered full-page PNGs in the test's
folder, and a failing test keeps one of its page; the browser reaches a real devprov server
through its pinned key and refuses a server with any other key (docs/portal.md#browser-tests)."""

from __future__ import annotations

import shutil
import ssl
import struct
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.browser import (
    ARTEFACTS,
    AXE_TAGS,
    MISSING_CHROMIUM,
    REPOSITORY,
    accessibility_violations,
    artefact_directory,
    assert_accessible,
    chromium_path,
    open_page,
    screenshot,
    server_certificate,
    spki_pin,
)
from tests.server import ServerProcess, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

ACCESSIBLE = """<!doctype html>
<html lang="en"><head><title>Enrollments</title></head>
<body><main>
  <h1>Enrollments</h1>
  <p style="color: #222; background: #fff">Devices that may register.</p>
  <form><label for="name">Registration ID</label> <input id="name" type="text"></form>
</main></body></html>"""

# The same page with the label gone and the text made faint (#bbb on white is 1.9:1; WCAG 2.1
# success criterion 1.4.3 asks 4.5:1 of text this size).
INACCESSIBLE = """<!doctype html>
<html lang="en"><head><title>Enrollments</title></head>
<body><main>
  <h1>Enrollments</h1>
  <p id="summary" style="color: #bbb; background: #fff">Devices that may register.</p>
  <form><input id="name" type="text"></form>
</main></body></html>"""

# Headings that skip a level and content outside any landmark: axe-core's best-practice rules
# (heading-order, region) object, the WCAG ones do not.
BEST_PRACTICE_ONLY = """<!doctype html>
<html lang="en"><head><title>Enrollments</title></head>
<body><h1>Enrollments</h1><h3>Groups</h3><p>None yet.</p></body></html>"""

# Taller than the window (800 pixels), to tell a full-page screenshot from one of the window.
TALL_HEIGHT = 2000
TALL = f"""<!doctype html><html lang="en"><head><title>Tall</title></head>
<body style="margin: 0"><div style="height: {TALL_HEIGHT}px">Top</div></body></html>"""


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, which follows the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def presented_certificate(server: ServerProcess) -> x509.Certificate:
    """The certificate the server's port presents to a client that trusts nothing."""
    host = urllib.parse.urlsplit(server.url).hostname
    assert host is not None
    return x509.load_pem_x509_certificate(
        ssl.get_server_certificate((host, server.port), timeout=10).encode()
    )


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_chromium_is_found_where_debian_puts_it_or_on_path(tmp_path: Path) -> None:
    debian = executable(tmp_path / "usr-bin" / "chromium")
    on_path = executable(tmp_path / "elsewhere" / "chromium")
    search = str(on_path.parent)
    assert chromium_path(debian, search) == debian
    # a file there that cannot be run is not a chromium: the one on PATH is taken
    debian.chmod(0o644)
    assert chromium_path(debian, search) == on_path
    # and with none on PATH either, none is found (the browser fixture then skips)
    assert chromium_path(debian, str(tmp_path / "empty")) is None


def test_an_accessible_page_passes(page: Page) -> None:
    page.set_content(ACCESSIBLE)
    assert accessibility_violations(page) == []
    assert_accessible(page)


def test_an_unlabelled_input_and_faint_text_fail_naming_their_rules(page: Page) -> None:
    page.set_content(INACCESSIBLE)
    assert {v["id"] for v in accessibility_violations(page)} == {"label", "color-contrast"}
    with pytest.raises(pytest.fail.Exception) as failed:
        assert_accessible(page)
    message = str(failed.value)
    assert "- label (critical): Form elements must have labels\n    at #name" in message
    assert "- color-contrast (serious): " in message
    assert "    at #summary" in message


@pytest.mark.parametrize(
    ("body", "violated"),
    [(ACCESSIBLE, set()), (INACCESSIBLE, {"label", "color-contrast"})],
    ids=["ok/accessible", "fail/inaccessible"],
)
def test_axe_runs_under_a_content_security_policy_that_forbids_scripts(
    page: Page, body: str, violated: set[str]
) -> None:
    """Portal pages may forbid every script of their own; the check must still run on them."""

    def answer(route: Route) -> None:
        headers = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
        own_script = '<script>document.documentElement.dataset.ran = "yes"</script>'
        route.fulfill(status=200, content_type="text/html", headers=headers, body=body + own_script)

    page.route("https://portal.test/", answer)  # served by the route, no network: .test is RFC 2606
    page.goto("https://portal.test/")
    # the policy holds: the page's own script did not run
    assert page.get_attribute("html", "data-ran") is None
    assert {v["id"] for v in accessibility_violations(page)} == violated


def test_best_practice_rules_are_not_enforced(page: Page) -> None:
    page.set_content(BEST_PRACTICE_ONLY)
    assert_accessible(page)
    # the twin: the page does break axe-core's best-practice rules, which are left out by choice
    broken = accessibility_violations(page, tags=(*AXE_TAGS, "best-practice"))
    assert {"heading-order", "region"} <= {v["id"] for v in broken}


def test_screenshots_are_numbered_full_page_pngs(
    page: Page, request: pytest.FixtureRequest
) -> None:
    page.set_content(TALL)
    first = screenshot(page, "top")
    second = screenshot(page, "again")
    directory = artefact_directory(request.node)
    assert directory.parent.parent.name == "test-artifacts"
    assert directory.name == "test_browser_infra.test_screenshots_are_numbered_full_page_pngs"
    assert (first, second) == (directory / "01-top.png", directory / "02-again.png")
    width, height = png_size(first)
    assert width == page.viewport_size["width"]
    assert height >= TALL_HEIGHT > page.viewport_size["height"]


def test_a_new_page_of_a_test_clears_its_earlier_screenshots(
    browser: Browser, request: pytest.FixtureRequest
) -> None:
    directory = artefact_directory(request.node)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "07-from-an-earlier-run.png").write_bytes(PNG_SIGNATURE)
    with open_page(browser, request.node) as opened:
        opened.set_content(TALL)
        taken = screenshot(opened, "only")
    assert sorted(p.name for p in directory.iterdir()) == ["01-only.png"]
    assert taken == directory / "01-only.png"


def test_a_portal_server_page_loads_through_its_pinned_key(
    page: Page, portal_server: ServerProcess, server_identity: Path
) -> None:
    answer = page.goto(f"{portal_server.url}/healthz")
    assert answer is not None
    assert answer.status == 200
    assert answer.json() == {"status": "ok"}
    assert answer.url.startswith("https://")
    screenshot(page, "healthz")
    # the certificate the browser accepted is the one of the server's data directory: what
    # its port presents, by fingerprint, carrying the key the browser is pinned to
    own = server_certificate(portal_server.data_dir)
    presented = presented_certificate(portal_server)
    assert presented.fingerprint(hashes.SHA256()) == own.fingerprint(hashes.SHA256())
    assert spki_pin(own) == spki_pin(server_certificate(server_identity))
    details = answer.security_details()
    assert details is not None
    assert details.get("subjectName") == "localhost"
    issuer = own.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert details.get("issuer") == issuer


def with_identity_ca_only(identity: Path, data_dir: Path) -> Path:
    """A data directory with the identity's CA but no server certificate: its server issues
    itself a certificate from the pinned key's own CA, for a key of its own."""
    (data_dir / "tls").mkdir(mode=0o700, parents=True)
    data_dir.chmod(0o700)
    for name in ("ca.pem", "ca.key"):
        shutil.copy2(identity / "tls" / name, data_dir / "tls" / name)
    return data_dir


@pytest.mark.parametrize("same_ca", [False, True], ids=["fail/own-ca", "fail/same-ca-new-key"])
def test_a_server_with_another_key_is_refused(
    page: Page, server_identity: Path, tmp_path: Path, same_ca: bool
) -> None:
    from playwright.sync_api import Error

    data_dir = tmp_path / "other"
    if same_ca:
        with_identity_ca_only(server_identity, data_dir)
    with running_server(data_dir) as other:
        presented = presented_certificate(other)
        assert spki_pin(presented) != spki_pin(server_certificate(server_identity))
        if same_ca:
            identity_ca = x509.load_pem_x509_certificate(
                (server_identity / "tls" / "ca.pem").read_bytes()
            )
            presented.verify_directly_issued_by(identity_ca)
        with pytest.raises(Error, match="net::ERR_CERT_AUTHORITY_INVALID"):
            page.goto(f"{other.url}/healthz")


PROBE = """
from tests.browser import screenshot


def test_fails(page):
    page.set_content("<p>shown when it failed</p>")
    screenshot(page, "before")
    assert False, "fails on purpose"


def test_passes(page):
    page.set_content("<p>passed</p>")
    screenshot(page, "before")
"""


def test_a_failing_test_leaves_a_screenshot_of_its_page(tmp_path: Path) -> None:
    """A pytest run of its own over two tests with the portal fixtures: the failing one's page is
    kept as its last screenshot, the passing one's is not."""
    if chromium_path() is None:  # the probe's own tests would skip, and show nothing
        pytest.skip(MISSING_CHROMIUM)
    probe = tmp_path / "test_portal_failure_probe.py"
    probe.write_text(PROBE)
    (tmp_path / "conftest.py").write_text("from tests.portal.conftest import *  # noqa: F403\n")
    folders = {name: ARTEFACTS / f"{probe.stem}.{name}" for name in ("test_fails", "test_passes")}
    try:
        done = subprocess.run(
            # the repository's settings (warnings are errors, its root on sys.path), not the
            # defaults of the temporary directory the probe is in
            [
                *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
                *("-c", str(REPOSITORY / "pyproject.toml"), str(probe)),
            ],
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "1 failed, 1 passed" in done.stdout, done.stdout + done.stderr
        assert sorted(p.name for p in folders["test_fails"].iterdir()) == [
            "01-before.png",
            "02-failure.png",
        ]
        assert sorted(p.name for p in folders["test_passes"].iterdir()) == ["01-before.png"]
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)
