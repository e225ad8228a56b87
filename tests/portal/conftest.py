"""In-process portal fixtures: a fresh data directory, the app over HTTPS-schemed test requests
(the session cookie is Secure, so a client on http:// would never send it back), and a client
signed in with the admin token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx2 import Response
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.http.app import build_app

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
