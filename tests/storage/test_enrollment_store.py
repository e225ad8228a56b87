"""The enrollment store's contract, on a real SQLite file built by the migrations."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta

import pytest

from devprov.core.enrollment import (
    AllocationPolicyName,
    Attestation,
    AttestationType,
    CustomAllocation,
    EnrolledCertificate,
    Enrollment,
    EnrollmentKind,
    ProvisioningStatus,
    ReprovisionPolicy,
)
from devprov.core.error import AlreadyExistsError, EtagMismatchError, InternalError
from devprov.service.model import CertificateRecord, ProvisioningService
from tests import factory as f

INDIVIDUAL = EnrollmentKind.INDIVIDUAL
GROUP = EnrollmentKind.GROUP
CREATED = f.NOW + timedelta(microseconds=123456)
UPDATED = CREATED + timedelta(hours=1, microseconds=1)

ROOT = f.root("Storage Root")
OTHER_ROOT = f.root("Other Root")


def sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest().upper()


@pytest.fixture
def with_services(uow):
    with uow() as u:
        u.services.add(ProvisioningService("svc", "0ne00000001", f.NOW), [])
        u.services.add(ProvisioningService("svc2", "0ne00000002", f.NOW), [])
        u.commit()
    return uow


def registry_certificate(name: str, der: bytes, service: str = "svc") -> CertificateRecord:
    return CertificateRecord(
        service=service,
        name=name,
        der=der,
        is_verified=True,
        verification_method=None,
        verified_at=None,
        created_at=f.NOW,
        updated_at=f.NOW,
        etag="cert-etag",
    )


def enrollment(
    id: str,
    attestation: Attestation,
    *,
    kind: EnrollmentKind = GROUP,
    service: str = "svc",
    etag: str = "etag-1",
) -> Enrollment:
    return Enrollment(
        service=service,
        kind=kind,
        id=id,
        attestation=attestation,
        etag=etag,
        created_at=CREATED,
        updated_at=UPDATED,
    )


def inline(primary: bytes, secondary: bytes | None = None) -> Attestation:
    return Attestation(
        AttestationType.X509,
        primary_certificate=EnrolledCertificate(primary),
        secondary_certificate=EnrolledCertificate(secondary) if secondary else None,
    )


def references(primary: str, secondary: str | None = None) -> Attestation:
    return Attestation(AttestationType.X509, ca_primary=primary, ca_secondary=secondary)


def symmetric(n: int = 1) -> Attestation:
    return Attestation(
        AttestationType.SYMMETRIC_KEY,
        primary_key=f"cHJpbWFyeS1rZXktMTIzNDU2Nzg5{n}==",
        secondary_key=f"c2Vjb25kYXJ5LWtleS0xMjM0NTY3{n}==",
    )


def individual_x509() -> Enrollment:
    """Every optional member set to something other than its default."""
    return Enrollment(
        service="svc",
        kind=INDIVIDUAL,
        id="Device-One",
        attestation=inline(f.device(ROOT, "Device-One").der, f.device(ROOT, "Device-One").der),
        provisioning_status=ProvisioningStatus.DISABLED,
        device_id="device-one-id",
        allocation_policy=AllocationPolicyName.STATIC,
        iot_hubs=("hub-a.azure-devices.net",),
        iot_hub_host_name="hub-a.azure-devices.net",
        reprovision=ReprovisionPolicy(update_hub_assignment=False, migrate_device_data=False),
        initial_twin={
            "tags": {"floor": 3, "ratio": 0.1, "names": ["a", "ü", None], "ok": True},
            "properties": {"desired": {"nested": {"deep": [1, {"x": "y"}]}}},
        },
        iot_edge=True,
        optional_device_information={"model": "X1", "revision": 2},
        etag="IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCI=",
        created_at=CREATED,
        updated_at=UPDATED,
    )


def group_inline() -> Enrollment:
    return replace(
        enrollment("Group-Inline", inline(ROOT.der, OTHER_ROOT.der)),
        allocation_policy=AllocationPolicyName.CUSTOM,
        iot_hubs=("hub-a.azure-devices.net", "hub-b.azure-devices.net"),
        custom_allocation=CustomAllocation("https://example.test/alloc?code=x", "2019-03-31"),
        initial_twin={"properties": {"desired": {}}},
    )


def group_references() -> Enrollment:
    return replace(
        enrollment("Group-Refs", references("RootCA", "Backup-CA")),
        allocation_policy=AllocationPolicyName.GEO_LATENCY,
        iot_edge=True,
    )


def symmetric_group() -> Enrollment:
    return replace(
        enrollment("Group-Keys", symmetric()),
        allocation_policy=AllocationPolicyName.HASHED,
        reprovision=ReprovisionPolicy(update_hub_assignment=True, migrate_device_data=False),
    )


def tpm_individual() -> Enrollment:
    return replace(
        enrollment(
            "tpm-device",
            Attestation(
                AttestationType.TPM,
                endorsement_key="AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEA",
                storage_root_key="AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEB",
            ),
            kind=INDIVIDUAL,
        ),
        device_id=None,
        optional_device_information={},
    )


@pytest.mark.parametrize(
    "make",
    [individual_x509, group_inline, group_references, symmetric_group, tpm_individual],
    ids=["individual-x509", "group-x509-inline", "group-ca-references", "group-symmetric", "tpm"],
)
def test_round_trip_keeps_every_field(with_services, make) -> None:
    stored = make()
    with with_services() as u:
        u.enrollments.add(stored)
        u.commit()
    with with_services() as u:
        loaded = u.enrollments.get("svc", stored.kind, stored.id.upper())
        assert loaded == stored
        assert loaded is not None
        assert loaded.created_at == CREATED and loaded.updated_at == UPDATED
        assert loaded.created_at.tzinfo is not None
        assert u.enrollments.page("svc", stored.kind, after=None, limit=10) == [stored]
        other = GROUP if stored.kind is INDIVIDUAL else INDIVIDUAL
        assert u.enrollments.get("svc", other, stored.id) is None
        assert u.enrollments.get("svc2", stored.kind, stored.id) is None


def test_ids_are_unique_ignoring_case(with_services) -> None:
    with with_services() as u:
        u.enrollments.add(enrollment("Group-1", symmetric()))
        with pytest.raises(AlreadyExistsError) as raised:
            u.enrollments.add(enrollment("GROUP-1", symmetric(2)))
        assert raised.value.message.startswith(
            "enrollment group 'GROUP-1' already exists in service 'svc'"
        )
        with pytest.raises(AlreadyExistsError, match=r"^enrollment 'DEV'"):
            u.enrollments.add(enrollment("dev", symmetric(), kind=INDIVIDUAL))
            u.enrollments.add(enrollment("DEV", symmetric(), kind=INDIVIDUAL))
        # The same id is free in the other kind and in another service.
        u.enrollments.add(enrollment("group-1", symmetric(), kind=INDIVIDUAL))
        u.enrollments.add(enrollment("group-1", symmetric(), service="svc2"))
        u.commit()
    with with_services() as u:
        assert u.enrollments.count("svc", GROUP) == 1
        assert u.enrollments.count("svc", INDIVIDUAL) == 2
        assert u.enrollments.count("svc2", GROUP) == 1


def test_enrollments_without_timestamps_are_refused(with_services) -> None:
    with with_services() as u, pytest.raises(InternalError):
        u.enrollments.add(replace(enrollment("g", symmetric()), created_at=None))


def test_replace_is_compare_and_swap_and_keeps_created_at(with_services) -> None:
    with with_services() as u:
        u.enrollments.add(enrollment("Group", symmetric()))
        u.commit()
    changed = replace(
        enrollment("Group", symmetric(2), etag="etag-2"),
        provisioning_status=ProvisioningStatus.DISABLED,
        created_at=CREATED + timedelta(days=1),
        updated_at=UPDATED + timedelta(days=1),
    )
    with with_services() as u:
        with pytest.raises(EtagMismatchError, match="'Group'"):
            u.enrollments.replace(changed, expected_etag="stale")
        with pytest.raises(EtagMismatchError):
            u.enrollments.replace(replace(changed, id="missing"), expected_etag="etag-1")
        u.enrollments.replace(changed, expected_etag="etag-1")
        u.commit()
    with with_services() as u:
        assert u.enrollments.get("svc", GROUP, "group") == replace(changed, created_at=CREATED)


def test_remove_is_compare_and_swap(with_services) -> None:
    with with_services() as u:
        u.enrollments.add(enrollment("Group", inline(ROOT.der)))
        u.commit()
    with with_services() as u:
        with pytest.raises(EtagMismatchError):
            u.enrollments.remove("svc", GROUP, "group", expected_etag="stale")
        with pytest.raises(EtagMismatchError):
            u.enrollments.remove("svc", INDIVIDUAL, "group", expected_etag="etag-1")
        u.enrollments.remove("svc", GROUP, "GROUP", expected_etag="etag-1")
        u.commit()
    with with_services() as u:
        assert u.enrollments.get("svc", GROUP, "group") is None
        assert u.enrollments.groups_by_certificate("svc", [sha256(ROOT.der)]) == []


def test_pages_cover_every_record_once_in_key_order(with_services) -> None:
    ids = [f"{'Dev' if i % 2 else 'dev'}-{i:02d}" for i in range(25)]
    with with_services() as u:
        for id in reversed(ids):
            u.enrollments.add(enrollment(id, symmetric(), kind=INDIVIDUAL))
        u.enrollments.add(enrollment("dev-99", symmetric()))  # a group: not on these pages
        u.commit()
    pages: list[list[str]] = []
    after: str | None = None
    with with_services() as u:
        while True:
            page = u.enrollments.page("svc", INDIVIDUAL, after=after, limit=10)
            if not page:
                break
            pages.append([e.id for e in page])
            after = page[-1].key
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [id for p in pages for id in p]
    assert seen == sorted(ids, key=str.lower)
    assert len(set(seen)) == 25


def test_count_by_attestation_type(with_services) -> None:
    with with_services() as u:
        u.enrollments.add(enrollment("k1", symmetric()))
        u.enrollments.add(enrollment("k2", symmetric()))
        u.enrollments.add(enrollment("x1", inline(ROOT.der)))
        u.enrollments.add(enrollment("i1", symmetric(), kind=INDIVIDUAL))
        u.commit()
    with with_services() as u:
        assert u.enrollments.count("svc", GROUP) == 3
        assert u.enrollments.count("svc", GROUP, AttestationType.SYMMETRIC_KEY) == 2
        assert u.enrollments.count("svc", GROUP, AttestationType.X509) == 1
        assert u.enrollments.count("svc", GROUP, AttestationType.TPM) == 0
        assert u.enrollments.count("svc", INDIVIDUAL, AttestationType.SYMMETRIC_KEY) == 1
        assert u.enrollments.count("svc2", GROUP) == 0


def test_groups_by_inline_certificate(with_services) -> None:
    group = enrollment("Group-Inline", inline(ROOT.der, OTHER_ROOT.der))
    with with_services() as u:
        u.enrollments.add(group)
        # Not matched: an individual enrollment, and a group of another service.
        u.enrollments.add(enrollment("dev", inline(ROOT.der), kind=INDIVIDUAL))
        u.enrollments.add(enrollment("elsewhere", inline(ROOT.der), service="svc2"))
        u.commit()
    with with_services() as u:
        found = u.enrollments.groups_by_certificate("svc", [sha256(ROOT.der)])
        assert found == [(sha256(ROOT.der), group)]
        both = u.enrollments.groups_by_certificate(
            "svc", {sha256(ROOT.der).lower(), sha256(OTHER_ROOT.der), "00" * 32}
        )
        assert both == sorted([(sha256(ROOT.der), group), (sha256(OTHER_ROOT.der), group)])
        assert u.enrollments.groups_by_certificate("svc", ["00" * 32]) == []
        assert u.enrollments.groups_by_certificate("svc", []) == []


def test_groups_by_ca_reference(with_services) -> None:
    group = enrollment("Group-Refs", references("RootCA", "BACKUP"))
    with with_services() as u:
        u.certificates.add(registry_certificate("rootca", ROOT.der))
        u.certificates.add(registry_certificate("Backup", OTHER_ROOT.der))
        u.enrollments.add(group)
        u.commit()
    with with_services() as u:
        assert u.enrollments.groups_by_certificate("svc", [sha256(ROOT.der)]) == [
            (sha256(ROOT.der), group)
        ]
        assert u.enrollments.groups_by_certificate("svc", [sha256(OTHER_ROOT.der)]) == [
            (sha256(OTHER_ROOT.der), group)
        ]
        assert u.enrollments.groups_by_certificate("svc2", [sha256(ROOT.der)]) == []


def test_a_reference_to_another_services_certificate_does_not_match(with_services) -> None:
    with with_services() as u:
        u.certificates.add(registry_certificate("foreign", ROOT.der, service="svc2"))
        u.enrollments.add(enrollment("Group", references("foreign")))
        u.commit()
    with with_services() as u:
        assert u.enrollments.groups_by_certificate("svc", [sha256(ROOT.der)]) == []


def test_a_reference_to_a_deleted_certificate_does_not_match(with_services) -> None:
    group = enrollment("Group", references("RootCA"))
    with with_services() as u:
        u.certificates.add(registry_certificate("RootCA", ROOT.der))
        u.enrollments.add(group)
        u.commit()
    with with_services() as u:
        assert u.enrollments.groups_by_certificate("svc", [sha256(ROOT.der)]) == [
            (sha256(ROOT.der), group)
        ]
        u.certificates.remove("svc", "rootca", expected_etag="cert-etag")
        u.commit()
    with with_services() as u:
        assert u.enrollments.groups_by_certificate("svc", [sha256(ROOT.der)]) == []


def test_a_replaced_group_no_longer_matches_its_old_certificate(with_services) -> None:
    with with_services() as u:
        u.certificates.add(registry_certificate("Backup", OTHER_ROOT.der))
        u.enrollments.add(enrollment("Group", inline(ROOT.der)))
        u.commit()
    moved = enrollment("Group", references("backup"), etag="etag-2")
    with with_services() as u:
        u.enrollments.replace(moved, expected_etag="etag-1")
        u.commit()
    with with_services() as u:
        assert u.enrollments.groups_by_certificate("svc", [sha256(ROOT.der)]) == []
        assert u.enrollments.groups_by_certificate("svc", [sha256(OTHER_ROOT.der)]) == [
            (sha256(OTHER_ROOT.der), moved)
        ]
    back = enrollment("Group", inline(ROOT.der), etag="etag-3")
    with with_services() as u:
        u.enrollments.replace(back, expected_etag="etag-2")
        u.commit()
    with with_services() as u:
        assert u.enrollments.groups_by_certificate("svc", [sha256(OTHER_ROOT.der)]) == []
        assert u.enrollments.groups_by_certificate("svc", [sha256(ROOT.der)]) == [
            (sha256(ROOT.der), back)
        ]


def test_a_failed_add_leaves_no_certificate_rows(with_services) -> None:
    with with_services() as u:
        u.enrollments.add(enrollment("Group", inline(ROOT.der)))
        with pytest.raises(AlreadyExistsError):
            u.enrollments.add(enrollment("group", inline(OTHER_ROOT.der)))
        u.commit()
    with with_services() as u:
        assert u.enrollments.groups_by_certificate("svc", [sha256(OTHER_ROOT.der)]) == []


def test_symmetric_key_groups(with_services) -> None:
    with with_services() as u:
        u.enrollments.add(enrollment("b-keys", symmetric()))
        u.enrollments.add(enrollment("A-keys", symmetric(2)))
        u.enrollments.add(enrollment("x509", inline(ROOT.der)))
        u.enrollments.add(enrollment("individual", symmetric(), kind=INDIVIDUAL))
        u.enrollments.add(enrollment("elsewhere", symmetric(), service="svc2"))
        u.commit()
    with with_services() as u:
        assert [g.id for g in u.enrollments.symmetric_key_groups("svc")] == ["A-keys", "b-keys"]
        assert u.enrollments.symmetric_key_groups("svc")[0] == enrollment("A-keys", symmetric(2))


def test_groups_naming_a_certificate_by_reference_or_inline(with_services) -> None:
    with with_services() as u:
        u.certificates.add(registry_certificate("RootCA", ROOT.der))
        # Named: by caReference (either slot, any case), or holding the certificate inline.
        u.enrollments.add(enrollment("c-ref", references("rootca")))
        u.enrollments.add(enrollment("A-second", references("other", "ROOTCA")))
        u.enrollments.add(enrollment("b-inline", inline(OTHER_ROOT.der, ROOT.der)))
        # Not named: another CA, an individual enrollment, a group of another service.
        u.enrollments.add(enrollment("d-other", references("other")))
        u.enrollments.add(enrollment("dev", inline(ROOT.der), kind=INDIVIDUAL))
        u.enrollments.add(enrollment("elsewhere", references("rootca"), service="svc2"))
        u.commit()
    with with_services() as u:
        sha = sha256(ROOT.der)
        named = u.enrollments.groups_naming_certificate("svc", "RootCA", sha, limit=50)
        assert [g.id for g in named] == ["A-second", "b-inline", "c-ref"]
        assert u.enrollments.count_groups_naming_certificate("svc", "RootCA", sha) == 3
        first = u.enrollments.groups_naming_certificate("svc", "rootca", sha.lower(), limit=2)
        assert [g.id for g in first] == ["A-second", "b-inline"]
        other = sha256(OTHER_ROOT.der)
        assert [
            g.id for g in u.enrollments.groups_naming_certificate("svc", "other", other, limit=50)
        ] == [
            "A-second",
            "b-inline",
            "d-other",
        ]
        assert u.enrollments.groups_naming_certificate("svc", "nothing", "00" * 32, limit=50) == []
        assert u.enrollments.count_groups_naming_certificate("svc", "nothing", "00" * 32) == 0


def test_pages_by_prefix_ignore_case_and_take_wildcards_literally(with_services) -> None:
    ids = ["North-1", "north_2", "northX", "south-1", "nort"]
    with with_services() as u:
        for id in ids:
            u.enrollments.add(enrollment(id, symmetric()))
        u.enrollments.add(enrollment("north-9", symmetric(), service="svc2"))
        u.commit()
    with with_services(read_only=True) as u:
        north = u.enrollments.page("svc", GROUP, after=None, limit=10, prefix="NORTH")
        first = u.enrollments.page("svc", GROUP, after=None, limit=1, prefix="north")
        rest = u.enrollments.page("svc", GROUP, after=first[0].key, limit=10, prefix="north")
        literal = u.enrollments.page("svc", GROUP, after=None, limit=10, prefix="north_")
    assert [e.id for e in north] == ["North-1", "north_2", "northX"]
    assert [e.id for e in first + rest] == [e.id for e in north]
    assert [e.id for e in literal] == ["north_2"]
