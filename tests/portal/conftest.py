"""Portal fixtures. In process: a fresh data directory, the app over HTTPS-schemed test requests
(the session cookie is Secure, so a client on http:// would never send it back), and a client
signed in with the admin token. In a browser: one chromium for tests/portal, pinned to the key of
the one server identity every ``portal_server`` presents, and a page in a fresh context per test,
which keeps a screenshot of itself when its test fails (tests/browser.py has the parts)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.http.app import build_app
from tests.browser import (
    MISSING_CHROMIUM,
    MISSING_PLAYWRIGHT,
    chromium_path,
    launch_browser,
    make_server_identity,
    open_page,
    screenshot,
    seed_data_dir,
    server_certificate,
)
from tests.server import ServerProcess, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

BASE_URL = "https://testserver"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = open_container(tmp_path / "data", initialize=True)
    yield c
    c.engine.dispose()


@pytest.fixture
def anonymous(container: Container) -> Iterator[TestClient]:
    with TestClient(build_app(container), base_url=BASE_URL, follow_redirects=False) as client:
        yield client


def sign_in_form(client: TestClient) -> dict[str, str]:
    """The hidden fields of a fresh sign-in form (its token; the client keeps its cookie)."""
    return {"csrf": csrf_of(client.get("/portal/sign-in").text)}


def sign_in(client: TestClient, **fields: str) -> Response:
    """Post the sign-in form as a browser would: loaded first, then sent with ``fields``."""
    return client.post("/portal/sign-in", data={**sign_in_form(client), **fields})


@pytest.fixture
def signed_in(anonymous: TestClient, container: Container) -> TestClient:
    token = container.data.admin_token()
    assert token is not None
    answer = sign_in(anonymous, token=token)
    assert answer.status_code == 303, answer.text
    return anonymous


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(scope="session")
def server_identity(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose tls/ holds the server CA and key the session's browser accepts."""
    return make_server_identity(tmp_path_factory.mktemp("portal-identity"))


# Package scope: the tests of tests/portal share one browser, closed when they are done. While
# Playwright's sync API is open, its event loop counts as running in the test thread, and
# asyncio.run() there fails ("cannot be called from a running event loop"): tests after these
# would break if it stayed open for the whole session.
@pytest.fixture(scope="package")
def browser(server_identity: Path) -> Iterator[Browser]:
    sync_api = pytest.importorskip("playwright.sync_api", reason=MISSING_PLAYWRIGHT)
    executable = chromium_path()
    if executable is None:
        pytest.skip(MISSING_CHROMIUM)
    with sync_api.sync_playwright() as playwright:
        launched = launch_browser(playwright, executable, server_certificate(server_identity))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    from playwright.sync_api import Error

    with open_page(browser, request.node) as opened:
        yield opened
        if request.node.stash.get(FAILED, False):
            # what the page showed when the test failed; a page that crashed may have none
            with contextlib.suppress(Error):
                screenshot(opened, "failure")


@pytest.fixture
def portal_server(server_identity: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `devprov serve` on a free port, with a data directory of its own (its own
    database and admin token) that holds the session's server identity."""
    with running_server(seed_data_dir(server_identity, tmp_path / "served")) as server:
        yield server
