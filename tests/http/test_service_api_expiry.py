"""An expired service API token is reported as expired (SasTokenExpired, errorCode 401005)
however many provisioning services have a policy of its name, and wherever the service whose key
signed it sorts among them; a token no service's key signed is a bad signature (401006)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.core.sas import build_sas_token
from devprov.http.app import build_app

OWNER = "provisioningserviceowner"
# Every service has an owner policy of this name; they are tried in the order of the services'
# names, so the signer is first, in the middle or last.
SERVICES = ("default", "second", "third")
FOREIGN_KEY = base64.b64encode(b"f" * 32).decode()


def servers(tmp_path: Path, count: int) -> Iterator[tuple[Container, TestClient]]:
    c = open_container(tmp_path / "data", initialize=True)
    for name in SERVICES[1:count]:
        c.directory.create(name)
    try:
        with TestClient(build_app(c)) as client:
            yield c, client
    finally:
        c.engine.dispose()


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}-services")
def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Container, TestClient]]:
    yield from servers(tmp_path, request.param)


def ask(client: TestClient, key: str, expiry: int) -> tuple[int, object]:
    """List the enrollment groups with a token signed by ``key``: status and errorCode."""
    token = build_sas_token(key, "testserver", expiry, OWNER)
    answer = client.post(
        "/enrollmentGroups/query", json={"query": "*"}, headers={"Authorization": token}
    )
    body = answer.json()
    return answer.status_code, body.get("errorCode") if isinstance(body, dict) else None


def test_an_expired_token_is_expired_whichever_service_signed_it(server) -> None:
    c, client = server
    services = [s.name for s in c.directory.all()]
    assert services == list(SERVICES[: len(services)])
    past, future = int(time.time()) - 60, int(time.time()) + 600
    for name in services:
        key = c.directory.policies(name)[0].primary_key
        assert ask(client, key, future) == (200, None), name  # the twin: the same key, in time
        assert ask(client, key, past) == (401, 401005), name


def test_a_token_no_service_signed_is_a_bad_signature_expired_or_not(server) -> None:
    _c, client = server
    for expiry in (int(time.time()) + 600, int(time.time()) - 60):
        assert ask(client, FOREIGN_KEY, expiry) == (401, 401006)
