"""A device over MQTT while a second process holds SQLite's write lock: CONNECT and a poll are
answered at once, a registration waits for the lock's bound and is answered with status 503 and
a retry hint in the topic, a CONNECT the storage pool has no room for gets CONNACK 3, and all
works again once the lock is released (docs/storage.md#storage-and-the-event-loop)."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import pytest

from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.mqtt.codec import ACCEPTED, SERVER_UNAVAILABLE
from devprov.storage.database import LOCK_TIMEOUT_SECONDS
from devprov.storage.executor import StorageExecutor
from tests.lock_holder import holding_write_lock
from tests.mqtt.client import RawClient, body, status, tls_context
from tests.mqtt.conftest import HUB, LocalServer, start_local_server, stop_local_server

HOLD_SECONDS = LOCK_TIMEOUT_SECONDS * 3


@pytest.fixture
def server(tmp_path) -> Iterator[LocalServer]:
    server = start_local_server(tmp_path / "data")
    try:
        assert server.cli("hub", "add", HUB) == 0
        assert server.cli("enrollment-group", "create", "keys", "--symmetric-key") == 0
        yield server
    finally:
        stop_local_server(server)


def password(server: LocalServer, registration_id: str) -> str:
    mechanism = server.container.enrollments.attestation_mechanism(
        "default", EnrollmentKind.GROUP, "keys"
    )
    assert mechanism.primary_key is not None
    key = derive_device_key(mechanism.primary_key, registration_id)
    resource = f"{server.scope}/registrations/{registration_id}"
    return build_sas_token(key, resource, int(time.time()) + 600, None)


def test_a_device_over_mqtt_while_the_lock_is_held(server: LocalServer) -> None:
    scope, context = server.scope, tls_context(server.ca_file)
    secrets = {rid: password(server, rid) for rid in ("before", "during")}
    with RawClient(server.mqtt_port, context) as before:
        assert before.connect(scope, "before", password=secrets["before"]).return_code == ACCEPTED
        before.subscribe()
        registered = before.register("before")
        assert status(registered) == 200 and body(registered)["status"] == "assigned"
        operation = body(registered)["operationId"]
        with (
            holding_write_lock(server.data_dir / "devprov.db", HOLD_SECONDS) as holder,
            RawClient(server.mqtt_port, context) as during,
        ):
            # CONNECT reads only, and a poll too: both answered while the lock is held.
            assert during.connect(scope, "during", password=secrets["during"]).return_code == 0
            during.subscribe()
            polled = before.poll(operation)
            assert holder.holds()
            assert status(polled) == 200 and body(polled) == body(registered)
            # A registration writes: it waits for the lock's bound, then 503 with a retry hint.
            refused = during.register("during")
            assert holder.holds()
            assert status(refused) == 503, refused.topic
            assert "&retry-after=" in refused.topic
            assert body(refused)["errorCode"] == 503002
            assert time.monotonic() - holder.locked_at >= LOCK_TIMEOUT_SECONDS
    # Released: the device registers.
    with RawClient(server.mqtt_port, context) as after:
        assert after.connect(scope, "during", password=secrets["during"]).return_code == 0
        after.subscribe()
        answer = after.register("during")
        assert status(answer) == 200 and body(answer)["status"] == "assigned"
    assert server.container.registration_states.find("default", "during") is not None


def test_a_connect_the_storage_pool_has_no_room_for_gets_connack_3(server: LocalServer) -> None:
    scope, context = server.scope, tls_context(server.ca_file)
    secrets = {rid: password(server, rid) for rid in ("first", "second")}
    server.container.storage = StorageExecutor(threads=1, queue=0)
    with (
        RawClient(server.mqtt_port, context) as first,
        RawClient(server.mqtt_port, context) as second,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        assert first.connect(scope, "first", password=secrets["first"]).return_code == 0
        first.subscribe()
        with holding_write_lock(server.data_dir / "devprov.db", HOLD_SECONDS) as holder:
            waiting = pool.submit(first.register, "first")  # takes the one storage thread
            while server.container.storage.pending == 0:
                time.sleep(0.01)
            refused = second.connect(scope, "second", password=secrets["second"])
            assert holder.holds()
            assert refused.return_code == SERVER_UNAVAILABLE
            assert status(waiting.result()) == 503
    with RawClient(server.mqtt_port, context) as again:
        assert again.connect(scope, "second", password=secrets["second"]).return_code == 0
