"""What a registration waits on, run until it has an outcome: the custom allocation webhook,
then the hub that must hold the device's identity (docs/hubs.md#what-an-assignment-creates).

``DeviceRegistration.register`` returns a :class:`WebhookCall` or a :class:`HubCall` instead of
making a network call inside a use case; every device endpoint (HTTPS, MQTT) hands that here.
The network calls run on a worker thread (never the event loop, never a storage thread, where
they would hold a database slot while a remote server thinks); what they return, or the error
they raise, goes back to the use case on a storage thread. A webhook's answer may lead to a hub
call, so this loops until the registration is decided.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from devprov.core.error import DevprovError
from devprov.service.device import (
    AllocationWebhook,
    DeviceRegistration,
    HubCall,
    RegistrationOutcome,
    WebhookCall,
)
from devprov.service.hub_identity import HubIdentities

P = ParamSpec("P")
T = TypeVar("T")


class Runner(Protocol):
    """Runs ``call`` somewhere other than the event loop (a storage thread)."""

    def __call__(
        self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]: ...


async def settle(
    pending: RegistrationOutcome | WebhookCall | HubCall,
    *,
    devices: DeviceRegistration,
    webhook: AllocationWebhook,
    hubs: HubIdentities,
    storage: Runner,
    # A worker thread runner (asyncio.to_thread, starlette's run_in_threadpool); typed loosely
    # because their signatures differ in how the callable is passed, and every answer is an
    # object to the use case anyway.
    worker: Callable[..., Awaitable[Any]],
) -> RegistrationOutcome:
    """The outcome of a registration ``register`` left waiting on a webhook or a hub."""
    while not isinstance(pending, RegistrationOutcome):
        answer: object
        if isinstance(pending, WebhookCall):
            try:
                answer = await worker(webhook.call, pending.url, pending.body)
            except DevprovError as exc:
                answer = exc
            pending = await storage(devices.complete, pending, answer)
        else:
            try:
                answer = await worker(hubs.put, pending.hub, pending.identity)
            except DevprovError as exc:
                answer = exc
            pending = await storage(devices.complete_hub, pending, answer)
    return pending
