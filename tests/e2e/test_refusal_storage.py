"""Requests without valid credentials do not grow storage, against a real ``devprov serve``: a
flood of refused registrations adds a bounded number of audit rows and log lines, a summary with
the count of the rest, and no copy of an oversized registration id; old audit events and
operations are pruned by the running server."""

from __future__ import annotations

import contextlib
import sqlite3
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from devprov.bootstrap import open_container
from devprov.core.refusal_limit import RECORDED_PER_INTERVAL
from devprov.service.model import AuditEvent, Operation, Outcome
from devprov.storage.repository import SqlUnitOfWork
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

API = "api-version=2021-06-01"
FLOOD = 300
HUGE = "x" * 15_000
BOGUS_TOKEN = (  # well formed, signed by nobody
    "SharedAccessSignature sr=0ne00000000%2Fregistrations%2Fdev"
    "&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D&se=4102444800&skn=registration"
)


def database_bytes(data: Path) -> int:
    """The database's size once its write-ahead log is checkpointed into it: the log's own size
    counts pages per commit, not what is stored."""
    with contextlib.closing(sqlite3.connect(data / "devprov.db", timeout=15)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(
        path.stat().st_size for path in data.glob("devprov.db*") if not path.name.endswith("-shm")
    )


def output_bytes(server: ServerProcess) -> int:
    return sum(len(line) for line in list(server.output))


def settle(server: ServerProcess) -> None:
    """Wait until the server's output stops growing (another thread reads it)."""
    size = -1
    while size != output_bytes(server):
        size = output_bytes(server)
        time.sleep(0.3)


def scope_of(data: Path) -> str:
    c = open_container(data)
    try:
        return c.directory.get("default").id_scope
    finally:
        c.engine.dispose()


def audit_of(data: Path) -> list[AuditEvent]:
    c = open_container(data)
    try:
        return [e for e in c.audit.events(limit=10_000) if e.outcome is Outcome.FAILED]
    finally:
        c.engine.dispose()


def flood(server: ServerProcess, registration_ids: list[str]) -> list[httpx.Response]:
    """Register each id once over one keep-alive connection, half with no credentials and half
    with a token nobody signed."""
    scope = scope_of(server.data_dir)
    context = ssl.create_default_context(cafile=str(server.ca_file))
    answers = []
    with httpx.Client(base_url=server.url, verify=context, timeout=30) as device:
        for i, rid in enumerate(registration_ids):
            headers = {"Authorization": BOGUS_TOKEN} if i % 2 else {}
            answers.append(
                device.put(
                    f"/{scope}/registrations/{rid}/register?{API}",
                    json={"registrationId": rid},
                    headers=headers,
                )
            )
    return answers


def test_a_flood_with_oversized_ids_does_not_grow_storage(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as server:
        flood(server, ["warm-up"])
        settle(server)
        database, log = database_bytes(server.data_dir), output_bytes(server)

        started = time.monotonic()
        answers = flood(server, [HUGE] * FLOOD)
        elapsed = time.monotonic() - started
        settle(server)

        assert {a.status_code for a in answers} == {401}
        assert {a.json()["errorCode"] for a in answers} == {401000}
        grown_database = database_bytes(server.data_dir) - database
        grown_log = output_bytes(server) - log
        lines = server.output[-50:]
    # Measured before the fix: 12.7 MB of database and 9.1 MB of log for these 300 requests.
    assert grown_database < 128 * 1024, (grown_database, elapsed)
    assert grown_log < 16 * 1024, (grown_log, "".join(lines))
    assert all(len(line) < 1000 for line in lines), max(lines, key=len)
    assert any("15000 characters" in line for line in lines)
    assert not any(HUGE[:1000] in line for line in server.output)
    refused = [e for e in audit_of(server.data_dir) if e.registration_id != "warm-up"]
    # Both kinds of refusal are DeviceUnauthorized from one network: one window, whose quota the
    # warm-up opened, recorded in full, and its summary, written at shutdown.
    assert len(refused) == RECORDED_PER_INTERVAL, [e.actor for e in refused]
    assert all(len(e.actor) < 120 and len(e.reason or "") < 400 for e in refused)
    (summary,) = [e for e in refused if e.actor == "devices from 127.0.0.0/24"]
    assert all(e.registration_id is None for e in refused)
    left_out = FLOOD - (RECORDED_PER_INTERVAL - 1)
    assert (summary.reason or "").startswith(
        f"{left_out} more refusals of DeviceUnauthorized (register) from 127.0.0.0/24"
    )
    assert "(15000 characters)" in (summary.reason or "")


def test_a_flood_of_distinct_devices_is_summarised(tmp_path: Path) -> None:
    ids = [f"stranger-{i}" for i in range(60)]
    with running_server(tmp_path / "data") as server:
        answers = flood(server, ids)
        assert {a.status_code for a in answers} == {401}
        settle(server)
        refusal_lines = [line for line in server.output if " -> DeviceUnauthorized " in line]
        assert len(refusal_lines) == RECORDED_PER_INTERVAL
    # The server stopped: it wrote the summary of the window still open, once.
    summaries = [line for line in server.output if "refusals of service 'default'" in line]
    assert len(summaries) == 1, server.output[-10:]
    refused = audit_of(server.data_dir)
    recorded = [e.registration_id for e in refused if e.registration_id is not None]
    assert recorded == ids[:RECORDED_PER_INTERVAL]
    (summary,) = [e for e in refused if e.registration_id is None]
    assert summary.actor == "devices from 127.0.0.0/24"
    assert (summary.reason or "").startswith(
        f"{len(ids) - RECORDED_PER_INTERVAL} more refusals of DeviceUnauthorized (register) "
        "from 127.0.0.0/24"
    )
    assert f"e.g. 'stranger-{RECORDED_PER_INTERVAL}'" in (summary.reason or "")
    assert (summary.reason or "") in summaries[0]


def test_the_server_prunes_what_is_past_its_retention(tmp_path: Path) -> None:
    data = tmp_path / "data"
    c = open_container(data, initialize=True)
    now = datetime.now(UTC)
    with SqlUnitOfWork(c.engine) as u:
        for days in (1, 20, 40):
            at = now - timedelta(days=days)
            u.audit.record(AuditEvent(at, "default", "register", Outcome.FAILED, f"device:d{days}"))
            u.operations.add(Operation(f"op-{days}", "default", f"d{days}", at, "assigned"))
        u.commit()
    c.engine.dispose()

    with running_server(data, "--audit-retention-days", "30", "--operation-retention-days", "10"):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            actors = [e.actor for e in audit_of(data)]
            if actors == ["device:d1", "device:d20"]:
                break
            time.sleep(0.2)
        assert actors == ["device:d1", "device:d20"]
        c = open_container(data)
        try:
            with SqlUnitOfWork(c.engine) as u:
                kept = [d for d in (1, 20, 40) if u.operations.get("default", f"op-{d}")]
        finally:
            c.engine.dispose()
        assert kept == [1]
