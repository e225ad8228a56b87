"""Faults under a registration load on PostgreSQL: an instance killed with SIGKILL beside another
on the same database, and the database itself going away for 10 s and coming back
(docs/operations.md#faults). An acknowledged registration (a register, or a poll, answered
``assigned``) is never lost or half-written, and devprov recovers without a restart."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from devprov.bootstrap import open_container
from devprov.cli.main import main
from tests.cluster import own_cluster
from tests.database import fresh_postgresql_database
from tests.instances import API, GroupDevices, device_client, running_pair
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

CLIENTS_PER_INSTANCE = 3
ACKNOWLEDGED_BEFORE_KILL = 40
ACKNOWLEDGED_AFTER_KILL = 30
OUTAGE_SECONDS = 10
# Longer than the server's 30 s handler timeout (docs/operations.md#handler-timeout): a request
# that reaches it has hung, and shows as a transport error.
CLIENT_TIMEOUT_SECONDS = 35


def _prepare(server: ServerProcess) -> GroupDevices:
    args = server.cli_args()
    assert main(["hub", "add", "hub-faults.azure-devices.net", *args]) == 0
    assert main(["enrollment-group", "create", "load", "--symmetric-key", *args]) == 0
    return GroupDevices(server, "load")


@dataclass
class Answer:
    at: float  # when the request was sent (time.monotonic())
    took: float
    status: int | str  # the HTTP status, or the transport error's class name
    retry_after: str | None = None
    rid: str = ""


@dataclass
class Load:
    """Devices registering one after another, from several threads; a register is answered with
    its outcome, and one answered ``assigning`` is polled until assigned."""

    devices: GroupDevices
    acknowledged: dict[str, str] = field(default_factory=dict)  # registration id: operation
    assigned_at: dict[str, float] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def _send(self, client: httpx.Client, method: str, path: str, rid: str) -> httpx.Response:
        started = time.monotonic()
        try:
            response = client.request(
                method,
                path,
                json={"registrationId": rid} if method == "PUT" else None,
                headers=self.devices.headers(rid),
            )
        except httpx.TransportError as exc:
            took = time.monotonic() - started
            self.answers.append(Answer(started, took, type(exc).__name__, rid=rid))
            raise
        retry = response.headers.get("retry-after")
        self.answers.append(
            Answer(started, time.monotonic() - started, response.status_code, retry, rid)
        )
        return response

    def _acknowledged(self, rid: str, answer: dict[str, str]) -> bool:
        """Whether ``answer`` (a register's or a poll's) is the assignment, noted if so."""
        if answer["status"] != "assigned":
            return False
        self.acknowledged[rid] = answer["operationId"]
        self.assigned_at[rid] = time.monotonic()
        return True

    def run(self, server: ServerProcess, prefix: str, *, give_up_on_transport: bool) -> None:
        """Register ``prefix-0``, ``prefix-1``... until stopped; a 503 is retried after a short
        pause (shorter than its hint, to see when service resumes)."""
        scope = self.devices.scope
        with device_client(server.url, server.ca_file, timeout=CLIENT_TIMEOUT_SECONDS) as client:
            for n in itertools.count():
                rid = f"{prefix}-{n}"
                operation = None
                while not self.stop.is_set():
                    try:
                        if operation is None:
                            path = f"/{scope}/registrations/{rid}/register?{API}"
                            response = self._send(client, "PUT", path, rid)
                            if response.status_code == 202:
                                operation = str(response.json()["operationId"])
                                continue
                            if response.status_code == 200 and self._acknowledged(
                                rid, response.json()
                            ):
                                break
                        else:
                            path = f"/{scope}/registrations/{rid}/operations/{operation}?{API}"
                            response = self._send(client, "GET", path, rid)
                            if response.status_code == 200:
                                if self._acknowledged(rid, response.json()):
                                    break
                                continue
                    except httpx.TransportError:
                        if give_up_on_transport:
                            return
                    time.sleep(0.1)
                if self.stop.is_set():
                    return

    def wait_for(self, count: int, *, prefix: str = "", timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while sum(rid.startswith(prefix) for rid in list(self.acknowledged)) < count:
            assert time.monotonic() < deadline, f"{len(self.acknowledged)} acknowledged"
            time.sleep(0.05)


def _threads(load: Load, server: ServerProcess, name: str, *, give_up: bool) -> list:
    return [
        threading.Thread(
            target=load.run, args=(server, f"{name}{i}"), kwargs={"give_up_on_transport": give_up}
        )
        for i in range(CLIENTS_PER_INSTANCE)
    ]


def test_sigkill_of_one_instance_under_load_loses_no_acknowledged_registration(
    tmp_path: Path,
) -> None:
    with fresh_postgresql_database() as database, running_pair(tmp_path, database) as (a, b):
        load = Load(_prepare(a))
        on_a = _threads(load, a, "a", give_up=False)
        on_b = _threads(load, b, "b", give_up=True)
        for thread in on_a + on_b:
            thread.start()
        try:
            load.wait_for(ACKNOWLEDGED_BEFORE_KILL)
            load.wait_for(1, prefix="b")
            b.process.kill()  # SIGKILL, with registrations in flight on b
            b.process.wait()
            for thread in on_b:
                thread.join(60)
            acknowledged_by_b = {r for r in load.acknowledged if r.startswith("b")}
            at_kill = sum(r.startswith("a") for r in list(load.acknowledged))
            # a keeps serving.
            load.wait_for(at_kill + ACKNOWLEDGED_AFTER_KILL, prefix="a")
        finally:
            load.stop.set()
            for thread in on_a + on_b:
                thread.join(60)
        assert acknowledged_by_b
        # Only b's clients saw a failure: their connection broke when b died, once each.
        failures = [x for x in load.answers if x.status not in (200, 202)]
        assert {x.rid[0] for x in failures} <= {"b"}
        assert len(failures) <= CLIENTS_PER_INSTANCE

        # Every acknowledged registration, b's included, is there: through a's device API...
        with device_client(a.url, a.ca_file) as client:
            polled = {
                rid: client.get(
                    f"/{load.devices.scope}/registrations/{rid}/operations/{operation}?{API}",
                    headers=load.devices.headers(rid),
                ).json()["status"]
                for rid, operation in load.acknowledged.items()
            }
        assert set(polled.values()) == {"assigned"}
        # ... and in the database.
        c = open_container(a.data_dir, database=database)
        try:
            states = {rid: c.registration_states.find("default", rid) for rid in load.acknowledged}
        finally:
            c.engine.dispose()
        assert all(s is not None and s.status.value == "assigned" for s in states.values())
        print(
            f"SIGKILL of one of two instances: {len(load.acknowledged)} acknowledged, "
            f"{len(acknowledged_by_b)} of them by the killed one, all in the database"
        )


def _consistency(url: str) -> list[str]:
    """Half-written registrations: a registration without its operation or audit row, an
    operation without its registration, anything left assigning."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            """
            SELECT 'registration without operation: ' || r.registration_id FROM registrations r
             WHERE NOT EXISTS (SELECT 1 FROM operations o
                                WHERE o.registration_id = r.registration_id)
            UNION ALL
            SELECT 'registration without audit row: ' || r.registration_id FROM registrations r
             WHERE NOT EXISTS (SELECT 1 FROM audit_events e
                                WHERE e.registration_id = r.registration_id
                                  AND e.action = 'register')
            UNION ALL
            SELECT 'operation without registration: ' || o.id FROM operations o
             WHERE NOT EXISTS (SELECT 1 FROM registrations r
                                WHERE r.registration_id = o.registration_id)
            UNION ALL
            SELECT 'not finished: ' || registration_id FROM registrations
             WHERE status <> 'assigned'
            UNION ALL
            SELECT 'operation not finished: ' || id FROM operations WHERE status <> 'assigned'
            """
        ).fetchall()
    return [row[0] for row in rows]


def _assigned(url: str) -> dict[str, str]:
    """Operation id -> registration id of every assigned operation in the database."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT o.id, o.registration_id FROM operations o JOIN registrations r"
            " ON r.registration_id = o.registration_id AND r.status = 'assigned'"
            " AND r.assigned_hub IS NOT NULL AND r.device_id IS NOT NULL"
            " WHERE o.status = 'assigned'"
        ).fetchall()
    return {operation: rid for operation, rid in rows}


def _readiness(server: ServerProcess) -> int:
    with device_client(server.url, server.ca_file) as client:
        return client.get("/readyz").status_code


def test_the_database_away_for_10_s_under_load(tmp_path: Path) -> None:
    with own_cluster() as cluster, running_server(tmp_path / "data", database=cluster.url) as s:
        load = Load(_prepare(s))
        threads = _threads(load, s, "d", give_up=False)
        for thread in threads:
            thread.start()
        try:
            load.wait_for(20)
            stopped = time.monotonic()
            cluster.stop_immediately()
            time.sleep(OUTAGE_SECONDS / 2)
            unready = _readiness(s)
            time.sleep(OUTAGE_SECONDS / 2)
            started = time.monotonic()
            cluster.start()
            before = set(load.acknowledged)
            # Service resumes by itself: new registrations are assigned, no restart.
            deadline = time.monotonic() + 60
            while len(set(load.acknowledged) - before) < 20:
                assert time.monotonic() < deadline, cluster.log()
                time.sleep(0.05)
            ready = _readiness(s)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(60)
        assert s.process.poll() is None  # never restarted
        assert unready == 503 and ready == 200

        statuses = {x.status for x in load.answers}
        unavailable = [x for x in load.answers if x.status == 503]
        assert statuses <= {200, 202, 503}, statuses  # no 500, no cut or hung connection
        assert unavailable, "no request met the outage"
        assert {x.retry_after for x in unavailable} == {"5"}
        first_503 = min(x.at for x in unavailable)
        last_503 = max(x.at + x.took for x in unavailable)
        resumed = min(t for rid, t in load.assigned_at.items() if rid not in before)
        slowest = max(x.took for x in load.answers)

        # No partial writes, and every acknowledged registration complete.
        assert _consistency(cluster.url) == []
        assigned = _assigned(cluster.url)
        missing = {rid for rid, op in load.acknowledged.items() if assigned.get(op) != rid}
        assert missing == set()
        print(
            f"database away {started - stopped:.1f} s: {len(unavailable)} answers 503 with "
            f"Retry-After 5, from {first_503 - stopped:.1f} s to {last_503 - stopped:.1f} s "
            f"after the stop; first registration assigned {resumed - started:.1f} s after the "
            f"database started; slowest answer {slowest:.2f} s; "
            f"{len(load.acknowledged)} acknowledged, all complete"
        )
