"""The whole app on devprov's real HTTPS server: an unexpected exception becomes DPS's 500 with
a tracking id and exactly one log line; JSON nested past the limit is 400, never 500; client
values in the log come out escaped (http.app, core.json_text, core.printable)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devprov.bootstrap import Container, open_container
from devprov.http.app import build_app
from tests.http.conftest import Pki, Reply, client_context, exchange, run, serving

CERTIFICATES = (
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Devices"
    "/provisioningServices/default/certificates"
)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    c = open_container(tmp_path / "data", initialize=True)
    yield c
    c.engine.dispose()


def request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def served(pki: Pki, container: Container, *requests: bytes) -> list[Reply]:
    async def scenario() -> Any:
        async with serving(pki, build_app(container)) as (_, port):
            return [
                await asyncio.to_thread(exchange, port, client_context(pki), raw)
                for raw in requests
            ]

    return run(scenario, server_errors=True)


# core.json_text.MAX_JSON_DEPTH, spelled out: the figure is documented (docs/operations.md).
MAX_JSON_DEPTH = 32


def formatted(records: list[logging.LogRecord]) -> list[str]:
    """The records as ``devprov serve`` writes them."""
    from devprov.core.printable import EscapingFormatter

    formatter = EscapingFormatter("%(levelname)s %(name)s: %(message)s")
    return [formatter.format(record) for record in records]


def test_an_unexpected_exception_is_a_dps_500_with_one_log_line(
    pki: Pki,
    container: Container,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fault(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire\nsecond line")  # a fault, as storage might raise one

    monkeypatch.setattr(container.registry, "list", fault)
    token = container.data.admin_token()
    with caplog.at_level(logging.INFO, logger="devprov"):
        (reply,) = served(
            pki,
            container,
            request("GET", CERTIFICATES, headers={"Authorization": f"Bearer {token}"}),
        )
    assert reply.status == 500
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"errorCode", "trackingId", "message", "timestampUtc"}
    assert body["errorCode"] == 500000
    tracking = body["trackingId"]
    assert reply.headers["x-ms-request-id"] == tracking
    assert tracking in body["message"]
    logged = [
        r for r in caplog.records if r.levelno >= logging.INFO and r.name != "devprov.transport"
    ]
    (line,) = formatted(logged)  # exactly one, from the app; none from the server
    assert line.startswith(
        f"ERROR devprov.http: unexpected error on GET {CERTIFICATES} (tracking {tracking})"
    )
    assert "RuntimeError: disk on fire\\nsecond line (at " in line and "in fault)" in line
    assert "\n" not in line


def test_an_expected_refusal_is_no_500_and_no_error_line(
    pki: Pki, container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="devprov"):
        (reply,) = served(pki, container, request("GET", CERTIFICATES))  # no token
    assert reply.status == 401
    assert all(r.levelno < logging.ERROR for r in caplog.records)


def twin(levels: int) -> bytes:
    desired = '{"a":' * levels + "1" + "}" * levels
    body = '{"enrollmentGroupId": "deep", "attestation": {"type": "symmetricKey"}, '
    body += '"initialTwin": {"properties": {"desired": ' + desired + "}}}"
    return body.encode()


@pytest.mark.parametrize(
    ("body", "status", "error_code"),
    [
        (twin(10), 200, None),
        (twin(MAX_JSON_DEPTH), 400, 400270),
        (b"[" * 50_000, 400, 400270),
        (b"[" * 5_000 + b"]" * 5_000, 400, 400270),
    ],
    ids=["ok/twin-depth-10", "fail/past-the-limit", "fail/recursion-bomb", "fail/deep-closed"],
)
def test_json_nested_past_the_limit_is_a_400_with_dps_body(
    pki: Pki, container: Container, body: bytes, status: int, error_code: int | None
) -> None:
    from devprov.core.sas import build_sas_token

    key = container.directory.policies("default")[0].primary_key
    token = build_sas_token(key, "localhost", 2_000_000_000, "provisioningserviceowner")
    headers = {"Authorization": token, "Content-Type": "application/json"}
    (reply,) = served(pki, container, request("PUT", "/enrollmentGroups/deep", body, headers))
    assert reply.status == status, reply.body[:300]
    if error_code is not None:
        error = reply.json()
        assert error["errorCode"] == error_code
        assert f"at most {MAX_JSON_DEPTH} are accepted" in error["message"]
    else:
        assert json.loads(reply.body)["enrollmentGroupId"] == "deep"


def test_a_deep_body_is_refused_before_authentication_on_the_device_api(
    pki: Pki, container: Container
) -> None:
    scope = container.directory.get("default").id_scope
    path = f"/{scope}/registrations/dev-1/register?api-version=2021-10-01"
    (reply,) = served(pki, container, request("PUT", path, b"[" * 50_000))
    assert reply.status == 400
    assert reply.json()["errorCode"] == 400270


def test_client_values_in_log_lines_are_escaped(
    pki: Pki, container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    # An ESC sequence that clears the screen, a C1 CSI and a Unicode line separator, in the path.
    # (Starlette's URL parsing drops CR, LF and TAB from a path; core's tests cover those.)
    scope = container.directory.get("default").id_scope
    evil = "evil%1B[2J%C2%9B2J%E2%80%A8forged"
    path = f"/{scope}/registrations/{evil}/register?api-version=2021-10-01"
    with caplog.at_level(logging.DEBUG, logger="devprov"):
        (reply,) = served(pki, container, request("PUT", path, b"{}"))
    assert reply.status in (400, 401)
    lines = formatted([r for r in caplog.records if "evil" in r.getMessage()])
    assert lines and all("evil\\x1b[2J\\x9b2J\\u2028forged" in line for line in lines)
    assert not any(c in line for line in lines for c in "\x1b\x9b\u2028")
