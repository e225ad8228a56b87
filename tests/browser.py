"""What the portal's browser tests stand on: finding Debian's chromium, launching it through
Playwright pinned to one devprov server key, screenshots into test-artifacts/, and the axe-core
accessibility check. docs/portal.md#browser-tests says how and why; the fixtures that use this
module are in tests/portal/conftest.py."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devprov.bootstrap import DataDir, ensure_tls_material, server_hosts

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

REPOSITORY = Path(__file__).resolve().parent.parent
ARTEFACTS = REPOSITORY / "test-artifacts" / "portal"
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")  # Debian's launcher script for /usr/lib/chromium

# Headless, and no connection of Chromium's own: the machines this runs on reach nothing but
# their package registries, and a refused background connection (component updates, sync,
# field trials, QUIC probes) only slows the browser down or fills its log.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # Chromium refuses to start its sandbox as root, as tests run in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# The same page renders the same way on every machine: one window size, language and clock zone.
CONTEXT_OPTIONS: dict[str, Any] = {
    "viewport": {"width": 1280, "height": 800},
    "locale": "en-US",
    "timezone_id": "UTC",
    "color_scheme": "light",
    "reduced_motion": "reduce",
}
TIMEOUT_MS = 15_000  # per Playwright action; a page of a local server answers far sooner

# The rules enforced: axe-core's WCAG 2.0 and 2.1 rules of levels A and AA. Its best-practice
# rules and its WCAG 2.2 ones are left out: the former are advice, not conformance, and WCAG 2.1
# AA is the level EN 301 549 (v3.2.1, clause 9) asks of web pages.
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
# axe-core itself (Deque, MPL-2.0) as the axe-playwright-python package ships it; only the
# script is used, injected into the page and run by assert_accessible below.
AXE_PACKAGE = "axe_playwright_python"
AXE_SCRIPT = "axe.min.js"

MISSING_PLAYWRIGHT = (
    "the playwright Python package is not installed: `make install` installs the dev extra"
)
MISSING_CHROMIUM = (
    f"Debian's chromium is not installed ({DEBIAN_CHROMIUM} is missing and no chromium is on "
    "PATH): `make system-deps` installs it with apt-get as root"
)
MISSING_AXE = (
    f"{AXE_PACKAGE} (axe-core's {AXE_SCRIPT}) is not installed: `make install` installs the "
    "dev extra"
)


def chromium_path(debian: Path = DEBIAN_CHROMIUM, search: str | None = None) -> Path | None:
    """Debian's chromium, else a chromium on PATH (or on ``search``), else None."""
    if os.access(debian, os.X_OK):
        return debian
    found = shutil.which("chromium", path=search)
    return Path(found) if found else None


def server_certificate(data_dir: Path) -> x509.Certificate:
    """The server certificate a devprov data directory holds (server.pem's first)."""
    return x509.load_pem_x509_certificates((data_dir / "tls" / "server.pem").read_bytes())[0]


def spki_pin(certificate: x509.Certificate) -> str:
    """Base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo: the form Chromium's
    --ignore-certificate-errors-spki-list takes (as HPKP's pin-sha256, RFC 7469 section 2.4)."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def make_server_identity(directory: Path) -> Path:
    """A server CA and server certificate (as `devprov serve` makes them) in ``directory``/tls,
    to seed data directories whose servers the pinned browser accepts."""
    ensure_tls_material(DataDir(directory), server_hosts(), datetime.now(UTC))
    return directory


def seed_data_dir(identity: Path, data_dir: Path) -> Path:
    """A new data directory holding ``identity``'s TLS files and nothing else: `devprov serve`
    keeps TLS files that hold together, so the server it starts presents the pinned key."""
    data_dir.mkdir(mode=0o700)
    shutil.copytree(identity / "tls", data_dir / "tls")
    return data_dir


def launch_browser(playwright: Playwright, executable: Path, pinned: x509.Certificate) -> Browser:
    """The system chromium, accepting a certificate it cannot verify only where a certificate of
    the chain carries ``pinned``'s key. Chromium takes no CA file in headless mode; the
    SPKI list trusts exactly one devprov server key, not its CA, nor any other server."""
    pin = f"--ignore-certificate-errors-spki-list={spki_pin(pinned)}"
    return playwright.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, pin])


@dataclass
class _Artefacts:
    directory: Path
    taken: int = 0


_ARTEFACTS_OF: dict[int, _Artefacts] = {}  # by id(page), while its test runs


def artefact_directory(test: pytest.Item) -> Path:
    """test-artifacts/portal/<module>.<test name, parameters included>, in file-name letters."""
    name = f"{Path(str(test.path)).stem}.{test.name}"
    return ARTEFACTS / re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_")


@contextmanager
def open_page(browser: Browser, test: pytest.Item) -> Iterator[Page]:
    """A page in a context of its own for ``test``; its screenshots go to a directory emptied
    first, so that those of an earlier run do not mix with this run's."""
    directory = artefact_directory(test)
    shutil.rmtree(directory, ignore_errors=True)
    context = browser.new_context(**CONTEXT_OPTIONS)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    _ARTEFACTS_OF[id(page)] = _Artefacts(directory)
    try:
        yield page
    finally:
        del _ARTEFACTS_OF[id(page)]
        context.close()


def screenshot(page: Page, name: str) -> Path:
    """The whole page, scrolled parts included, as
    test-artifacts/portal/<test>/<NN>-<name>.png; NN counts this test's screenshots from 01."""
    artefacts = _ARTEFACTS_OF[id(page)]
    artefacts.taken += 1
    path = artefacts.directory / f"{artefacts.taken:02d}-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_script() -> str:
    try:
        return (resources.files(AXE_PACKAGE) / AXE_SCRIPT).read_text(encoding="utf-8")
    except ModuleNotFoundError:
        pytest.skip(MISSING_AXE)


def accessibility_violations(page: Page, tags: tuple[str, ...] = AXE_TAGS) -> list[dict[str, Any]]:
    """axe-core's violations, on the page as it is now, of its rules tagged with any of ``tags``."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_script())  # CDP evaluation: a page's Content-Security-Policy allows it
    options = {"runOnly": {"type": "tag", "values": list(tags)}, "resultTypes": ["violations"]}
    results: dict[str, Any] = page.evaluate("options => axe.run(document, options)", options)
    violations: list[dict[str, Any]] = results["violations"]
    return violations


def _selector(target: list[Any]) -> str:
    """axe's target: a selector per frame, each a list of selectors where it is in a shadow
    DOM (one per shadow root)."""
    return " | ".join(" >> ".join(part) if isinstance(part, list) else part for part in target)


def assert_accessible(page: Page) -> None:
    """Fail the test with every WCAG 2.1 A/AA violation axe-core finds on the page: its rule,
    impact, what it asks for and the selectors of the elements that break it."""
    violations = accessibility_violations(page)
    if not violations:
        return
    lines = [f"{len(violations)} accessibility rule(s) violated on {page.url}:"]
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        lines.extend(f"    at {_selector(node['target'])}" for node in violation["nodes"])
    pytest.fail("\n".join(lines), pytrace=False)
