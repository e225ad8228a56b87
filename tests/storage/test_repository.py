"""The storage contract, run against a real SQLite file built by the migrations."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import inspect

from devprov.core.error import AlreadyExistsError, EtagMismatchError
from devprov.core.possession import VerificationCodes
from devprov.service.model import (
    AccessPolicy,
    AuditEvent,
    CertificateRecord,
    Outcome,
    ProvisioningService,
    VerificationMethod,
)
from devprov.storage.database import create_database_engine, migrate, sqlite_url
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
    for table in metadata.sorted_tables:
        migrated = {c["name"] for c in inspector.get_columns(table.name)}
        assert migrated == {c.name for c in table.columns}, table.name


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


def test_two_engines_on_one_file_see_each_other(tmp_path) -> None:
    """Two servers on one SQLite file: WAL and busy timeouts keep both consistent."""
    from devprov.storage.repository import SqlUnitOfWork

    url = sqlite_url(tmp_path / "shared.db")
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
        with first.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        first.dispose()
        second.dispose()
