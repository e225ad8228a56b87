"""/healthz, /readyz and /metrics on the real HTTPS server with the whole app: health needs no
credentials and no database, readiness says why not, metrics need the admin token and count."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from devprov.bootstrap import Container, open_container
from devprov.http.app import build_app
from devprov.http.metrics import PrometheusMetrics, api_of
from devprov.transport.gate import ConnectionGate
from devprov.transport.policy import ConnectionPolicy
from tests.http.conftest import Pki, Reply, client_context, exchange, run, serving
from tests.http.test_app import request


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = open_container(tmp_path / "data", initialize=True)
    yield c
    c.engine.dispose()


def served(pki: Pki, container: Container, *requests: bytes, gate: Any = None) -> list[Reply]:
    async def scenario() -> Any:
        limits = {"gate": gate} if gate is not None else {}
        async with serving(pki, build_app(container), **limits) as (_, port):
            return [
                await asyncio.to_thread(exchange, port, client_context(pki), raw)
                for raw in requests
            ]

    return run(scenario, server_errors=True)


def admin(container: Container) -> dict[str, str]:
    return {"Authorization": f"Bearer {container.data.admin_token()}"}


def test_healthz_answers_without_credentials_or_database(pki: Pki, container: Container) -> None:
    broken = dataclasses.replace(container, engine=create_engine("sqlite:////nonexistent/x.db"))
    (reply,) = served(pki, broken, request("GET", "/healthz"))
    assert (reply.status, reply.json()) == (200, {"status": "ok"})


def test_readyz_is_ready_on_a_migrated_database(pki: Pki, container: Container) -> None:
    (reply,) = served(pki, container, request("GET", "/readyz"))
    assert (reply.status, reply.json()) == (200, {"status": "ready"})


def test_readyz_is_503_when_the_database_does_not_answer(pki: Pki, container: Container) -> None:
    broken = dataclasses.replace(container, engine=create_engine("sqlite:////nonexistent/x.db"))
    (reply,) = served(pki, broken, request("GET", "/readyz"))
    assert reply.status == 503
    assert reply.json() == {"status": "unavailable", "reason": "the database does not answer"}


def test_readyz_is_503_when_the_schema_is_behind(pki: Pki, container: Container) -> None:
    with container.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    (reply,) = served(pki, container, request("GET", "/readyz"))
    assert reply.status == 503
    reason = reply.json()["reason"]
    assert "revision 0001" in reason and "devprov db upgrade" in reason


def test_probes_do_not_reach_the_refusal_log(pki: Pki, container: Container) -> None:
    served(pki, container, *[request("GET", p) for p in ("/healthz", "/readyz")] * 3)
    assert container.refusals.flush(everything=True) == 0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="fail/no-token"),
        pytest.param({"Authorization": "Bearer not-the-token"}, id="fail/wrong-token"),
    ],
)
def test_metrics_need_the_admin_token(
    pki: Pki, container: Container, headers: dict[str, str]
) -> None:
    (reply,) = served(pki, container, request("GET", "/metrics", headers=headers))
    assert reply.status == 401
    assert b"devprov_" not in reply.body


def test_metrics_are_prometheus_text_with_every_family(pki: Pki, container: Container) -> None:
    gate = ConnectionGate(ConnectionPolicy(max_connections=10))
    assert isinstance(container.metrics, PrometheusMetrics)
    container.metrics.count_connections(lambda: gate.open)
    scope = container.directory.get("default").id_scope
    register = f"/{scope}/registrations/dev-1/register?api-version=2021-06-01"
    body = json.dumps({"registrationId": "dev-1"}).encode()
    replies = served(
        pki,
        container,
        request("PUT", register, body, {"Content-Type": "application/json"}),
        request("GET", "/metrics", headers=admin(container)),
        gate=gate,
    )
    assert replies[0].status == 401  # no credentials: a failed attestation
    page = replies[1]
    assert page.status == 200 and page.headers["content-type"].startswith("text/plain")
    text_ = page.body.decode()
    assert 'devprov_attestation_failures_total{reason="no_credentials"} 1.0' in text_
    assert 'devprov_request_duration_seconds_count{api="device",status="4xx"} 1.0' in text_
    # The scrape itself holds a connection while the page is made.
    assert "devprov_open_connections 1.0" in text_
    for family in ("devprov_registrations", "devprov_possession_attempts"):
        assert f"# TYPE {family}_total counter" in text_


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("/0ne00000001/registrations/d/register", "device"),
        ("/enrollments/x", "service"),
        ("/enrollmentGroups/x", "service"),
        ("/registrations/x", "service"),
        ("/subscriptions/s/resourceGroups/g", "management"),
    ],
)
def test_request_paths_map_to_their_api(path: str, api: str) -> None:
    assert api_of(path) == api
