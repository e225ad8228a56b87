"""A registration that waits on its custom allocation webhook (service.device_pending and
DeviceRegistration.hold): its operation is stored assigning, settled under the same id, read
failed by a poll once no process can decide it any more, and the background tasks that settle
such registrations are waited for, or cancelled, as a stopping server asks. Real SQLite; the
webhook is tests/service/world.py's fake, held by an event where a test needs it slow."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from devprov.core.error import NotFoundError, RegistrationAbandonedError, WebhookFailedError
from devprov.core.registration import ASSIGNING_LIMIT, RegistrationStatus
from devprov.core.sas import derive_device_key
from devprov.service.attestation import Credentials
from devprov.service.device import RegistrationNotFoundError, RegistrationOutcome, WebhookCall
from devprov.service.device_answer import operation_status_body, register_answer
from devprov.service.device_pending import PendingRegistrations
from devprov.service.model import Operation
from tests.service.world import KEY, FakeWebhook, World

HUB = "hub-a.azure-devices.net"
DEVICE = "slow-1"


class HeldWebhook(FakeWebhook):
    """The fake webhook, answering only once ``release`` is set (at most 30 s)."""

    def __init__(self, answer: object = None, error: WebhookFailedError | None = None) -> None:
        super().__init__(answer, error)
        self.release = threading.Event()

    def call(self, url: str, body: Mapping[str, Any]) -> object:
        self.release.wait(30)
        return super().call(url, body)


def hooked(world: World) -> Credentials:
    """A symmetric-key group with a custom allocation webhook; the credentials of DEVICE."""
    world.group(
        "hooked",
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
    return world.token(DEVICE, derive_device_key(KEY, DEVICE))


def waiting(world: World, credentials: Credentials) -> WebhookCall:
    result = world.devices.register(world.service.id_scope, DEVICE, credentials, None)
    assert isinstance(result, WebhookCall)
    return result


def poll(world: World, operation: Operation, credentials: Credentials) -> RegistrationOutcome:
    return world.devices.operation_status(world.service.id_scope, DEVICE, operation.id, credentials)


def test_a_held_operation_is_assigning_then_settled_under_the_same_id(world: World) -> None:
    credentials = hooked(world)
    operation, call = world.devices.hold(waiting(world, credentials))
    assert operation.status == "assigning"
    polled = poll(world, operation, credentials)
    assert polled.operation == operation
    assert operation_status_body(polled.operation, polled.state) == {
        "operationId": operation.id,
        "status": "assigning",
    }
    assert register_answer(operation, None, always_poll=False) == (
        202,
        {"operationId": operation.id, "status": "assigning"},
    )
    world.clock.advance(seconds=3)
    outcome = world.devices.complete(call, {"iotHubHostName": HUB})
    assert isinstance(outcome, RegistrationOutcome)
    assert outcome.operation.id == operation.id and outcome.operation.status == "assigned"
    polled = poll(world, operation, credentials)
    assert polled.operation.status == "assigned"
    assert polled.operation.created_at == operation.created_at  # the row was updated
    assert polled.state is not None and polled.state.assigned_hub == HUB


def test_a_failed_webhook_settles_the_held_operation_failed(world: World) -> None:
    credentials = hooked(world)
    operation, call = world.devices.hold(waiting(world, credentials))
    failure = WebhookFailedError("the custom allocation webhook answered 500")
    outcome = world.devices.complete(call, failure)
    assert isinstance(outcome, RegistrationOutcome)
    polled = poll(world, operation, credentials)
    assert (polled.operation.id, polled.operation.status) == (operation.id, "failed")
    body = operation_status_body(polled.operation, polled.state)
    assert body["registrationState"]["errorCode"] == 400207  # DPS's answer to the device


def test_an_operation_is_settled_once(world: World) -> None:
    credentials = hooked(world)
    _, call = world.devices.hold(waiting(world, credentials))
    world.devices.complete(call, {"iotHubHostName": HUB})
    with pytest.raises(NotFoundError, match="is not assigning"):
        world.devices.complete(call, {"iotHubHostName": HUB})


def test_no_registration_state_is_written_until_the_outcome(world: World) -> None:
    credentials = hooked(world)
    world.devices.hold(waiting(world, credentials))
    with pytest.raises(RegistrationNotFoundError):
        world.devices.status_lookup(world.service.id_scope, DEVICE, credentials)


@pytest.mark.parametrize(
    ("after", "status"),
    [
        pytest.param(ASSIGNING_LIMIT, "assigning", id="ok/at-the-limit"),
        pytest.param(ASSIGNING_LIMIT + timedelta(seconds=1), "failed", id="fail/past-it"),
    ],
)
def test_an_operation_assigning_past_the_limit_is_read_failed(
    world: World, after: timedelta, status: str
) -> None:
    credentials = hooked(world)
    operation, _ = world.devices.hold(waiting(world, credentials))
    world.clock.now += after
    polled = poll(world, operation, credentials)
    assert (polled.operation.id, polled.operation.status) == (operation.id, status)
    if status == "failed":
        assert polled.operation.error_code == RegistrationAbandonedError.number
        body = operation_status_body(polled.operation, polled.state)
        assert body["status"] == "failed"
        assert "registrationState" not in body  # the device had no registration state yet
    else:
        assert polled.operation.error_code is None


def test_a_settled_operation_is_never_read_abandoned(world: World) -> None:
    credentials = hooked(world)
    operation, call = world.devices.hold(waiting(world, credentials))
    world.devices.complete(call, {"iotHubHostName": HUB})
    world.clock.now += ASSIGNING_LIMIT * 10
    assert poll(world, operation, credentials).operation.status == "assigned"


# --- the background tasks ------------------------------------------------------------------------


async def decide(
    pending: PendingRegistrations, world: World, call: WebhookCall, wait: float
) -> RegistrationOutcome:
    return await pending.decide(
        call,
        devices=world.devices,
        webhook=world.webhook,
        hubs=world.hub_calls,
        storage=asyncio.to_thread,
        worker=asyncio.to_thread,
        wait=wait,
    )


def test_a_webhook_within_the_wait_gives_the_outcome(world: World) -> None:
    credentials = hooked(world)
    world.webhook = FakeWebhook({"iotHubHostName": HUB})
    pending = PendingRegistrations()
    # Well past what a fake webhook and two SQLite writes take: the outcome comes first.
    outcome = asyncio.run(decide(pending, world, waiting(world, credentials), 30))
    assert outcome.operation.status == "assigned"
    assert poll(world, outcome.operation, credentials).operation.status == "assigned"
    assert pending.running == 0


def test_a_slower_webhook_gives_the_assigning_operation_and_settles_it_later(
    world: World,
) -> None:
    credentials = hooked(world)
    webhook = world.webhook = HeldWebhook({"iotHubHostName": HUB})
    pending = PendingRegistrations()

    async def scenario() -> tuple[RegistrationOutcome, str, int]:
        outcome = await decide(pending, world, waiting(world, credentials), 0.05)
        meanwhile = (await asyncio.to_thread(poll, world, outcome.operation, credentials)).operation
        running = pending.running
        webhook.release.set()
        await pending.close()  # waits for the task
        return outcome, meanwhile.status, running

    outcome, meanwhile, running = asyncio.run(scenario())
    assert (outcome.operation.status, outcome.state) == ("assigning", None)
    assert (meanwhile, running) == ("assigning", 1)
    settled = poll(world, outcome.operation, credentials)
    assert (settled.operation.id, settled.operation.status) == (outcome.operation.id, "assigned")
    assert pending.running == 0


def test_a_request_cancelled_while_it_waits_leaves_the_task_running(world: World) -> None:
    credentials = hooked(world)
    webhook = world.webhook = HeldWebhook({"iotHubHostName": HUB})
    pending = PendingRegistrations()

    async def scenario() -> int:
        request = asyncio.create_task(decide(pending, world, waiting(world, credentials), 30))
        while pending.running == 0:  # the operation is stored and the task started
            await asyncio.sleep(0.01)
        request.cancel()  # the client went away
        with pytest.raises(asyncio.CancelledError):
            await request
        running = pending.running
        webhook.release.set()
        await pending.close()
        return running

    assert asyncio.run(scenario()) == 1
    state = world.devices.status_lookup(world.service.id_scope, DEVICE, credentials)
    assert state.status is RegistrationStatus.ASSIGNED and state.assigned_hub == HUB


def test_closing_cancels_what_outlasts_the_grace_and_stores_nothing_more(world: World) -> None:
    credentials = hooked(world)
    webhook = world.webhook = HeldWebhook({"iotHubHostName": HUB})
    pending = PendingRegistrations()

    async def scenario() -> RegistrationOutcome:
        outcome = await decide(pending, world, waiting(world, credentials), 0)
        await pending.close(grace=0.05)
        webhook.release.set()  # the call's thread ends; nothing waits for its answer any more
        return outcome

    outcome = asyncio.run(scenario())
    assert pending.running == 0
    assert poll(world, outcome.operation, credentials).operation.status == "assigning"
    world.clock.now += ASSIGNING_LIMIT + timedelta(seconds=1)
    assert poll(world, outcome.operation, credentials).operation.status == "failed"
