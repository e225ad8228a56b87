"""What an assignment asks of a hub of a kind other than none (service.device with a recording
HubIdentities, tests/hubs.py; the real adapters are tested in tests/hub/): the identity by
attestation, the initial twin, the audit story, failures that leave the registration failed and
retries that complete it."""

from __future__ import annotations

import pytest

from devprov.core.certificate import describe_der
from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import DevprovError
from devprov.core.registration import RegistrationStatus, Substatus
from devprov.core.sas import derive_device_key
from devprov.service.device_answer import operation_status_body
from devprov.service.hub_identity import (
    DeviceAuthKind,
    HubKind,
    HubRefusedError,
    HubUnreachableError,
)
from devprov.service.model import Outcome
from tests.service.test_device_registration import self_signed
from tests.service.world import KEY, World, chain

HUB_K = "hub-k.azure-devices.net"
HUB_L = "hub-l.azure-devices.net"
SECRET = "c2VjcmV0LW9mLXRoZS1yZWdpc3RyeS1wb2xpY3k="
TWIN = {"tags": {"site": "north"}, "properties": {"desired": {"interval": 30}}}


def link(world: World, host: str = HUB_K, *, allocation: bool = True) -> None:
    connection = f"HostName={host};SharedAccessKeyName=registryReadWrite;SharedAccessKey={SECRET}"
    world.hubs.add(
        "default",
        host,
        apply_allocation_policy=allocation,
        kind=HubKind.AZURE_IOTHUB,
        settings={"connection_string": connection},
        actor="t",
    )


def pinned(hub: str = HUB_K, **extra: object) -> dict[str, object]:
    return {"allocationPolicy": "static", "iotHubs": [hub], "initialTwin": TWIN, **extra}


def story(world: World, rid: str) -> str:
    (event,) = [
        e
        for e in world.audit.events(registration_id=rid)
        if e.action == "register" and e.outcome is Outcome.SUCCEEDED
    ][:1]
    return event.reason or ""


def test_group_x509_device_is_created_ca_signed_with_the_twin(world, pki) -> None:
    root, inter, leaf = pki
    link(world)
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}}, extra=pinned())
    state = world.register("dev-1", chain(leaf, inter)).state
    assert state.status is RegistrationStatus.ASSIGNED and state.assigned_hub == HUB_K
    (put,) = world.hub_calls.of("put")
    assert put.hub.host_name == HUB_K and put.hub.kind is HubKind.AZURE_IOTHUB
    assert put.hub.settings["connection_string"].endswith(SECRET)
    identity = put.identity
    assert (identity.device_id, identity.registration_id, identity.enabled) == (
        "dev-1",
        "dev-1",
        True,
    )
    assert identity.authentication.kind is DeviceAuthKind.CERTIFICATE_AUTHORITY
    assert identity.initial_twin == TWIN
    assert story(world, "dev-1") == (
        f"assigned to {HUB_K} as device 'dev-1' (initialAssignment) by enrollment group 'grp'; "
        f"identity created in {HUB_K} with authentication certificateAuthority"
    )
    assert SECRET not in str([e.reason for e in world.audit.events()])


def test_individual_x509_device_is_known_by_its_thumbprints(world) -> None:
    link(world)
    primary, secondary = self_signed("solo"), self_signed("solo")
    certificates = {
        "primary": {"certificate": primary.pem.decode()},
        "secondary": {"certificate": secondary.pem.decode()},
    }
    world.individual(
        "solo",
        {
            "attestation": {"type": "x509", "x509": {"clientCertificates": certificates}},
            "deviceId": "solo-device",
            **pinned(),
        },
    )
    assert world.register("solo", chain(secondary)).state.status is RegistrationStatus.ASSIGNED
    (put,) = world.hub_calls.of("put")
    auth = put.identity.authentication
    assert put.device_id == "solo-device" and auth.kind is DeviceAuthKind.SELF_SIGNED
    assert (auth.primary_thumbprint, auth.secondary_thumbprint) == (
        describe_der(primary.der).thumbprint,
        describe_der(secondary.der).thumbprint,
    )
    assert auth.primary_key is None and auth.secondary_key is None


def test_group_symmetric_key_device_gets_its_derived_keys(world) -> None:
    link(world)
    other = "b3RoZXIta2V5LW9mLXRoZS1ncm91cC0wMTIzNDU2Nzg5"
    world.group(
        "sym",
        type="symmetricKey",
        symmetricKey={"primaryKey": KEY, "secondaryKey": other},
        extra=pinned(),
    )
    world.register("sensor-7", world.token("sensor-7", derive_device_key(KEY, "sensor-7")))
    (put,) = world.hub_calls.of("put")
    auth = put.identity.authentication
    assert auth.kind is DeviceAuthKind.SAS
    assert (auth.primary_key, auth.secondary_key) == (
        derive_device_key(KEY, "sensor-7"),
        derive_device_key(other, "sensor-7"),
    )
    assert KEY not in (auth.primary_key, auth.secondary_key)  # never the group key


def test_individual_symmetric_key_device_gets_the_enrollment_keys(world) -> None:
    link(world)
    world.individual(
        "sym-1",
        {"attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}}, **pinned()},
    )
    world.register("sym-1", world.token("sym-1", KEY))
    (put,) = world.hub_calls.of("put")
    auth = put.identity.authentication
    assert auth.kind is DeviceAuthKind.SAS and auth.primary_key == KEY
    assert auth.secondary_key and auth.secondary_key != KEY  # generated with the enrollment


def test_a_hub_of_kind_none_is_never_called(world) -> None:
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY})
    state = world.register("d1", world.token("d1", derive_device_key(KEY, "d1"))).state
    assert state.status is RegistrationStatus.ASSIGNED and world.hub_calls.calls == []
    assert "identity" not in story(world, "d1")


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(
            HubUnreachableError(f"{HUB_K} did not answer PUT /devices/d1: connection refused"),
            id="fail/unreachable",
        ),
        pytest.param(
            HubRefusedError(f"{HUB_K} answered PUT /devices/d1 with 401 Unauthorized"),
            id="fail/refused",
        ),
    ],
)
def test_a_failed_hub_call_fails_the_registration_and_a_retry_completes_it(
    world, failure: DevprovError
) -> None:
    link(world)
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY}, extra=pinned())
    credentials = world.token("d1", derive_device_key(KEY, "d1"))
    world.hub_calls.failure = failure
    failed = world.register("d1", credentials)
    assert failed.state.status is RegistrationStatus.FAILED
    assert failed.state.assigned_hub is None and failed.state.device_id == "d1"
    stored = world.devices.status_lookup(world.service.id_scope, "d1", credentials)
    assert (stored.status, stored.assigned_hub) == (RegistrationStatus.FAILED, None)
    # The device: DPS's error shape, the error's number, a generic message.
    shown = operation_status_body(failed.operation, failed.state)["registrationState"]
    assert shown["errorCode"] == failure.number
    assert shown["errorMessage"] == "The device could not be created in its IoT hub"
    # The operator: the precise reason.
    assert any(failure.message in (r or "") for r in world.audit_reasons("d1"))
    world.hub_calls.failure = None
    again = world.register("d1", credentials).state
    assert (again.status, again.assigned_hub, again.substatus) == (
        RegistrationStatus.ASSIGNED,
        HUB_K,
        Substatus.INITIAL_ASSIGNMENT,
    )
    assert [c.device_id for c in world.hub_calls.of("put")] == ["d1", "d1"]


def test_a_webhook_allocation_then_the_hub_call(world) -> None:
    link(world, allocation=False)
    world.webhook.answer = {"iotHubHostName": HUB_K, "payload": {"greeting": "hi"}}
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
    state = world.register("d1", world.token("d1", derive_device_key(KEY, "d1"))).state
    assert (state.status, state.assigned_hub, state.payload) == (
        RegistrationStatus.ASSIGNED,
        HUB_K,
        {"greeting": "hi"},
    )
    assert len(world.webhook.requests) == 1 and len(world.hub_calls.of("put")) == 1


def test_reprovisioning_puts_the_identity_in_the_new_hub_and_leaves_the_old(world) -> None:
    link(world)
    link(world, HUB_L)
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY}, extra=pinned())
    credentials = world.token("d1", derive_device_key(KEY, "d1"))
    world.register("d1", credentials)
    group = world.enrollments.get("default", EnrollmentKind.GROUP, "sym")
    doc = {
        "enrollmentGroupId": "sym",
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
        **pinned(HUB_L, reprovisionPolicy={"updateHubAssignment": True}),
    }
    world.enrollments.create_or_update(
        "default", EnrollmentKind.GROUP, "sym", doc, if_match=group.etag, actor="t"
    )
    moved = world.register("d1", credentials).state
    assert moved.assigned_hub == HUB_L
    assert [c.hub.host_name for c in world.hub_calls.of("put")] == [HUB_K, HUB_L]
    assert world.hub_calls.of("delete") == [] and world.hub_calls.of("disable") == []


def test_a_device_registering_again_unchanged_is_put_again(world) -> None:
    """The put is idempotent, and it is how an identity disabled in the hub comes back."""
    link(world)
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY}, extra=pinned())
    credentials = world.token("d1", derive_device_key(KEY, "d1"))
    first = world.register("d1", credentials).state
    again = world.register("d1", credentials).state
    assert again.assigned_hub == first.assigned_hub == HUB_K
    assert len(world.hub_calls.of("put")) == 2


def test_the_hub_calls_of_one_change_are_bounded_and_the_rest_audited(world, monkeypatch) -> None:
    from devprov.service import hub_sync

    monkeypatch.setattr(hub_sync, "MAX_HUB_CALLS", 2)
    link(world)
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY}, extra=pinned())
    for device in ("d1", "d2", "d3"):
        world.register(device, world.token(device, derive_device_key(KEY, device)))
    sync = hub_sync.IdentitySync(world.enrollments._uow, world.clock)
    plan = sync.for_enrollment("default", EnrollmentKind.GROUP, "sym", deleted=False)
    assert [c.device_id for c in plan.changes] == ["d1", "d2"]
    assert (plan.not_done, plan.not_done_ids) == (1, ("d3",))
    sync.record(plan, hub_sync.apply_changes(plan, world.hub_calls), actor="t")
    assert [c.device_id for c in world.hub_calls.of("disable")] == ["d1", "d2"]
    (left,) = [e for e in world.audit.events() if e.action == "hub.notDone"]
    assert left.reason is not None and left.reason.endswith(
        "1 devices past the first 2 were not changed in their hubs: d3"
    )
