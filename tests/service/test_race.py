"""Use cases racing each other on threads, on both engines: the rules that instances sharing one
database rely on (docs/storage.md#instances-sharing-one-database) hold for concurrent callers.

Each race starts its callers together at a barrier and runs ROUNDS times, so that on
PostgreSQL the two transactions really overlap (on SQLite ``BEGIN IMMEDIATE`` lines them up).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import Engine, func, select

from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import (
    AlreadyExistsError,
    CertificateLimitError,
    DevprovError,
    EtagMismatchError,
)
from devprov.core.registration import RegistrationStatus
from devprov.service.attestation import Credentials
from devprov.service.provisioning import ServiceDirectory
from devprov.storage.database import create_database_engine, migrate
from devprov.storage.repository import SqlUnitOfWork
from devprov.storage.table import certificates, registrations
from tests import factory as f
from tests.database import ENGINES, fresh_database
from tests.service.world import KEY, World

T = TypeVar("T")

ROUNDS = 20


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with fresh_database(request.param, tmp_path) as url:
        engine = create_database_engine(url)
        migrate(engine)
        yield engine
        engine.dispose()


@pytest.fixture
def world(uow, clock, engine: Engine) -> World:
    directory = ServiceDirectory(uow, clock, secrets.token_bytes)
    directory.create("default")
    clock.now = f.NOW + timedelta(hours=1)
    return World(uow, clock, directory)


def together(*calls: Callable[[], T]) -> list[T | DevprovError]:
    """Run the calls on threads released at once; each one's result or devprov error."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T | DevprovError:
        barrier.wait()
        try:
            return call()
        except DevprovError as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_exactly_one_of_two_racing_verifies_wins(world: World) -> None:
    outcomes: list[str] = []
    for round in range(ROUNDS):
        ca = f.root(f"Race Root {round}")
        name = f"race-{round}"
        world.unverified_ca(ca, name)
        coded = world.registry.generate_code("default", name, if_match="*", actor="t")
        code = coded.codes.current or ""
        proof = f.pem(f.verification(ca, code, now=world.clock.now))

        def verify(proof: bytes = proof, name: str = name, etag: str = coded.etag) -> object:
            return world.registry.verify("default", name, proof, if_match=etag, actor="t")

        results = together(verify, verify)
        errors = [r for r in results if isinstance(r, DevprovError)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], EtagMismatchError)
        outcomes.append(errors[0].code)
        stored = world.registry.get("default", name)
        assert stored.is_verified
        assert stored.codes.used == (code,)
        # The code is spent: the same proof, with the current etag, is refused.
        with pytest.raises(DevprovError) as again:
            world.registry.verify("default", name, proof, if_match=stored.etag, actor="t")
        assert again.value.code != "EtagMismatch"
        assert world.registry.get("default", name).etag == stored.etag
    assert len(outcomes) == ROUNDS


def test_a_device_registering_twice_at_once_gets_one_assignment(
    world: World, engine: Engine
) -> None:
    for round in range(ROUNDS):
        rid = f"race-device-{round}"
        world.individual(
            rid, {"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}}}
        )
        credentials = world.token(rid, KEY)

        def register(rid: str = rid, credentials: Credentials = credentials) -> object:
            return world.register(rid, credentials)

        results = together(register, register)
        states = [r.state for r in results if not isinstance(r, DevprovError)]
        assert len(states) == 2, results
        assert all(s is not None and s.status is RegistrationStatus.ASSIGNED for s in states)
        assert {(s.assigned_hub, s.device_id) for s in states if s} == {
            ("hub-a.azure-devices.net", rid)
        }
        with engine.connect() as connection:
            rows = connection.execute(
                select(func.count())
                .select_from(registrations)
                .where(registrations.c.registration_key == rid)
            ).scalar_one()
        assert rows == 1


def test_the_certificate_limit_holds_under_parallel_uploads(
    world: World, uow, clock, engine: Engine
) -> None:
    limit = 4
    ServiceDirectory(uow, clock, secrets.token_bytes).update("default", max_certificates=limit)
    cas = [f.root(f"Limit Root {i}") for i in range(2 * limit)]

    def upload(i: int) -> Callable[[], object]:
        return lambda: world.registry.upload(
            "default", f"limit-{i}", cas[i].pem, is_verified=True, if_match=None, actor="t"
        )

    results = together(*(upload(i) for i in range(2 * limit)))
    refused = [r for r in results if isinstance(r, DevprovError)]
    assert len(refused) == limit
    assert all(isinstance(r, CertificateLimitError) for r in refused)
    with engine.connect() as connection:
        stored = connection.execute(select(func.count()).select_from(certificates)).scalar_one()
    assert stored == limit


def test_enrollments_of_one_id_created_at_once_make_one_record(world: World) -> None:
    doc = {"registrationId": "same", "attestation": {"type": "symmetricKey"}}

    def create() -> object:
        return world.enrollments.create_or_update(
            "default", EnrollmentKind.INDIVIDUAL, "same", doc, if_match=None, actor="t"
        )

    results = together(create, create)
    errors = [r for r in results if isinstance(r, DevprovError)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], AlreadyExistsError)


def test_settings_put_at_once_by_two_units_both_succeed(engine: Engine) -> None:
    def put(value: str) -> Callable[[], None]:
        def call() -> None:
            with SqlUnitOfWork(engine) as unit:
                unit.settings.put("race", value)
                unit.commit()

        return call

    for round in range(ROUNDS):
        results = together(put(f"a{round}"), put(f"b{round}"))
        assert results == [None, None]
        with SqlUnitOfWork(engine, read_only=True) as unit:
            assert unit.settings.get("race") in (f"a{round}", f"b{round}")
        with SqlUnitOfWork(engine) as unit:
            unit._connection.exec_driver_sql("DELETE FROM settings WHERE key = 'race'")
            unit.commit()
