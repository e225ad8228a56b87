"""Device attestation and registration over real SQLite: every accept with its reject twin."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import DevprovError
from devprov.core.issuance import build_self_signed_device_certificate
from devprov.core.registration import RegistrationStatus, Substatus
from devprov.core.sas import derive_device_key
from devprov.service.attestation import Credentials
from devprov.service.attestation_error import DeviceAttestationError, DeviceSasError
from tests import factory as f
from tests.service.world import KEY, chain

# --- X.509 groups ---------------------------------------------------------------------------


def test_group_by_ca_reference_to_verified_root(world, pki) -> None:
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}})
    outcome = world.register("dev-1", chain(leaf, inter))
    state = outcome.state
    assert outcome.operation.status == "assigned"
    assert (state.status, state.assigned_hub, state.device_id, state.substatus) == (
        RegistrationStatus.ASSIGNED,
        "hub-a.azure-devices.net",
        "dev-1",
        Substatus.INITIAL_ASSIGNMENT,
    )
    assert state.enrollment_id == "grp" and state.signing_certificate.subject_name == "CN=Dev Root"
    assert state.certificate.subject_name == "CN=dev-1"


def test_missing_intermediate_is_refused(world, pki) -> None:
    root, _inter, leaf = pki
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}})
    with pytest.raises(DeviceAttestationError, match="does not validate"):
        world.register("dev-1", chain(leaf))


def test_unverified_ca_is_refused(world, pki) -> None:
    root, inter, leaf = pki
    world.unverified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}})
    with pytest.raises(DeviceAttestationError, match="CA 'root' is not verified"):
        world.register("dev-1", chain(leaf, inter))


def test_inline_intermediate_rolls_up_to_verified_root(world, pki) -> None:
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group(
        "by-inter",
        type="x509",
        x509={"signingCertificates": {"primary": {"certificate": inter.pem.decode()}}},
    )
    assert world.register("dev-1", chain(leaf, inter)).state.enrollment_id == "by-inter"


def test_inline_certificate_without_verified_root_is_refused(world, pki) -> None:
    _root, inter, leaf = pki
    world.group(
        "by-inter",
        type="x509",
        x509={"signingCertificates": {"primary": {"certificate": inter.pem.decode()}}},
    )
    world.verified_ca(f.root("Unrelated"), "unrelated")
    with pytest.raises(DeviceAttestationError):
        world.register("dev-1", chain(leaf, inter))


def test_nearest_group_wins_and_disabled_blocks(world, pki) -> None:
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group("by-root", type="x509", x509={"caReferences": {"primary": "root"}})
    world.group(
        "by-inter",
        type="x509",
        x509={"signingCertificates": {"primary": {"certificate": inter.pem.decode()}}},
        extra={"provisioningStatus": "disabled"},
    )
    outcome = world.register("dev-1", chain(leaf, inter))
    assert (
        outcome.operation.status == "disabled"
        and outcome.state.status is RegistrationStatus.DISABLED
    )
    assert outcome.state.enrollment_id == "by-inter"


def test_no_group_for_the_chain(world, pki) -> None:
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    with pytest.raises(DeviceAttestationError, match="no enrollment group"):
        world.register("dev-1", chain(leaf, inter))


def test_registration_id_must_be_the_cn(world, pki) -> None:
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}})
    with pytest.raises(DeviceAttestationError, match="is not the certificate's CN"):
        world.register("dev-2", chain(leaf, inter))
    assert world.register("DEV-1", chain(leaf, inter)).operation.status == "assigned"


def test_expired_device_certificate(world, pki) -> None:
    root, inter, _ = pki
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}})
    old = f.device(inter, "dev-old", now=f.NOW - timedelta(days=30), days=1)
    with pytest.raises(DeviceAttestationError):
        world.register("dev-old", chain(old, inter))


# --- X.509 individual -----------------------------------------------------------------------


def self_signed(cn: str) -> f.Ca:
    key = f.ec_key()
    return f.Ca(
        build_self_signed_device_certificate(key, cn, serial=f.serial(), now=f.NOW, days=30), key
    )


def test_self_signed_individual(world) -> None:
    device = self_signed("solo")
    world.individual(
        "solo",
        {
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": device.pem.decode()}}},
            },
            "deviceId": "solo-device",
        },
    )
    state = world.register("solo", chain(device)).state
    assert state.status is RegistrationStatus.ASSIGNED and state.device_id == "solo-device"
    impostor = self_signed("solo")
    with pytest.raises(DeviceAttestationError, match="not one of"):
        world.register("solo", chain(impostor))


def test_individual_wins_over_group(world, pki) -> None:
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}})
    world.individual(
        "dev-1",
        {
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": leaf.pem.decode()}}},
            },
            "provisioningStatus": "disabled",
        },
    )
    assert world.register("dev-1", chain(leaf, inter)).operation.status == "disabled"


def test_individual_ca_signed_needs_a_verified_ca(world, pki) -> None:
    root, inter, leaf = pki
    world.individual(
        "dev-1",
        {
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": leaf.pem.decode()}}},
            }
        },
    )
    with pytest.raises(DeviceAttestationError, match="does not validate"):
        world.register("dev-1", chain(leaf, inter))
    world.verified_ca(root, "root")
    assert world.register("dev-1", chain(leaf, inter)).operation.status == "assigned"


# --- symmetric keys -------------------------------------------------------------------------


def test_symmetric_group_with_derived_key(world) -> None:
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY, "secondaryKey": KEY})
    outcome = world.register(
        "sensor-7", world.token("sensor-7", derive_device_key(KEY, "sensor-7"))
    )
    assert (
        outcome.state.enrollment_id == "sym"
        and outcome.state.assigned_hub == "hub-a.azure-devices.net"
    )
    with pytest.raises(DeviceSasError):
        world.register(
            "sensor-7", world.token("sensor-7", KEY)
        )  # the group key itself is not the device key
    with pytest.raises(DeviceSasError):
        world.register("sensor-8", world.token("sensor-7", derive_device_key(KEY, "sensor-7")))


def test_symmetric_individual_and_expiry(world) -> None:
    world.individual(
        "sym-1", {"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}}}
    )
    record = world.enrollments.get("default", EnrollmentKind.INDIVIDUAL, "sym-1")
    secondary = record.attestation.secondary_key
    assert secondary and secondary != KEY  # generated
    assert world.register("sym-1", world.token("sym-1", secondary)).operation.status == "assigned"
    with pytest.raises(DeviceSasError):
        world.register("sym-1", world.token("sym-1", KEY, expiry=world.epoch() - 10))


def test_no_credentials(world) -> None:
    with pytest.raises(DeviceSasError, match="neither"):
        world.register("x", Credentials())


# --- allocation and reprovisioning ------------------------------------------------------------


def test_no_hub_fails_the_registration_with_400208(world, uow) -> None:
    world.hubs.remove("default", "hub-a.azure-devices.net", actor="test")
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY})
    outcome = world.register("d1", world.token("d1", derive_device_key(KEY, "d1")))
    assert outcome.operation.status == "failed" and outcome.operation.error_code == 400208
    assert outcome.state.status is RegistrationStatus.FAILED


def test_static_and_reprovision_on_hub_change(world) -> None:
    world.hubs.add("default", "hub-b.azure-devices.net", actor="test")
    world.group(
        "sym",
        type="symmetricKey",
        symmetricKey={"primaryKey": KEY},
        extra={"allocationPolicy": "static", "iotHubs": ["hub-a.azure-devices.net"]},
    )
    creds = world.token("d1", derive_device_key(KEY, "d1"))
    first = world.register("d1", creds).state
    assert first.assigned_hub == "hub-a.azure-devices.net"
    again = world.register("d1", creds).state
    assert again == first  # unchanged device, unchanged state
    group = world.enrollments.get("default", EnrollmentKind.GROUP, "sym")
    doc = {
        "enrollmentGroupId": "sym",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
        "allocationPolicy": "static",
        "iotHubs": ["hub-b.azure-devices.net"],
        "reprovisionPolicy": {"updateHubAssignment": True, "migrateDeviceData": False},
    }
    world.enrollments.create_or_update(
        "default", EnrollmentKind.GROUP, "sym", doc, if_match=group.etag, actor="t"
    )
    moved = world.register("d1", creds).state
    assert (
        moved.assigned_hub == "hub-b.azure-devices.net"
        and moved.substatus is Substatus.DEVICE_DATA_RESET
    )
    assert moved.created_at == first.created_at


def test_hashed_allocation_respects_weights(world) -> None:
    world.hubs.add("default", "hub-b.azure-devices.net", weight=3, actor="test")
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY})
    hubs = [
        world.register(
            f"d{i}", world.token(f"d{i}", derive_device_key(KEY, f"d{i}"))
        ).state.assigned_hub
        for i in range(80)
    ]
    share_b = hubs.count("hub-b.azure-devices.net") / len(hubs)
    assert 0.6 < share_b < 0.9


def test_custom_allocation(world) -> None:
    world.hubs.add("default", "hub-b.azure-devices.net", actor="test")
    world.webhook.answer = {
        "iotHubHostName": "hub-b.azure-devices.net",
        "payload": {"greeting": "hi"},
    }
    world.group(
        "sym",
        type="symmetricKey",
        symmetricKey={"primaryKey": KEY},
        extra={
            "allocationPolicy": "custom",
            "customAllocationDefinition": {
                "webhookUrl": "https://alloc.example/fn?code=secret",
                "apiVersion": "2021-10-01",
            },
        },
    )
    outcome = world.register("d1", world.token("d1", derive_device_key(KEY, "d1")), {"model": "x"})
    assert outcome.state.assigned_hub == "hub-b.azure-devices.net" and outcome.state.payload == {
        "greeting": "hi"
    }
    url, body = world.webhook.requests[0]
    assert url == "https://alloc.example/fn?code=secret"
    assert body["deviceRuntimeContext"]["registrationId"] == "d1"
    assert body["deviceRuntimeContext"]["payload"] == {"model": "x"}
    assert sorted(body["linkedHubs"]) == ["hub-a.azure-devices.net", "hub-b.azure-devices.net"]
    assert "symmetricKey" not in body["enrollmentGroup"]["attestation"]


def test_custom_allocation_to_an_unlinked_hub_fails(world) -> None:
    world.webhook.answer = {"iotHubHostName": "elsewhere.azure-devices.net"}
    world.group(
        "sym",
        type="symmetricKey",
        symmetricKey={"primaryKey": KEY},
        extra={
            "allocationPolicy": "custom",
            "customAllocationDefinition": {
                "webhookUrl": "https://alloc.example/fn",
                "apiVersion": "2021-10-01",
            },
        },
    )
    outcome = world.register("d1", world.token("d1", derive_device_key(KEY, "d1")))
    assert outcome.operation.status == "failed" and "elsewhere" in (
        outcome.operation.error_message or ""
    )


# --- polling ----------------------------------------------------------------------------------


def test_poll_and_status_lookup_need_the_same_device(world, pki) -> None:
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}})
    outcome = world.register("dev-1", chain(leaf, inter))
    scope = world.service.id_scope
    polled = world.devices.operation_status(
        scope, "dev-1", outcome.operation.id, chain(leaf, inter)
    )
    assert (
        polled.operation.id == outcome.operation.id
        and polled.state.status is RegistrationStatus.ASSIGNED
    )
    assert (
        world.devices.status_lookup(scope, "dev-1", chain(leaf, inter)).assigned_hub
        == "hub-a.azure-devices.net"
    )
    other = f.device(inter, "dev-2")
    with pytest.raises(DeviceAttestationError):
        world.devices.operation_status(scope, "dev-1", outcome.operation.id, chain(other, inter))
    with pytest.raises(DevprovError, match="does not exist"):
        world.devices.operation_status(scope, "dev-1", "5.nope", chain(leaf, inter))


def test_unknown_scope(world) -> None:
    with pytest.raises(DevprovError, match="ID scope"):
        world.devices.register("0neFFFFFFFF", "x", Credentials(), None)


def test_failures_are_audited(world, pki, uow) -> None:
    from devprov.service.audit import AuditTrail

    _root, inter, leaf = pki
    with pytest.raises(DeviceAttestationError):
        world.register("dev-1", chain(leaf, inter))
    (event,) = [e for e in AuditTrail(uow).events(registration_id="dev-1")]
    assert event.outcome.value == "failed" and event.error_code == "DeviceAttestationFailed"
    assert "no verified CA" in (event.reason or "")


def test_symmetric_poll_needs_a_token_of_the_same_enrollment(world) -> None:
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY})
    creds = world.token("d1", derive_device_key(KEY, "d1"))
    outcome = world.register("d1", creds)
    scope = world.service.id_scope
    assert world.devices.operation_status(
        scope, "d1", outcome.operation.id, creds
    ).state.assigned_hub
    other_key = base64.b64encode(b"o" * 32).decode()
    with pytest.raises(DeviceSasError):
        world.devices.operation_status(
            scope, "d1", outcome.operation.id, world.token("d1", other_key)
        )
    with pytest.raises(DeviceSasError):
        world.devices.operation_status(
            scope, "d1", outcome.operation.id, world.token("d2", derive_device_key(KEY, "d2"))
        )
    with pytest.raises(DeviceSasError):
        world.devices.operation_status(
            scope,
            "d1",
            outcome.operation.id,
            world.token("d1", derive_device_key(KEY, "d1"), expiry=world.epoch() - 5),
        )
    world.enrollments.delete("default", EnrollmentKind.GROUP, "sym", if_match=None, actor="t")
    with pytest.raises(DeviceSasError, match="gone or changed"):
        world.devices.operation_status(scope, "d1", outcome.operation.id, creds)


def test_unknown_operation_still_authenticates_first(world, pki) -> None:
    _root, inter, leaf = pki
    with pytest.raises(DeviceAttestationError):
        world.devices.operation_status(
            world.service.id_scope, "dev-1", "5.unknown", chain(leaf, inter)
        )


def test_custom_allocation_is_handed_to_the_caller(world) -> None:
    from devprov.core.error import UnavailableError
    from devprov.service.device import WebhookCall

    world.group(
        "sym",
        type="symmetricKey",
        symmetricKey={"primaryKey": KEY},
        extra={
            "allocationPolicy": "custom",
            "customAllocationDefinition": {
                "webhookUrl": "https://alloc.example/fn",
                "apiVersion": "2021-10-01",
            },
        },
    )
    creds = world.token("d1", derive_device_key(KEY, "d1"))
    pending = world.devices.register(world.service.id_scope, "d1", creds, None)
    assert isinstance(pending, WebhookCall) and pending.url == "https://alloc.example/fn"
    assert world.webhook.requests == []  # the service never calls the network itself
    failed = world.devices.complete(pending, UnavailableError("webhook timed out"))
    assert (
        failed.operation.status == "failed"
        and failed.operation.error_message == "webhook timed out"
    )
    again = world.devices.register(world.service.id_scope, "d1", creds, None)
    assigned = world.devices.complete(again, {"iotHubHostName": "HUB-A.azure-devices.net"})
    assert assigned.state.assigned_hub == "hub-a.azure-devices.net"
