"""The device API's routes answered before Starlette (http.device_route) answer exactly what the
Starlette app answers: status, headers and body, the request-duration metric and the log line of
an unexpected error, for each device request, a wrong method, an unknown route and a path in
another case. Both apps serve one container, one request after the other; what differs by
nature between two answers (tracking and operation ids, times, etags) is blanked first."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.http.app import build_app, build_starlette_app
from devprov.http.device_route import DeviceRoutes
from tests.http.test_logging import GROUP_KEY, HUB, device, service

# Values that differ between any two answers, by nature.
VOLATILE_FIELDS = {
    "operationId",
    "trackingId",
    "timestampUtc",
    "createdDateTimeUtc",
    "lastUpdatedDateTimeUtc",
    "etag",
}
VOLATILE_HEADERS = {"x-ms-request-id", "date"}
OTHER_KEY = base64.b64encode(b"o" * 32).decode()
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Call = Callable[[TestClient], httpx.Response]


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = open_container(tmp_path / "data", initialize=True)
    c.hubs.add("default", HUB, weight=1, apply_allocation_policy=True, actor="test")
    group = {
        "enrollmentGroupId": "grp",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": GROUP_KEY}},
    }
    with TestClient(build_starlette_app(c)) as client:
        assert (
            client.put("/enrollmentGroups/grp", json=group, headers=service(c)).status_code == 200
        )
    yield c
    c.engine.dispose()


def blank(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "*" if k in VOLATILE_FIELDS else blank(v) for k, v in value.items()}
    if isinstance(value, list):
        return [blank(v) for v in value]
    if isinstance(value, str):
        return _UUID.sub("*", value)
    return value


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    headers = [
        (name, "*" if name in VOLATILE_HEADERS else _UUID.sub("*", value))
        for name, value in response.headers.multi_items()
    ]
    try:
        body: Any = blank(response.json())
    except ValueError:
        body = response.content
    if any(name == "content-length" for name, _ in headers) and isinstance(body, dict):
        # The blanked values all have fixed lengths (UUIDs, times to the microsecond, etags),
        # except a time whose microseconds end in zeros: compare the length only roughly.
        headers = [(n, "*" if n == "content-length" else v) for n, v in headers]
    return response.status_code, headers, body


def both(
    container: Container, call: Call, caplog: pytest.LogCaptureFixture
) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """``call`` on the dispatching app, then on the Starlette app alone: each one's answer,
    request-duration observations and log lines."""
    observed: list[tuple[str, int]] = []
    observe = container.metrics.observe_request

    def record(api: str, status: int, seconds: float) -> None:
        observed.append((api, status))
        observe(api, status, seconds)

    container.metrics.observe_request = record  # type: ignore[method-assign]
    results = []
    try:
        for app in (build_app(container), build_starlette_app(container)):
            observed.clear()
            caplog.clear()
            with TestClient(app) as client:
                reply = call(client)
            lines = [_UUID.sub("*", r.getMessage()) for r in caplog.records]
            results.append((answer(reply), list(observed), lines))
    finally:
        container.metrics.observe_request = observe  # type: ignore[method-assign]
    return results[0], results[1]


def paths(c: Container, rid: str = "dev-1") -> tuple[str, dict[str, str]]:
    scope = c.directory.get("default").id_scope
    return f"/{scope}/registrations/{rid}", device(c, rid, GROUP_KEY)


def test_the_app_answers_device_routes_before_starlette(container: Container) -> None:
    app = build_app(container)
    assert isinstance(app, DeviceRoutes)


@pytest.mark.parametrize(
    "name",
    [
        "register",
        "register-202",
        "register-wrong-key",
        "register-malformed-json",
        "register-case-insensitive",
        "operation-status",
        "operation-status-head",
        "operation-status-unknown",
        "status-lookup",
        "wrong-method",
        "unknown-route",
    ],
)
def test_a_device_request_is_answered_as_starlette_answers_it(
    container: Container, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    base, auth = paths(container)
    query = "?api-version=2021-10-01"
    with TestClient(build_starlette_app(container)) as client:  # dev-1 registered once before
        first = client.put(
            f"{base}/register{query}", json={"registrationId": "dev-1"}, headers=auth
        )
    assert first.status_code == 200
    operation = first.json()["operationId"]
    body = {"registrationId": "dev-1"}
    calls: dict[str, Call] = {
        "register": lambda c: c.put(f"{base}/register{query}", json=body, headers=auth),
        "register-202": lambda c: c.put(f"{base}/register{query}", json=body, headers=auth),
        "register-wrong-key": lambda c: c.put(
            f"{base}/register{query}", json=body, headers=device(container, "dev-1", OTHER_KEY)
        ),
        "register-malformed-json": lambda c: c.put(
            f"{base}/register{query}", content=b"{nope", headers=auth
        ),
        "register-case-insensitive": lambda c: c.put(
            f"{base.replace('registrations', 'REGISTRATIONS')}/Register{query}",
            json=body,
            headers=auth,
        ),
        "operation-status": lambda c: c.get(f"{base}/operations/{operation}{query}", headers=auth),
        "operation-status-head": lambda c: c.head(
            f"{base}/operations/{operation}{query}", headers=auth
        ),
        "operation-status-unknown": lambda c: c.get(
            f"{base}/operations/00000000-0000-0000-0000-000000000000{query}", headers=auth
        ),
        "status-lookup": lambda c: c.post(f"{base}{query}", json=body, headers=auth),
        "wrong-method": lambda c: c.get(f"{base}/register{query}", headers=auth),
        "unknown-route": lambda c: c.put(f"{base}/deregister{query}", json=body, headers=auth),
    }
    container.always_poll = name == "register-202"
    with caplog.at_level(logging.DEBUG, logger="devprov"):
        direct, starlette = both(container, calls[name], caplog)
    assert direct == starlette
    status = direct[0][0]
    expected = {
        "register-202": 202,
        "register-wrong-key": 401,
        "register-malformed-json": 400,
        "operation-status-unknown": 404,
        "wrong-method": 405,
        "unknown-route": 404,
    }
    assert status == expected.get(name, 200)


def test_an_unexpected_error_is_answered_and_logged_as_starlette_does(
    container: Container, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fault(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(container.devices, "status_lookup", fault)
    base, auth = paths(container)
    with caplog.at_level(logging.INFO, logger="devprov"):
        direct, starlette = both(
            container,
            lambda c: c.post(base, json={"registrationId": "dev-1"}, headers=auth),
            caplog,
        )
    assert direct == starlette
    (status, _, body), observed, lines = direct
    assert (status, body["errorCode"], observed) == (500, 500000, [("device", 500)])
    (line,) = [line for line in lines if "unexpected error" in line]
    assert "RuntimeError: disk on fire" in line and f"on POST {base} (tracking *)" in line
