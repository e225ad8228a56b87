"""The credential policy and issued certificate stores' contract, and migration 0007, on SQLite
and PostgreSQL (tests/storage/conftest.py), on databases built by the migrations."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from devprov.core.credential_policy import CaOrigin, CredentialPolicy, IssuedCertificate
from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import AlreadyExistsError, NotFoundError
from devprov.service.model import ProvisioningService
from devprov.storage.database import head_revision, migrate
from devprov.storage.repository import SqlUnitOfWork
from devprov.storage.table import metadata
from tests import factory as f
from tests.storage.test_enrollment_store import enrollment, symmetric
from tests.storage.test_repository import run_alembic

CA = f.root("Policy CA")
OTHER_CA = f.intermediate(CA, "Policy Sub CA")
# Microseconds kept: a store that dropped them would hand back another time.
CREATED = f.NOW + timedelta(microseconds=654321)


@pytest.fixture
def with_services(uow):
    with uow() as u:
        u.services.add(ProvisioningService("svc", "0ne00000001", f.NOW), [])
        u.services.add(ProvisioningService("svc2", "0ne00000002", f.NOW), [])
        u.commit()
    return uow


def policy(name: str = "Fleet-A", *, service: str = "svc", **changes) -> CredentialPolicy:
    value = CredentialPolicy(
        service=service,
        name=name,
        ca_chain_pem=(OTHER_CA.pem + CA.pem).decode(),
        origin=CaOrigin.IMPORTED,
        validity_days=14,
        organization="Contoso",
        organizational_unit="Plant 7",
        server_auth=True,
        crl_number=0,
        created_at=CREATED,
        etag="etag-1",
    )
    return replace(value, **changes)


def issued(
    serial: str,
    registration_id: str = "Dev-1",
    *,
    service: str = "svc",
    policy: str = "Fleet-A",
    at: timedelta = timedelta(0),
    operation_id: str | None = None,
) -> IssuedCertificate:
    der = f.device(CA, registration_id).der
    issued_at = CREATED + at
    return IssuedCertificate(
        service=service,
        serial=serial,
        sha256=hashlib.sha256(der).hexdigest(),
        registration_id=registration_id,
        policy=policy,
        not_before=issued_at - timedelta(minutes=5),
        not_after=issued_at + timedelta(days=14),
        issued_at=issued_at,
        certificate_der=der,
        operation_id=operation_id,
    )


# --- credential policies ---------------------------------------------------------------------


def test_a_policy_reads_back_as_written_by_any_case_of_its_name(with_services) -> None:
    stored = policy()
    with with_services() as u:
        u.credential_policies.add(stored)
        u.commit()
    with with_services(read_only=True) as u:
        assert u.credential_policies.get("svc", "fleet-a") == stored
        assert u.credential_policies.get("svc", "FLEET-A") == stored
        assert u.credential_policies.get("svc2", "Fleet-A") is None
        assert u.credential_policies.get("svc", "fleet-b") is None


def test_a_generated_policy_without_profile_options_reads_back(with_services) -> None:
    plain = CredentialPolicy(
        service="svc",
        name="plain",
        ca_chain_pem=CA.pem.decode(),
        origin=CaOrigin.GENERATED,
        created_at=CREATED,
        etag="e",
    )
    with with_services() as u:
        u.credential_policies.add(plain)
        u.commit()
    with with_services(read_only=True) as u:
        found = u.credential_policies.get("svc", "plain")
    assert found == plain
    assert found is not None and (found.organization, found.server_auth) == (None, False)


def test_a_name_is_taken_whatever_its_case_within_one_service_only(with_services) -> None:
    with with_services() as u:
        u.credential_policies.add(policy())
        u.commit()
    with with_services() as u:
        with pytest.raises(AlreadyExistsError, match="Fleet-a"):
            u.credential_policies.add(policy("Fleet-a"))
        # The failed insert left the unit of work usable: the other service takes the name.
        u.credential_policies.add(policy(service="svc2"))
        u.commit()
    with with_services(read_only=True) as u:
        assert [p.name for p in u.credential_policies.all("svc")] == ["Fleet-A"]
        assert [p.name for p in u.credential_policies.all("svc2")] == ["Fleet-A"]


def test_all_lists_a_services_policies_by_name_ignoring_case(with_services) -> None:
    with with_services() as u:
        for name in ("beta", "Alpha", "gamma"):
            u.credential_policies.add(policy(name))
        u.credential_policies.add(policy("aaa", service="svc2"))
        u.commit()
    with with_services(read_only=True) as u:
        assert [p.name for p in u.credential_policies.all("svc")] == ["Alpha", "beta", "gamma"]
        assert u.credential_policies.all("nobody") == []


def test_remove_deletes_one_policy_once(with_services) -> None:
    with with_services() as u:
        u.credential_policies.add(policy())
        u.credential_policies.add(policy(service="svc2"))
        u.commit()
    with with_services() as u:
        assert u.credential_policies.remove("svc", "FLEET-a") is True
        assert u.credential_policies.remove("svc", "Fleet-A") is False
        u.commit()
    with with_services(read_only=True) as u:
        assert u.credential_policies.get("svc", "Fleet-A") is None
        assert u.credential_policies.get("svc2", "Fleet-A") is not None


def test_next_crl_number_counts_up_per_policy(with_services) -> None:
    with with_services() as u:
        u.credential_policies.add(policy())
        u.credential_policies.add(policy("other"))
        u.commit()
    with with_services() as u:
        assert u.credential_policies.next_crl_number("svc", "fleet-a") == 1
        assert u.credential_policies.next_crl_number("svc", "Fleet-A") == 2
        u.commit()
    with with_services() as u:
        assert u.credential_policies.next_crl_number("svc", "other") == 1
        u.rollback()
    with with_services(read_only=True) as u:
        numbers = {p.name: p.crl_number for p in u.credential_policies.all("svc")}
    assert numbers == {"Fleet-A": 2, "other": 0}


def test_next_crl_number_of_a_missing_policy_is_not_found(with_services) -> None:
    with with_services() as u, pytest.raises(NotFoundError, match="nope"):
        u.credential_policies.next_crl_number("svc", "nope")


def test_enrollments_naming_counts_groups_and_individuals_ignoring_case(with_services) -> None:
    with with_services() as u:
        u.credential_policies.add(policy())
        u.enrollments.add(replace(enrollment("grp", symmetric()), credential_policy="fleet-a"))
        device = enrollment("dev-1", symmetric(2), kind=EnrollmentKind.INDIVIDUAL)
        u.enrollments.add(replace(device, credential_policy="FLEET-A"))
        u.enrollments.add(enrollment("plain", symmetric(3), kind=EnrollmentKind.INDIVIDUAL))
        other = enrollment("dev-2", symmetric(4), kind=EnrollmentKind.INDIVIDUAL)
        u.enrollments.add(replace(other, credential_policy="other"))
        elsewhere = enrollment("dev-3", symmetric(5), kind=EnrollmentKind.INDIVIDUAL)
        u.enrollments.add(replace(elsewhere, service="svc2", credential_policy="Fleet-A"))
        u.commit()
    with with_services(read_only=True) as u:
        assert u.credential_policies.enrollments_naming("svc", "Fleet-A") == 2
        assert u.credential_policies.enrollments_naming("svc", "other") == 1
        assert u.credential_policies.enrollments_naming("svc", "unused") == 0
        assert u.credential_policies.enrollments_naming("svc2", "fleet-a") == 1


def test_an_enrollment_that_drops_its_policy_stops_counting(with_services) -> None:
    named = replace(enrollment("grp", symmetric()), credential_policy="Fleet-A")
    with with_services() as u:
        u.enrollments.add(named)
        u.commit()
    with with_services() as u:
        u.enrollments.replace(
            replace(named, credential_policy=None, etag="etag-2"), expected_etag="etag-1"
        )
        u.commit()
    with with_services(read_only=True) as u:
        assert u.credential_policies.enrollments_naming("svc", "Fleet-A") == 0


# --- issued certificates ---------------------------------------------------------------------


def test_an_issued_certificate_reads_back_by_serial_thumbprint_and_operation(
    with_services,
) -> None:
    stored = issued("0A1B", operation_id="op-1")
    with with_services() as u:
        u.issued.add(replace(stored, serial="0a1b", sha256=stored.sha256.upper()))
        u.commit()
    with with_services(read_only=True) as u:
        # Serials are kept upper-case and thumbprints lower-case, whatever the writer gave.
        assert u.issued.get("svc", "0a1b") == stored
        assert u.issued.get("svc", "0A1B") == stored
        assert u.issued.by_sha256("svc", stored.sha256.upper()) == stored
        assert u.issued.for_operation("svc", "op-1") == stored
        assert u.issued.get("svc2", "0A1B") is None
        assert u.issued.by_sha256("svc2", stored.sha256) is None
        assert u.issued.for_operation("svc", "op-2") is None
        assert u.issued.get("svc", "0A1C") is None


def test_a_serial_or_thumbprint_issued_twice_in_a_service_is_refused(with_services) -> None:
    first = issued("01")
    with with_services() as u:
        u.issued.add(first)
        u.commit()
    with with_services() as u:
        with pytest.raises(AlreadyExistsError, match="01"):
            u.issued.add(issued("01", "Dev-2"))
        with pytest.raises(AlreadyExistsError):
            u.issued.add(replace(first, serial="02"))
        # The accepted twins: the same serial and certificate in another service.
        u.issued.add(replace(first, service="svc2"))
        u.commit()
    with with_services(read_only=True) as u:
        assert u.issued.get("svc2", "01") == replace(first, service="svc2")


def test_supersede_marks_a_registrations_current_certificates_only(with_services) -> None:
    later = CREATED + timedelta(days=1)
    latest = CREATED + timedelta(days=2)
    with with_services() as u:
        u.issued.add(issued("01", "Dev-1"))
        u.issued.add(issued("02", "Dev-1", at=timedelta(hours=1)))
        u.issued.add(issued("03", "Dev-2"))
        u.issued.add(issued("04", "dev-1", service="svc2"))
        u.commit()
    with with_services() as u:
        assert u.issued.supersede("svc", "DEV-1", at=later) == 2
        u.commit()
    with with_services() as u:
        # Already superseded ones keep their time; nothing is current any more.
        assert u.issued.supersede("svc", "dev-1", at=latest) == 0
        assert u.issued.supersede("svc", "nobody", at=latest) == 0
        u.commit()
    with with_services(read_only=True) as u:
        superseded = {
            c.serial: c.superseded_at for c in u.issued.page("svc") + u.issued.page("svc2")
        }
    assert superseded == {"01": later, "02": later, "03": None, "04": None}


def test_revoke_marks_one_certificate_once(with_services) -> None:
    at = CREATED + timedelta(hours=3, microseconds=17)
    with with_services() as u:
        u.issued.add(issued("0A"))
        u.issued.add(issued("0A", service="svc2"))
        u.commit()
    with with_services() as u:
        assert u.issued.revoke("svc", "0a", at=at) is True
        assert u.issued.revoke("svc", "0A", at=at + timedelta(hours=1)) is False
        assert u.issued.revoke("svc", "0B", at=at) is False
        u.commit()
    with with_services(read_only=True) as u:
        revoked = u.issued.get("svc", "0A")
        untouched = u.issued.get("svc2", "0A")
    assert revoked is not None and revoked.revoked_at == at and revoked.revoked
    assert untouched is not None and untouched.revoked_at is None and not untouched.revoked


def test_revoked_lists_a_policys_revoked_certificates_by_revocation_time(with_services) -> None:
    with with_services() as u:
        for serial in ("01", "02", "03", "04"):
            u.issued.add(issued(serial, f"dev-{serial}"))
        u.issued.add(issued("05", "dev-05", policy="other"))
        u.issued.add(issued("06", "dev-06", service="svc2"))
        u.commit()
    with with_services() as u:
        u.issued.revoke("svc", "03", at=CREATED + timedelta(hours=1))
        u.issued.revoke("svc", "01", at=CREATED + timedelta(hours=2))
        u.issued.revoke("svc", "05", at=CREATED + timedelta(hours=1))
        u.issued.revoke("svc2", "06", at=CREATED + timedelta(hours=1))
        u.commit()
    with with_services(read_only=True) as u:
        assert [c.serial for c in u.issued.revoked("svc", "FLEET-A")] == ["03", "01"]
        assert [c.serial for c in u.issued.revoked("svc", "other")] == ["05"]
        assert u.issued.revoked("svc", "unused") == []


def test_page_orders_by_issue_time_then_serial_and_filters(with_services) -> None:
    with with_services() as u:
        u.issued.add(issued("0C", "dev-a", at=timedelta(hours=1)))
        u.issued.add(issued("0B", "dev-a", at=timedelta(hours=1)))  # same time: by serial
        u.issued.add(issued("0F", "DEV-B"))
        u.issued.add(issued("0A", "dev-b", policy="Other", at=timedelta(hours=2)))
        u.issued.add(issued("09", "dev-a", service="svc2"))
        u.commit()
    with with_services(read_only=True) as u:
        assert [c.serial for c in u.issued.page("svc")] == ["0F", "0B", "0C", "0A"]
        assert [c.serial for c in u.issued.page("svc", policy="fleet-a")] == ["0F", "0B", "0C"]
        assert [c.serial for c in u.issued.page("svc", registration_id="Dev-B")] == ["0F", "0A"]
        assert [
            c.serial for c in u.issued.page("svc", policy="OTHER", registration_id="dev-b")
        ] == ["0A"]
        assert u.issued.page("svc", policy="unused") == []


def test_page_continues_after_a_serial(with_services) -> None:
    with with_services() as u:
        for hour, serial in enumerate(("10", "0F", "0E", "0D", "0C")):
            u.issued.add(issued(serial, f"dev-{serial}", at=timedelta(hours=hour)))
        u.commit()
    pages, after = [], None
    with with_services(read_only=True) as u:
        while True:
            page = u.issued.page("svc", after=after, limit=2)
            if not page:
                break
            pages.append([c.serial for c in page])
            after = page[-1].serial.lower()  # the position ignores the serial's case
    assert pages == [["10", "0F"], ["0E", "0D"], ["0C"]]


def test_page_after_a_serial_never_issued_is_empty(with_services) -> None:
    """A position that names no certificate has nothing after it: restarting from the first
    page would make a client that pages by it loop for ever."""
    with with_services() as u:
        u.issued.add(issued("01"))
        u.commit()
    with with_services(read_only=True) as u:
        assert u.issued.page("svc", after="FF") == []
        assert [c.serial for c in u.issued.page("svc", after=None)] == ["01"]


# --- migration 0007 --------------------------------------------------------------------------


def test_0007_downgrades_to_0006_and_upgrades_again(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    group = replace(enrollment("grp", symmetric()), credential_policy="Fleet-A")
    with SqlUnitOfWork(fresh_engine) as u:
        u.services.add(ProvisioningService("svc", "0ne00000001", f.NOW), [])
        u.credential_policies.add(policy())
        u.issued.add(issued("01"))
        u.enrollments.add(group)
        u.commit()

    run_alembic(fresh_engine, "downgrade", "0006")
    inspector = inspect(fresh_engine)
    assert {"credential_policies", "issued_certificates"}.isdisjoint(inspector.get_table_names())
    assert "credential_policy_key" not in {c["name"] for c in inspector.get_columns("enrollments")}
    assert "ix_enrollments_service_credential_policy" not in {
        i["name"] for i in inspector.get_indexes("enrollments")
    }

    migrate(fresh_engine)
    with SqlUnitOfWork(fresh_engine) as u:
        # The enrollment kept its document (the name is in it); the policies and issued
        # certificates went with their tables, and the tables work again.
        found = u.enrollments.get("svc", EnrollmentKind.GROUP, "grp")
        assert found is not None and found.credential_policy == "Fleet-A"
        assert u.credential_policies.all("svc") == []
        assert u.issued.page("svc") == []
        u.credential_policies.add(policy())
        u.issued.add(issued("01"))
        u.commit()
    with fresh_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == head_revision()


def test_0007_downgrade_keeps_the_trust_revision_triggers_of_0006(fresh_engine: Engine) -> None:
    """0007 adds a column to enrollments and drops it again; the enrollments' triggers of 0006
    must survive both (SQLite drops a table's triggers when a batch copies it)."""
    migrate(fresh_engine)
    run_alembic(fresh_engine, "downgrade", "0006")
    with SqlUnitOfWork(fresh_engine) as u:
        u.services.add(ProvisioningService("svc", "0ne00000001", f.NOW), [])
        u.commit()
    inspector = inspect(fresh_engine)
    assert "credential_policy_key" not in {c["name"] for c in inspector.get_columns("enrollments")}
    migrate(fresh_engine)
    with SqlUnitOfWork(fresh_engine) as u:
        u.enrollments.add(enrollment("grp", symmetric()))
        u.commit()
    with SqlUnitOfWork(fresh_engine, read_only=True) as u:
        found = u.services.get("svc")
    assert found is not None and found.trust_revision > 0
