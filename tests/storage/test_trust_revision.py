"""services.trust_revision (migration 0006): the database raises it on every change to what
devices are checked against, whichever code makes the change, on SQLite and PostgreSQL
(docs/storage.md#the-trust-revision)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from devprov.core.enrollment import EnrollmentKind
from devprov.service.model import CertificateRecord, HubRecord, ProvisioningService
from tests import factory as f
from tests.storage.test_credential_store import issued, policy
from tests.storage.test_enrollment_store import enrollment, references, symmetric

ROOT = f.root("Revision Root")


@pytest.fixture
def services(uow):
    with uow() as u:
        u.services.add(ProvisioningService("svc", "0ne00000001", f.NOW), [])
        u.services.add(ProvisioningService("other", "0ne00000002", f.NOW), [])
        u.commit()
    return uow


def revision(uow, name: str = "svc") -> int:
    with uow(read_only=True) as u:
        found = u.services.get(name)
        assert found is not None
        return found.trust_revision


def certificate(name: str = "root", etag: str = "e1") -> CertificateRecord:
    return CertificateRecord(
        service="svc",
        name=name,
        der=ROOT.der,
        is_verified=False,
        verification_method=None,
        verified_at=None,
        created_at=f.NOW,
        updated_at=f.NOW,
        etag=etag,
    )


def changed(uow, change) -> tuple[int, int]:
    """How much the revisions of 'svc' and 'other' moved across one committed ``change``."""
    before = revision(uow), revision(uow, "other")
    with uow() as u:
        change(u)
        u.commit()
    return revision(uow) - before[0], revision(uow, "other") - before[1]


def test_a_new_service_starts_at_zero(services) -> None:
    assert revision(services) == 0 == revision(services, "other")


def test_certificates_raise_it_on_insert_update_and_delete(services) -> None:
    assert changed(services, lambda u: u.certificates.add(certificate()))[0] > 0
    verified = replace(certificate(etag="e2"), is_verified=True)
    assert changed(services, lambda u: u.certificates.replace(verified, expected_etag="e1"))[0] > 0
    assert (
        changed(services, lambda u: u.certificates.remove("svc", "root", expected_etag="e2"))[0] > 0
    )


def test_enrollment_groups_raise_it(services) -> None:
    group = enrollment("grp", references("root"))
    assert changed(services, lambda u: u.enrollments.add(group))[0] > 0
    renamed = replace(group, etag="etag-2", device_id="moved")
    assert (
        changed(services, lambda u: u.enrollments.replace(renamed, expected_etag="etag-1"))[0] > 0
    )
    assert (
        changed(
            services, lambda u: u.enrollments.remove("svc", GROUP, "grp", expected_etag="etag-2")
        )[0]
        > 0
    )


def test_individual_enrollments_do_not_raise_it(services) -> None:
    device = enrollment("dev-1", symmetric(), kind=EnrollmentKind.INDIVIDUAL)
    assert changed(services, lambda u: u.enrollments.add(device)) == (0, 0)
    assert changed(
        services,
        lambda u: u.enrollments.remove(
            "svc", EnrollmentKind.INDIVIDUAL, "dev-1", expected_etag="etag-1"
        ),
    ) == (0, 0)


def test_linked_hubs_raise_it(services) -> None:
    hub = HubRecord("svc", "hub-a.azure-devices.net", 1, True, created_at=f.NOW)
    assert changed(services, lambda u: u.hubs.add(hub))[0] > 0
    assert changed(services, lambda u: u.hubs.replace(replace(hub, weight=5)))[0] > 0
    assert changed(services, lambda u: u.hubs.remove("svc", hub.host_name))[0] > 0


def test_a_change_to_one_service_leaves_the_others(services) -> None:
    assert changed(services, lambda u: u.certificates.add(certificate()))[1] == 0


def test_a_rolled_back_change_leaves_it(services) -> None:
    with services() as u:
        u.certificates.add(certificate())
        u.rollback()
    assert revision(services) == 0


GROUP = EnrollmentKind.GROUP


def test_credential_policies_raise_it_on_insert_update_and_delete(services) -> None:
    """A policy's CA is trusted for the renewals of its own devices (migration 0007): adding,
    changing (a revocation raises its CRL number) and deleting one raise its service's revision,
    and only its service's."""
    added = changed(services, lambda u: u.credential_policies.add(policy()))
    raised = changed(services, lambda u: u.credential_policies.next_crl_number("svc", "Fleet-A"))
    removed = changed(services, lambda u: u.credential_policies.remove("svc", "Fleet-A"))
    for svc, other in (added, raised, removed):
        assert svc > 0 and other == 0


def test_issued_certificates_do_not_raise_it(services) -> None:
    """Every registration with a CSR stores one: were it to raise the revision, each would
    throw away what the servers hold for the service's trust."""
    assert changed(services, lambda u: u.issued.add(issued("01"))) == (0, 0)
    assert changed(services, lambda u: u.issued.revoke("svc", "01", at=f.NOW)) == (0, 0)
