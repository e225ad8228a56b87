"""Storage never blocks the event loop, against a real ``devprov serve`` on a real SQLite file:
while a second process holds the database's write lock, new TLS handshakes and requests that
need no write are answered at once, a write waits for the lock's bound and is then answered 503
with a retry hint and writes nothing, and everything works again once the lock is released
(docs/storage.md#storage-and-the-event-loop)."""

from __future__ import annotations

import concurrent.futures
import socket
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.core.error import StorageBusyError
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.storage.database import LOCK_TIMEOUT_SECONDS
from tests.lock_holder import LockHolder, holding_write_lock
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

API = "api-version=2021-06-01"
CERTIFICATES = (
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Devices/provisioningServices/default"
    "/certificates"
)
# Long enough for a write to wait out its bound and for the reads beside it, with room to spare.
HOLD_SECONDS = LOCK_TIMEOUT_SECONDS * 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("storage-lock")
    with running_server(directory / "data") as server:
        assert main(["hub", "add", "hub-a.azure-devices.net", *server.cli_args()]) == 0
        assert main(["ca", "demo", str(directory / "pki")]) == 0
        root = directory / "pki" / "root"
        assert (
            main(
                [
                    *("certificate", "prove", "root", "--cert", f"{root}.pem"),
                    *("--key", f"{root}.key", *server.cli_args()),
                ]
            )
            == 0
        )
        yield server


def _context(server: ServerProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca_file))


def service_client(server: ServerProcess) -> httpx.Client:
    c = open_container(server.data_dir)
    try:
        key = c.directory.policies("default")[0].primary_key
    finally:
        c.engine.dispose()
    token = build_sas_token(
        key, f"localhost:{server.port}", int(time.time()) + 600, "provisioningserviceowner"
    )
    return httpx.Client(
        base_url=server.url, verify=_context(server), headers={"Authorization": token}, timeout=30
    )


def admin_client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        verify=_context(server),
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    )


def scope_of(server: ServerProcess) -> str:
    c = open_container(server.data_dir)
    try:
        return c.directory.get("default").id_scope
    finally:
        c.engine.dispose()


def handshake_seconds(server: ServerProcess) -> float:
    """A new TCP connection and a full TLS handshake with the server; how long they took."""
    started = time.monotonic()
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw,
        _context(server).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() is not None
    return time.monotonic() - started


def device_token(scope: str, key: str, registration_id: str) -> str:
    device_key = derive_device_key(key, registration_id)
    resource = f"{scope}/registrations/{registration_id}"
    return build_sas_token(device_key, resource, int(time.time()) + 600)


def register(device: httpx.Client, scope: str, rid: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": token} if token else {}
    return device.put(
        f"/{scope}/registrations/{rid}/register?{API}",
        json={"registrationId": rid},
        headers=headers,
    )


def assert_busy(answer: httpx.Response, holder: LockHolder) -> None:
    """A write refused for the lock: 503 StorageBusy with a retry hint, while the lock is held."""
    assert holder.holds()
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) > 0
    assert answer.headers["x-ms-error-code"] == str(StorageBusyError.number)


def test_a_held_write_lock_stalls_only_writes(server: ServerProcess) -> None:
    scope = scope_of(server)
    with service_client(server) as svc:
        group = {"enrollmentGroupId": "lock", "attestation": {"type": "symmetricKey"}}
        assert svc.put("/enrollmentGroups/lock", json=group).status_code == 200
        key = svc.post("/enrollmentGroups/lock/attestationmechanism").json()["symmetricKey"][
            "primaryKey"
        ]
    device = httpx.Client(base_url=server.url, verify=_context(server), timeout=30)
    registered = register(device, scope, "before", device_token(scope, key, "before"))
    assert registered.status_code == 200, registered.text
    assert registered.json()["status"] == "assigned"
    operation = registered.json()["operationId"]
    poll = f"/{scope}/registrations/before/operations/{operation}?{API}"
    tokens = {rid: device_token(scope, key, rid) for rid in ("before", "during", "after")}
    other_device = httpx.Client(base_url=server.url, verify=_context(server), timeout=30)
    # Opened before the lock is taken: opening a data directory writes (its migrations).
    svc, admin = service_client(server), admin_client(server)
    usual_handshake = min(handshake_seconds(server) for _ in range(3))

    with (
        holding_write_lock(server.data_dir / "devprov.db", HOLD_SECONDS) as holder,
        concurrent.futures.ThreadPoolExecutor(4) as pool,
    ):
        # Writes that wait for the lock, started first: a refusal of a device without
        # credentials (its audit row), a registration, a new enrollment.
        refusal = pool.submit(register, device, scope, "nobody", None)
        late = pool.submit(register, other_device, scope, "during", tokens["during"])
        enrollment = pool.submit(
            svc.put,
            "/enrollments/during",
            json={"registrationId": "during", "attestation": {"type": "symmetricKey"}},
        )
        time.sleep(0.2)  # the writes are at the lock

        # (a) handshakes are as quick as ever, well inside the holder's time.
        handshakes = [handshake_seconds(server) for _ in range(5)]
        # (b) requests that write nothing are answered while the lock is held.
        reads = [
            admin.get(f"{CERTIFICATES}/root?api-version=2021-10-15"),
            svc.post("/enrollmentGroups/query", json={"query": "*"}),
            device.get(poll, headers={"Authorization": tokens["before"]}),
        ]
        reads_done = holder.holds()
        assert reads_done, "the lock was released before the reads were answered"
        assert max(handshakes) < HOLD_SECONDS / 10, (handshakes, usual_handshake)
        assert [r.status_code for r in reads] == [200, 200, 200], [r.text for r in reads]
        assert reads[0].json()["name"] == "root"
        assert [g["enrollmentGroupId"] for g in reads[1].json()] == ["lock"]
        assert reads[2].json() == registered.json()

        # (c) the writes wait the lock's bound, then get 503 with a retry hint.
        started = holder.locked_at
        assert refusal.result().status_code == 401  # its audit row is the log's news
        assert_busy(late.result(), holder)
        assert_busy(enrollment.result(), holder)
        assert time.monotonic() - started >= LOCK_TIMEOUT_SECONDS

    # Nothing was written: the enrollment and the registration do not exist.
    assert svc.get("/enrollments/during").status_code == 404
    assert svc.get("/registrations/during").status_code == 404
    # (d) once the lock is released, writes succeed again.
    created = svc.put(
        "/enrollments/during",
        json={"registrationId": "during", "attestation": {"type": "symmetricKey"}},
    )
    assert created.status_code == 200
    after = register(device, scope, "after", tokens["after"])
    assert after.status_code == 200 and after.json()["status"] == "assigned", after.text
    assert admin.get(f"{CERTIFICATES}?api-version=2021-10-15").status_code == 200
    for client in (svc, admin, device, other_device):
        client.close()
    assert any("StorageBusy" in line for line in server.output)
