"""``kill -9`` of a server under a registration load, then a restart: every registration the
server acknowledged is still there.

Why it holds: a registration is acknowledged (200 with its outcome, ``assigned``, and its
operation id) only after its transaction committed, and SQLite in WAL mode has written a
committed transaction to the write-ahead log with write(2) before the commit returns. The kernel
keeps those bytes when the process dies, whatever the signal; the next opening of the database
replays the log. The engine runs with ``synchronous=NORMAL`` (devprov.storage.database), which
syncs the log at checkpoints rather than at each commit: enough for a process crash, not for a
power cut or a kernel crash, which may lose the last commits
(docs/operations.md#kill--9-and-acknowledged-writes).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest

from devprov.bootstrap import open_container
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import build_sas_token, derive_device_key
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

API = "api-version=2019-03-31"
CLIENTS = 6
ROUNDS = 3
ACKNOWLEDGED_BEFORE_KILL = 40


def _listening(port: int) -> bool:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            return True
    return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _serving_workers(pid: int) -> list[int]:
    """The server's worker processes, once each has opened the database (and so serves a
    moment later): the kill must find them at work, not still starting."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        workers = [
            int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
        ]
        ready = [
            w
            for w in workers
            if any("devprov.db" in str(f.resolve()) for f in Path(f"/proc/{w}/fd").iterdir())
        ]
        if ready and len(ready) == len(workers):
            time.sleep(0.5)
            return ready
        time.sleep(0.1)
    raise AssertionError("the workers did not start")


class Fleet:
    """Symmetric-key devices of one enrollment group, registering as fast as they can."""

    def __init__(self, root: Path) -> None:
        c = open_container(root)
        try:
            self.scope = c.directory.get("default").id_scope
            group = c.enrollments.get("default", EnrollmentKind.GROUP, "load")
            assert group.attestation.primary_key is not None
            self.group_key = group.attestation.primary_key
        finally:
            c.engine.dispose()

    def token(self, registration_id: str) -> str:
        key = derive_device_key(self.group_key, registration_id)
        resource = f"{self.scope}/registrations/{registration_id}"
        return build_sas_token(key, resource, int(time.time()) + 600)

    def client(self, server: ServerProcess) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(server.ca_file))
        return httpx.Client(base_url=server.url, verify=context, timeout=30)

    def register(self, client: httpx.Client, registration_id: str) -> str | None:
        """The operation id of an acknowledged registration, answered with its assignment;
        None when no answer came."""
        try:
            response = client.put(
                f"/{self.scope}/registrations/{registration_id}/register?{API}",
                json={"registrationId": registration_id},
                headers={"Authorization": self.token(registration_id)},
            )
        except httpx.TransportError:
            return None
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "assigned", response.text
        return str(response.json()["operationId"])

    def status(self, client: httpx.Client, registration_id: str, operation: str) -> str:
        response = client.get(
            f"/{self.scope}/registrations/{registration_id}/operations/{operation}?{API}",
            headers={"Authorization": self.token(registration_id)},
        )
        assert response.status_code == 200, (registration_id, response.text)
        return str(response.json()["status"])


def _load(
    fleet: Fleet,
    server: ServerProcess,
    prefix: str,
    acknowledged: dict[str, str],
    stop: threading.Event,
) -> None:
    with fleet.client(server) as client:
        for n in itertools.count():
            registration_id = f"{prefix}-{n}"
            operation = fleet.register(client, registration_id)
            if operation is None or stop.is_set():
                return  # the server is gone (or, were its workers left, the test is over)
            acknowledged[registration_id] = operation


def _prepare(root: Path) -> int:
    with running_server(root) as server:
        context = ssl.create_default_context(cafile=str(server.ca_file))
        c = open_container(root)
        try:
            c.hubs.add("default", "hub.azure-devices.net", actor="test")
            policy = c.directory.policies("default")[0]
        finally:
            c.engine.dispose()
        token = build_sas_token(
            policy.primary_key, f"localhost:{server.port}", int(time.time()) + 600, policy.name
        )
        with httpx.Client(
            base_url=server.url, verify=context, headers={"Authorization": token}
        ) as service:
            created = service.put(
                "/enrollmentGroups/load",
                json={"enrollmentGroupId": "load", "attestation": {"type": "symmetricKey"}},
            )
            assert created.status_code == 200, created.text
        return server.port


# A kill -9 in the middle of a client's TLS handshake leaves httpx's half-open socket to the
# garbage collector, whose "unclosed" warning (an error here) can land in any client thread. The
# client's leak is not what this test is about: the server's durability is.
@pytest.mark.filterwarnings("ignore:unclosed <ssl.SSLSocket:ResourceWarning")
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <ssl.SSLSocket:pytest.PytestUnraisableExceptionWarning"
)
def test_kill_9_under_registration_load_loses_no_acknowledged_registration(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    port = _prepare(root)
    fleet = Fleet(root)
    acknowledged: dict[str, str] = {}
    for round_ in range(ROUNDS):
        with running_server(root, "--workers", "2", "--port", str(port)) as server:
            with fleet.client(server) as client:  # what earlier rounds acknowledged is there
                for registration_id, operation in acknowledged.items():
                    assert fleet.status(client, registration_id, operation) == "assigned"
            workers = _serving_workers(server.process.pid)
            this_round: dict[str, str] = {}
            stop = threading.Event()
            clients = [
                threading.Thread(
                    target=_load, args=(fleet, server, f"r{round_}c{i}", this_round, stop)
                )
                for i in range(CLIENTS)
            ]
            for thread in clients:
                thread.start()
            deadline = time.monotonic() + 60
            while len(this_round) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < deadline:
                time.sleep(0.01)
            server.process.kill()  # SIGKILL, with registrations in flight
            server.process.wait()
            stop.set()
            for thread in clients:
                thread.join(60)
            assert len(this_round) >= ACKNOWLEDGED_BEFORE_KILL
            acknowledged.update(this_round)
            # Nothing of the killed server may keep the port: its workers end with it.
            deadline = time.monotonic() + 5
            while any(_alive(w) for w in workers) and time.monotonic() < deadline:
                time.sleep(0.05)
            survivors = [w for w in workers if _alive(w)]
            for pid in survivors:  # end them here: a failure, not a hang on their output
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            assert survivors == [], "the killed server's workers outlived it"
            assert not _listening(port)
    with running_server(root, "--port", str(port)) as server, fleet.client(server) as client:
        missing = [
            registration_id
            for registration_id, operation in acknowledged.items()
            if fleet.status(client, registration_id, operation) != "assigned"
        ]
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged registrations lost"
    c = open_container(root)
    try:
        stored = {
            registration_id
            for registration_id in acknowledged
            if c.registration_states.find("default", registration_id) is not None
        }
    finally:
        c.engine.dispose()
    assert stored == set(acknowledged)
