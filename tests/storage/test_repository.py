"""The storage contract, run on SQLite and on PostgreSQL (tests/storage/conftest.py), on
databases built by the migrations."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import InterfaceError, OperationalError

from devprov.core.error import (
    AlreadyExistsError,
    EtagMismatchError,
    NotFoundError,
    StorageUnavailableError,
)
from devprov.core.possession import VerificationCodes
from devprov.service.model import (
    AccessPolicy,
    AuditEvent,
    CertificateRecord,
    Outcome,
    ProvisioningService,
    VerificationMethod,
)
from devprov.storage.database import MIGRATIONS, create_database_engine, head_revision, migrate
from devprov.storage.repository import SqlUnitOfWork
from devprov.storage.table import metadata
from tests import factory as f


def service(name: str = "svc", scope: str = "0ne00000001") -> ProvisioningService:
    return ProvisioningService(name=name, id_scope=scope, created_at=f.NOW)


def record(name: str = "root", etag: str = "AAAAAAAAAAE=") -> CertificateRecord:
    return CertificateRecord(
        service="svc",
        name=name,
        der=f.root().der,
        is_verified=False,
        verification_method=None,
        verified_at=None,
        created_at=f.NOW,
        updated_at=f.NOW,
        etag=etag,
    )


@pytest.fixture
def with_service(uow):
    with uow() as u:
        u.services.add(
            service(), [AccessPolicy("svc", "owner", "p", "s", frozenset({"EnrollmentRead"}))]
        )
        u.commit()
    return uow


def test_migrations_match_the_table_metadata(engine) -> None:
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == set(metadata.tables) | {"alembic_version"}
    for table in metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name
        foreign_keys = {
            (tuple(fk["constrained_columns"]), fk["referred_table"], fk["options"].get("ondelete"))
            for fk in inspector.get_foreign_keys(table.name)
        }
        assert foreign_keys == {
            (tuple(c.name for c in fk.columns), fk.referred_table.name, fk.ondelete)
            for fk in table.foreign_key_constraints
        }, table.name
    # Types, nullability, keys, unique constraints and indexes, as Alembic's autogenerate sees
    # them: an empty difference means table.py describes what the migrations build.
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_migrate_twice_is_a_no_op(engine) -> None:
    migrate(engine)
    assert "certificates" in inspect(engine).get_table_names()


def test_service_round_trip(with_service) -> None:
    with with_service() as u:
        loaded = u.services.get("svc")
        assert loaded == service()
        assert u.services.get_by_scope("0NE00000001") == service()
        assert u.services.get("nope") is None
        assert [p.rights for p in u.services.policies("svc")] == [frozenset({"EnrollmentRead"})]
        assert loaded.created_at.tzinfo is not None


def test_service_names_are_unique(with_service) -> None:
    with with_service() as u, pytest.raises(AlreadyExistsError):
        u.services.add(service(scope="0ne00000002"), [])


def test_certificate_round_trip_keeps_everything(with_service) -> None:
    codes = VerificationCodes(
        current="AB" * 24, issued_at=f.NOW, superseded=("C" * 48,), used=("D" * 48,)
    )
    stored = replace(
        record(),
        is_verified=True,
        verification_method=VerificationMethod.PROOF_OF_POSSESSION,
        verified_at=f.NOW,
        codes=codes,
    )
    with with_service() as u:
        u.certificates.add(stored)
        u.commit()
    with with_service() as u:
        assert u.certificates.get("svc", "ROOT") == stored
        assert u.certificates.count("svc") == 1


def test_certificate_names_are_unique_ignoring_case(with_service) -> None:
    with with_service() as u:
        u.certificates.add(record("Root"))
        with pytest.raises(AlreadyExistsError):
            u.certificates.add(record("ROOT"))
        u.certificates.add(record("other"))
        u.commit()
    with with_service() as u:
        assert [r.name for r in u.certificates.in_service("svc")] == ["other", "Root"]


def test_replace_is_compare_and_swap(with_service) -> None:
    with with_service() as u:
        u.certificates.add(record())
        u.commit()
    with with_service() as u:
        with pytest.raises(EtagMismatchError):
            u.certificates.replace(replace(record(), etag="new"), expected_etag="stale")
        u.certificates.replace(
            replace(record(), etag="new", is_verified=True), expected_etag="AAAAAAAAAAE="
        )
        u.commit()
    with with_service() as u:
        current = u.certificates.get("svc", "root")
        assert current is not None and current.etag == "new" and current.is_verified


def test_remove_is_compare_and_swap(with_service) -> None:
    with with_service() as u:
        u.certificates.add(record())
        u.commit()
    with with_service() as u:
        with pytest.raises(EtagMismatchError):
            u.certificates.remove("svc", "root", expected_etag="stale")
        u.certificates.remove("svc", "root", expected_etag="AAAAAAAAAAE=")
        u.commit()
    with with_service() as u:
        assert u.certificates.get("svc", "root") is None


def test_uncommitted_work_is_rolled_back(with_service) -> None:
    with with_service() as u:
        u.certificates.add(record())
    with with_service() as u:
        assert u.certificates.get("svc", "root") is None


def test_rollback_keeps_the_unit_usable(with_service) -> None:
    with with_service() as u:
        u.certificates.add(record())
        u.rollback()
        u.certificates.add(record("second"))
        u.commit()
    with with_service() as u:
        assert [r.name for r in u.certificates.in_service("svc")] == ["second"]


def test_audit_log_filters_and_orders(with_service) -> None:
    with with_service() as u:
        for i in range(5):
            u.audit.record(
                AuditEvent(
                    at=f.NOW + timedelta(seconds=i),
                    service="svc" if i % 2 == 0 else "other",
                    action="upload",
                    outcome=Outcome.SUCCEEDED if i < 4 else Outcome.FAILED,
                    actor="admin",
                    certificate=f"c{i}",
                    reason=None if i < 4 else "bad",
                    error_code=None if i < 4 else "X",
                    api_version="2021-10-15",
                )
            )
        u.commit()
    with with_service() as u:
        assert [e.certificate for e in u.audit.query(service="svc")] == ["c0", "c2", "c4"]
        assert [e.certificate for e in u.audit.query(limit=2)] == ["c3", "c4"]
        (last,) = u.audit.query(certificate="C4")
        assert (
            last.outcome is Outcome.FAILED and last.error_code == "X" and last.at.tzinfo is not None
        )


def test_settings_put_and_overwrite(uow) -> None:
    with uow() as u:
        assert u.settings.get("k") is None
        u.settings.put("k", "1")
        u.settings.put("k", "2")
        u.commit()
    with uow() as u:
        assert u.settings.get("k") == "2"


def test_two_engines_on_one_database_see_each_other(database_url: str) -> None:
    """Two servers on one database (on SQLite, one file: WAL and busy timeouts keep both
    consistent)."""
    url = database_url
    first, second = create_database_engine(url), create_database_engine(url)
    migrate(first)
    migrate(second)
    try:
        with SqlUnitOfWork(first) as u:
            u.services.add(service(), [])
            u.commit()
        with SqlUnitOfWork(second) as u:
            assert u.services.get("svc") is not None
            u.certificates.add(record())
            u.commit()
        with SqlUnitOfWork(first) as u:
            assert u.certificates.count("svc") == 1
        if first.dialect.name == "sqlite":
            with first.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        first.dispose()
        second.dispose()


def sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest().upper()


def test_certificates_store_their_sha256(with_service, engine) -> None:
    first, second = record("first"), replace(record("second"), der=f.root("Other").der)
    with with_service() as u:
        u.certificates.add(first)
        u.certificates.add(second)
        u.certificates.replace(replace(second, der=first.der), expected_etag=second.etag)
        u.commit()
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT name, sha256 FROM certificates ORDER BY name"))
        assert [tuple(row) for row in rows] == [
            ("first", sha256(first.der)),
            ("second", sha256(first.der)),
        ]


def test_in_service_lists_a_services_certificates_by_name(with_service) -> None:
    with with_service() as u:
        u.certificates.add(record("b-unverified"))
        u.certificates.add(replace(record("C-verified"), is_verified=True))
        u.certificates.add(replace(record("a-verified"), is_verified=True))
        u.commit()
    with with_service() as u:
        listed = u.certificates.in_service("svc")
        assert [r.name for r in listed] == ["a-verified", "b-unverified", "C-verified"]
        assert [r.is_verified for r in listed] == [True, False, True]
        assert u.certificates.in_service("other") == []


def test_audit_log_keeps_and_filters_registration_ids(with_service) -> None:
    with with_service() as u:
        for i, registration_id in enumerate(["Device-1", None, "device-1", "device-2"]):
            u.audit.record(
                AuditEvent(
                    at=f.NOW + timedelta(seconds=i),
                    service="svc",
                    action="enrollment.createOrUpdate",
                    outcome=Outcome.SUCCEEDED,
                    actor="admin",
                    reason=str(i),
                    registration_id=registration_id,
                )
            )
        u.commit()
    with with_service() as u:
        assert [e.reason for e in u.audit.query(registration_id="DEVICE-1")] == ["0", "2"]
        assert [e.registration_id for e in u.audit.query(service="svc")] == [
            "Device-1",
            None,
            "device-1",
            "device-2",
        ]
        assert u.audit.query(service="other", registration_id="device-1") == []


def test_policies_add_replace_remove(with_service) -> None:
    reader = AccessPolicy("svc", "reader", "p1", "s1", frozenset({"EnrollmentRead"}))
    with with_service() as u:
        u.services.add_policy(reader)
        with pytest.raises(AlreadyExistsError, match="'owner'"):
            u.services.add_policy(replace(reader, name="owner"))
        u.commit()
    writer = replace(
        reader, primary_key="p2", secondary_key="s2", rights=frozenset({"EnrollmentWrite"})
    )
    with with_service() as u:
        u.services.replace_policy(writer)
        with pytest.raises(NotFoundError):
            u.services.replace_policy(replace(writer, name="absent"))
        u.commit()
    with with_service() as u:
        assert u.services.policies("svc")[1] == writer
        assert u.services.remove_policy("svc", "reader") is True
        assert u.services.remove_policy("svc", "reader") is False
        assert u.services.remove_policy("other", "owner") is False
        u.commit()
    with with_service() as u:
        assert [p.name for p in u.services.policies("svc")] == ["owner"]


# --- migrations --------------------------------------------------------------------------------


def run_alembic(engine: Engine, action: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def insert_certificate_under_0001(engine: Engine, name: str, der: bytes) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO certificates (service, name, name_key, der, is_verified, created_at,"
                " updated_at, etag, superseded_codes, used_codes) VALUES ('svc', :name, :key,"
                " :der, :verified, '2026-11-27 12:00:00.000000', '2026-11-27 12:00:00.000000', 'e',"
                " '[]', '[]')"
            ),
            {"name": name, "key": name.lower(), "der": der, "verified": True},
        )


def test_0002_backfills_the_sha256_of_existing_certificates(fresh_engine) -> None:
    run_alembic(fresh_engine, "upgrade", "0001")
    with fresh_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO services VALUES ('svc', '0ne00000001', '2026-11-27 12:00:00', 25, 3600)"
            )
        )
    one, two = f.root("One").der, f.root("Two").der
    insert_certificate_under_0001(fresh_engine, "One", one)
    insert_certificate_under_0001(fresh_engine, "Two", two)
    assert "sha256" not in {c["name"] for c in inspect(fresh_engine).get_columns("certificates")}

    migrate(fresh_engine)

    with fresh_engine.connect() as connection:
        rows = connection.execute(text("SELECT name, sha256 FROM certificates ORDER BY name"))
        assert [tuple(row) for row in rows] == [("One", sha256(one)), ("Two", sha256(two))]
    with SqlUnitOfWork(fresh_engine) as u:
        loaded = u.certificates.get("svc", "one")
        assert loaded is not None and loaded.der == one


def test_0002_downgrades_to_0001_and_upgrades_again(fresh_engine) -> None:
    migrate(fresh_engine)
    stored = record()
    with SqlUnitOfWork(fresh_engine) as u:
        u.services.add(service(), [])
        u.certificates.add(stored)
        u.commit()

    run_alembic(fresh_engine, "downgrade", "0001")
    inspector = inspect(fresh_engine)
    assert "enrollments" not in inspector.get_table_names()
    assert "sha256" not in {c["name"] for c in inspector.get_columns("certificates")}
    assert "registration_id" not in {c["name"] for c in inspector.get_columns("audit_events")}

    migrate(fresh_engine)
    with SqlUnitOfWork(fresh_engine) as u:
        assert u.certificates.get("svc", "root") == stored
    with fresh_engine.connect() as connection:
        thumbprint = connection.execute(text("SELECT sha256 FROM certificates")).scalar_one()
        assert thumbprint == sha256(stored.der)
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == head_revision()


def test_policies_named_across_services(with_service) -> None:
    with with_service() as u:
        u.services.add(service("svc2", "0ne00000002"), [AccessPolicy("svc2", "owner", "p2", "s2")])
        u.commit()
    with with_service() as u:
        assert [(p.service, p.primary_key) for p in u.services.policies_named("owner")] == [
            ("svc", "p"),
            ("svc2", "p2"),
        ]
        assert u.services.policies_named("nobody") == []


def test_an_audit_event_with_overlong_descriptive_fields_is_kept_cut_to_its_columns(
    with_service,
) -> None:
    """PostgreSQL refuses a string longer than its column where SQLite keeps it: the actor of a
    device with a 128-character id runs past its 128, and the event is kept on both, cut alike."""
    device = "d" * 128
    with with_service() as u:
        u.audit.record(
            AuditEvent(
                at=f.NOW,
                service="svc",
                action="register",
                outcome=Outcome.FAILED,
                actor=f"device:{device}",
                reason="r" * 5000,
                api_version="v" * 100,
                registration_id=device,
            )
        )
        u.commit()
    with with_service() as u:
        (stored,) = u.audit.query(registration_id=device)
    assert stored.actor == f"device:{device}"[:128]
    assert stored.api_version == "v" * 64
    # Within their columns, or in a column without a length: whole.
    assert stored.registration_id == device
    assert stored.reason == "r" * 5000


def _gone(*_args: object) -> None:
    raise OperationalError("ROLLBACK", {}, Exception("server closed the connection"))


def test_a_database_gone_before_the_rollback_is_unavailable_not_a_crash(
    with_service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault simulated: the connection dies between the unit's last read and its rollback.
    refused = pytest.raises(StorageUnavailableError, match="server closed the connection")
    with refused, with_service(read_only=True) as u:
        u.services.get("svc")
        monkeypatch.setattr(u._connection, "rollback", _gone)


def test_a_statement_on_a_closed_driver_connection_is_unavailable(with_service) -> None:
    with pytest.raises(StorageUnavailableError, match="closed"), with_service(read_only=True):
        raise InterfaceError("SELECT 1", {}, Exception("the connection is closed"))
