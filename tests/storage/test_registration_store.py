"""The stores of device registration (states, operations, linked hubs), on a real SQLite file
built by the migrations."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text

from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import AlreadyExistsError, EtagMismatchError, NotFoundError
from devprov.core.registration import (
    AttestationMethod,
    CertificateSummary,
    RegistrationState,
    RegistrationStatus,
    Substatus,
)
from devprov.service.hub_identity import HubKind
from devprov.service.model import HubRecord, Operation, ProvisioningService
from devprov.storage.database import migrate
from devprov.storage.repository import SqlUnitOfWork
from tests import factory as f
from tests.storage.test_repository import run_alembic

CREATED = f.NOW + timedelta(microseconds=654321)
UPDATED = CREATED + timedelta(minutes=5, microseconds=7)


@pytest.fixture
def with_services(uow):
    with uow() as u:
        u.services.add(ProvisioningService("svc", "0ne00000001", f.NOW), [])
        u.services.add(ProvisioningService("svc2", "0ne00000002", f.NOW), [])
        u.commit()
    return uow


def summary(cn: str) -> CertificateSummary:
    return CertificateSummary(
        subject_name=f"CN={cn}",
        sha1_thumbprint="A1" * 20,
        sha256_thumbprint="B2" * 32,
        issuer_name="CN=Test Root, O=devprov",
        not_before=datetime(2026, 1, 1, 0, 0, 1, 250000, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
        serial_number="0A1B2C",
        version=3,
    )


def state(
    registration_id: str = "My-Device",
    *,
    group: str = "Group-A",
    kind: EnrollmentKind = EnrollmentKind.GROUP,
    service: str = "svc",
    etag: str = "etag-1",
) -> RegistrationState:
    return RegistrationState(
        service=service,
        registration_id=registration_id,
        method=AttestationMethod.SYMMETRIC_KEY,
        enrollment_kind=kind,
        enrollment_id=group,
        status=RegistrationStatus.ASSIGNING,
        created_at=CREATED,
        updated_at=UPDATED,
        etag=etag,
    )


def full_state() -> RegistrationState:
    """Every optional member set."""
    return replace(
        state(),
        method=AttestationMethod.X509,
        status=RegistrationStatus.ASSIGNED,
        device_id="my-device",
        assigned_hub="hub-b.azure-devices.net",
        initial_hub="hub-a.azure-devices.net",
        substatus=Substatus.DEVICE_DATA_MIGRATED,
        error_code=400207,
        error_message="not really an error",
        payload={"modelId": "dtmi:x;1", "list": [1, 2.5, None, {"ü": True}]},
        certificate=summary("my-device"),
        signing_certificate=summary("Test Intermediate"),
        leaf_sha256="C3" * 32,
    )


# --- registration states -----------------------------------------------------------------------


@pytest.mark.parametrize("make", [state, full_state], ids=["minimal", "every-field"])
def test_registration_round_trip(with_services, make) -> None:
    stored = make()
    with with_services() as u:
        u.registrations.put(stored, expected_etag=None)
        u.commit()
    with with_services() as u:
        assert u.registrations.get("svc", "MY-DEVICE") == stored
        assert u.registrations.get("svc2", "my-device") is None
        assert u.registrations.get("svc", "other") is None


def test_put_without_etag_inserts_or_overwrites(with_services) -> None:
    first = state()
    second = replace(
        full_state(), registration_id="my-device", etag="etag-2", created_at=CREATED + timedelta(1)
    )
    with with_services() as u:
        u.registrations.put(first, expected_etag=None)
        u.registrations.put(second, expected_etag=None)
        u.commit()
    with with_services() as u:
        assert u.registrations.get("svc", "my-device") == second


def test_add_inserts_only_new_registrations(with_services) -> None:
    with with_services() as u:
        u.registrations.add(state())
        u.commit()
    with with_services() as u, pytest.raises(AlreadyExistsError, match="created meanwhile"):
        u.registrations.add(replace(state(), registration_id="MY-DEVICE", etag="other"))
    with with_services() as u:
        assert u.registrations.get("svc", "my-device") == state()


def test_put_with_etag_is_compare_and_swap(with_services) -> None:
    with with_services() as u:
        u.registrations.put(state(), expected_etag=None)
        u.commit()
    updated = replace(state(), status=RegistrationStatus.FAILED, etag="etag-2")
    with with_services() as u:
        with pytest.raises(EtagMismatchError, match="'My-Device'"):
            u.registrations.put(updated, expected_etag="stale")
        with pytest.raises(EtagMismatchError):
            u.registrations.put(state("absent"), expected_etag="etag-1")
        u.registrations.put(updated, expected_etag="etag-1")
        u.commit()
    with with_services() as u:
        assert u.registrations.get("svc", "my-device") == updated
        assert u.registrations.get("svc", "absent") is None


def test_registration_remove_is_compare_and_swap(with_services) -> None:
    with with_services() as u:
        u.registrations.put(state(), expected_etag=None)
        u.commit()
    with with_services() as u:
        with pytest.raises(EtagMismatchError):
            u.registrations.remove("svc", "my-device", expected_etag="stale")
        with pytest.raises(EtagMismatchError):
            u.registrations.remove("svc", "absent", expected_etag="etag-1")
        u.registrations.remove("svc", "MY-DEVICE", expected_etag="etag-1")
        u.commit()
    with with_services() as u:
        assert u.registrations.get("svc", "my-device") is None


def test_page_for_group_covers_its_registrations_once(with_services) -> None:
    ids = [f"{'Dev' if i % 3 else 'dev'}-{i:02d}" for i in range(25)]
    with with_services() as u:
        for i, id in enumerate(reversed(ids)):
            group = "Group-A" if i % 2 else "GROUP-a"  # one group, spelled two ways
            u.registrations.put(state(id, group=group), expected_etag=None)
        # Not in the group: another group, an individual enrollment of the same id, another
        # service.
        u.registrations.put(state("other-group", group="group-b"), expected_etag=None)
        u.registrations.put(
            state("individual", group="group-a", kind=EnrollmentKind.INDIVIDUAL),
            expected_etag=None,
        )
        u.registrations.put(state("elsewhere", service="svc2"), expected_etag=None)
        u.commit()
    pages: list[list[str]] = []
    after: str | None = None
    with with_services() as u:
        while page := u.registrations.page_for_group("svc", "group-A", after=after, limit=10):
            pages.append([s.registration_id for s in page])
            after = page[-1].key
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [id for p in pages for id in p]
    assert seen == sorted(ids, key=str.lower)
    assert len(set(seen)) == 25


# --- operations --------------------------------------------------------------------------------


def test_operation_round_trip_and_uniqueness(with_services) -> None:
    minimal = Operation("4.op-1", "svc", "My-Device", CREATED, "assigning")
    full = Operation(
        "4.op-2",
        "svc",
        "My-Device",
        UPDATED,
        "failed",
        enrollment_kind="group",
        enrollment_id="Group-A",
        leaf_sha256="D4" * 32,
        error_code=401002,
        error_message="Invalid certificate.",
    )
    with with_services() as u:
        u.operations.add(minimal)
        u.operations.add(full)
        u.commit()
    with with_services() as u, pytest.raises(AlreadyExistsError, match=re.escape("'4.op-1'")):
        u.operations.add(replace(minimal, status="assigned"))
    with with_services() as u:
        assert u.operations.get("svc", "4.op-1") == minimal
        assert u.operations.get("svc", "4.op-2") == full
        assert u.operations.get("svc2", "4.op-1") is None
        assert u.operations.get("svc", "4.op-3") is None


def test_an_assigning_operation_is_settled_once_under_its_id(with_services) -> None:
    held = Operation("5.op-held", "svc", "My-Device", CREATED, "assigning", "group", "Group-A")
    with with_services() as u:
        u.operations.add(held)
        u.commit()
    settled = replace(
        held, created_at=UPDATED, status="failed", error_code=503430, error_message="slow"
    )
    with with_services() as u:
        u.operations.settle(settled)
        u.commit()
    with with_services() as u:
        # The outcome is written; the id and the moment it was stored stay.
        assert u.operations.get("svc", "5.op-held") == replace(settled, created_at=CREATED)
    for again in (settled, replace(held, id="5.op-unknown"), replace(held, service="svc2")):
        with with_services() as u, pytest.raises(NotFoundError, match="is not assigning"):
            u.operations.settle(replace(again, status="assigned"))


# --- linked hubs -------------------------------------------------------------------------------


def hub(host: str, weight: int = 1, *, service: str = "svc") -> HubRecord:
    return HubRecord(service, host, weight, apply_allocation_policy=True, created_at=CREATED)


def test_hubs_add_list_and_uniqueness(with_services) -> None:
    with with_services() as u:
        u.hubs.add(hub("hub-b.azure-devices.net"))
        u.hubs.add(hub("hub-a.azure-devices.net", 5))
        u.hubs.add(hub("hub-a.azure-devices.net", service="svc2"))
        with pytest.raises(AlreadyExistsError, match=re.escape("'HUB-A.azure-devices.net'")):
            u.hubs.add(hub("HUB-A.azure-devices.net"))
        u.commit()
    with with_services() as u:
        assert u.hubs.all("svc") == [
            hub("hub-a.azure-devices.net", 5),
            hub("hub-b.azure-devices.net"),
        ]
        assert u.hubs.all("nope") == []


def test_hub_replace_and_remove(with_services) -> None:
    with with_services() as u:
        u.hubs.add(hub("hub-a.azure-devices.net"))
        u.commit()
    with with_services() as u:
        moved = HubRecord("svc", "Hub-A.azure-devices.net", 9, False, created_at=UPDATED)
        u.hubs.replace(moved)
        with pytest.raises(NotFoundError):
            u.hubs.replace(hub("absent.azure-devices.net"))
        u.commit()
    with with_services() as u:
        assert u.hubs.all("svc") == [
            HubRecord("svc", "hub-a.azure-devices.net", 9, False, created_at=CREATED)
        ]
        assert u.hubs.remove("svc2", "hub-a.azure-devices.net") is False
        assert u.hubs.remove("svc", "HUB-A.azure-devices.net") is True
        assert u.hubs.remove("svc", "hub-a.azure-devices.net") is False
        u.commit()
    with with_services() as u:
        assert u.hubs.all("svc") == []


def test_the_service_page_reads_by_id_and_prefix(with_services) -> None:
    ids = ["a_1", "A%2", "ab-3", "b-1", "ax"]
    with with_services() as u:
        for i, id in enumerate(ids):
            u.registrations.add(state(id, etag=f"e{i}"))
        u.registrations.add(state("a-other", service="svc2"))
        u.commit()
    with with_services(read_only=True) as u:
        first = u.registrations.page("svc", after=None, limit=2)
        rest = u.registrations.page("svc", after=first[-1].key, limit=10)
        # LIKE's wildcards in the prefix are literal: "a_" is not "a" and one character.
        underscore = u.registrations.page("svc", after=None, limit=10, prefix="A_")
        percent = u.registrations.page("svc", after=None, limit=10, prefix="a%")
        a = u.registrations.page("svc", after=None, limit=10, prefix="a")
    assert [s.key for s in first + rest] == sorted(i.lower() for i in ids)
    assert [s.registration_id for s in underscore] == ["a_1"]
    assert [s.registration_id for s in percent] == ["A%2"]
    assert sorted(s.key for s in a) == ["a%2", "a_1", "ab-3", "ax"]


SETTINGS = {"connection_string": "HostName=hub-k.azure-devices.net;SharedAccessKey=c2VjcmV0"}


def test_a_hub_keeps_its_kind_and_settings(with_services) -> None:
    azure = replace(hub("hub-k.azure-devices.net"), kind=HubKind.AZURE_IOTHUB, settings=SETTINGS)
    with with_services() as u:
        u.hubs.add(azure)
        u.hubs.add(hub("hub-n.azure-devices.net"))
        u.commit()
    with with_services(read_only=True) as u:
        assert u.hubs.all("svc") == [azure, hub("hub-n.azure-devices.net")]
    broker = replace(
        azure, kind=HubKind.MOSQUITTO, settings={"broker": "127.0.0.1:8883", "tls": "true"}
    )
    with with_services() as u:
        u.hubs.replace(broker)
        u.hubs.replace(replace(hub("hub-n.azure-devices.net"), weight=2))
        u.commit()
    with with_services(read_only=True) as u:
        assert u.hubs.all("svc") == [broker, replace(hub("hub-n.azure-devices.net"), weight=2)]
        # A hub of kind none stores no settings: it reaches nothing.
        assert u.hubs.all("svc")[1].connection is None


def test_0005_downgrades_to_0004_and_hubs_linked_before_it_are_kind_none(fresh_engine) -> None:
    migrate(fresh_engine)
    run_alembic(fresh_engine, "downgrade", "0004")
    assert {"kind", "settings"}.isdisjoint(
        c["name"] for c in inspect(fresh_engine).get_columns("linked_hubs")
    )
    with fresh_engine.begin() as connection:
        connection.execute(
            text("INSERT INTO services VALUES ('svc', '0ne00000001', :at, 25, 3600)"),
            {"at": f.NOW.replace(tzinfo=None)},
        )
        connection.execute(
            text("INSERT INTO linked_hubs VALUES ('svc', 'old.azure-devices.net', 1, true, :at)"),
            {"at": f.NOW.replace(tzinfo=None)},
        )
    migrate(fresh_engine)
    with SqlUnitOfWork(fresh_engine, read_only=True) as u:
        (old,) = u.hubs.all("svc")
    assert (old.host_name, old.kind, dict(old.settings)) == (
        "old.azure-devices.net",
        HubKind.NONE,
        {},
    )
