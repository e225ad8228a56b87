"""``devprov serve --log-format json`` end to end: every log line is a JSON object, and the line
of a refused registration carries the request id the device got as x-ms-request-id."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_refusal_storage import scope_of
from tests.server import running_server

pytestmark = pytest.mark.e2e


def test_json_lines_carry_the_request_id(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", "--log-format", "json") as server:
        scope = scope_of(server.data_dir)
        context = ssl.create_default_context(cafile=str(server.ca_file))
        with httpx.Client(base_url=server.url, verify=context, timeout=30) as device:
            answer = device.put(
                f"/{scope}/registrations/dev-json/register?api-version=2021-06-01",
                json={"registrationId": "dev-json"},
            )
        assert answer.status_code == 401
        tracking = answer.headers["x-ms-request-id"]
        deadline = time.monotonic() + 10
        while not any(tracking in line for line in server.output):
            assert time.monotonic() < deadline, "".join(server.output)
            time.sleep(0.1)
    entries = [json.loads(line) for line in server.output if line.startswith("{")]
    assert entries, "".join(server.output)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    refused = [e for e in entries if e.get("request_id") == tracking]
    assert refused and refused[0]["logger"] == "devprov.refusal"
    assert "dev-json" in refused[0]["message"]
    # What is not JSON is the start-up text on standard output, never a log record.
    assert not any(line.startswith(("20", "INFO", "WARNING")) for line in server.output)
