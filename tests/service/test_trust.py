"""What registrations keep of a service's trust (service.trust) is never used past a change:
every change an operator makes is seen by the next registration, and a kept chain validation
is not used once the chain has expired."""

from __future__ import annotations

import pytest

from devprov.core.enrollment import EnrollmentKind
from devprov.core.registration import RegistrationStatus
from devprov.service.attestation_error import DeviceAttestationError
from devprov.service.model import ProvisioningService
from devprov.service.trust import TrustCache
from tests import factory as f
from tests.service.world import chain

REFERENCES = {"caReferences": {"primary": "root"}}


@pytest.fixture
def grouped(world, pki):
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509=REFERENCES)
    assert world.register("dev-1", chain(leaf, inter)).state.status is RegistrationStatus.ASSIGNED
    return world


def test_a_deleted_ca_refuses_the_next_registration(grouped, pki) -> None:
    _root, inter, leaf = pki
    grouped.registry.delete("default", "root", if_match="*", actor="t")
    with pytest.raises(DeviceAttestationError):
        grouped.register("dev-1", chain(leaf, inter))


def test_a_ca_uploaded_unverified_in_its_place_refuses_the_next_registration(grouped, pki) -> None:
    root, inter, leaf = pki
    grouped.registry.delete("default", "root", if_match="*", actor="t")
    grouped.unverified_ca(root, "root")
    with pytest.raises(DeviceAttestationError, match="CA 'root' is not verified"):
        grouped.register("dev-1", chain(leaf, inter))


def test_a_disabled_group_disables_the_next_registration(grouped, pki) -> None:
    _root, inter, leaf = pki
    document = {
        "enrollmentGroupId": "grp",
        "attestation": {"type": "x509", "x509": REFERENCES},
        "provisioningStatus": "disabled",
    }
    grouped.enrollments.create_or_update(
        "default", EnrollmentKind.GROUP, "grp", document, if_match="*", actor="t"
    )
    outcome = grouped.register("dev-1", chain(leaf, inter))
    assert outcome.state.status is RegistrationStatus.DISABLED


def test_a_hub_linked_later_is_used_by_the_next_device(grouped, pki) -> None:
    _root, inter, _leaf = pki
    grouped.hubs.add("default", "hub-b.azure-devices.net", actor="t")
    grouped.hubs.remove("default", "hub-a.azure-devices.net", actor="t")
    outcome = grouped.register("dev-2", chain(f.device(inter, "dev-2"), inter))
    assert outcome.state.assigned_hub == "hub-b.azure-devices.net"


def test_an_individual_enrollment_made_later_governs_the_next_registration(grouped, pki) -> None:
    # Individual enrollments do not raise the trust revision: they are read on every request.
    _root, inter, leaf = pki
    enrolled = f.device(inter, "dev-1")  # another key: not the certificate the device has
    certificates = {"primary": {"certificate": enrolled.pem.decode()}}
    grouped.individual(
        "dev-1", {"attestation": {"type": "x509", "x509": {"clientCertificates": certificates}}}
    )
    # The enrolled certificate is not the one presented: refused, where the group accepted it.
    with pytest.raises(DeviceAttestationError, match="individual enrollment 'dev-1'"):
        grouped.register("dev-1", chain(leaf, inter))


def test_a_kept_validation_is_not_used_once_the_leaf_has_expired(world, pki) -> None:
    root, inter, _leaf = pki
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509=REFERENCES)
    short = f.device(inter, "dev-9", now=f.NOW, days=1)
    assert world.register("dev-9", chain(short, inter)).state.status is RegistrationStatus.ASSIGNED
    world.clock.advance(days=2)
    with pytest.raises(DeviceAttestationError, match=r"expired|not valid"):
        world.register("dev-9", chain(short, inter))


def revision(uow) -> int:
    with uow(read_only=True) as u:
        return u.services.get("default").trust_revision


def test_a_registration_does_not_move_the_revision(grouped, pki, uow) -> None:
    _root, inter, _leaf = pki
    before = revision(uow)
    grouped.register("dev-2", chain(f.device(inter, "dev-2"), inter))
    assert revision(uow) == before > 0


def test_a_request_from_before_a_change_does_not_replace_what_is_kept(world, uow) -> None:
    cache = TrustCache()
    newer = ProvisioningService("default", "0ne00000001", f.NOW, trust_revision=5)
    older = ProvisioningService("default", "0ne00000001", f.NOW, trust_revision=4)
    with uow(read_only=True) as u:
        kept = cache.view(u, newer).hubs()
        stale = cache.view(u, older).hubs()
        again = cache.view(u, newer).hubs()
    # The same tuple: read once and kept; the older request read its own.
    assert again is kept and stale is not kept
