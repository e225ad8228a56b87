"""What a registration waits on, run until it has an outcome: the custom allocation webhook,
then the hub that must hold the device's identity (docs/hubs.md#what-an-assignment-creates).

``DeviceRegistration.register`` returns a :class:`WebhookCall` or a :class:`HubCall` instead of
making a network call inside a use case; every device endpoint (HTTPS, MQTT) hands that here.
The network calls run on a worker thread (never the event loop, never a storage thread, where
they would hold a database slot while a remote server thinks); what they return, or the error
they raise, goes back to the use case on a storage thread. A webhook's answer may lead to a hub
call, so this loops until the registration is decided.

A device is not held while that runs (docs/dps-wire.md#one-round-trip): the registration's
operation is stored ``assigning`` first, the calls run in a background task the process owns
(:class:`PendingRegistrations`), and the register waits for that task at most
:data:`REGISTER_WAIT_SECONDS`. Decided by then, it is answered with the outcome; otherwise with
202 ``assigning`` and the operation, which the task settles under the same id. A client that
goes away does not cancel the task; a stopping server waits for its tasks, up to
:data:`STOP_GRACE_SECONDS`, then cancels the rest, whose operations polls then read as a dead
process's (core.registration.is_abandoned).
"""

from __future__ import annotations

import asyncio
import logging
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

log = logging.getLogger("devprov.registration")

P = ParamSpec("P")
T = TypeVar("T")

# How long a register waits for its webhook (and hub) before it is answered 202 ``assigning``
# (``devprov serve --register-wait``). A webhook that answers as fast as usual (a warm function,
# well under a second) still gives the device its outcome in the register's answer; a slow one
# (a cold start) no longer holds it. 2 s is shorter than the Retry-After of 3 s DPS sends with
# its own 202 (docs/dps-wire.md#https-register-operation-status-and-status-lookup), so a device
# never waits longer for its first answer than DPS would make it wait for its first poll, and
# Python's SDK waits 2 s before a first poll anyway
# (docs/sdk-clients.md#python-device-statuses-polling-and-timeouts).
REGISTER_WAIT_SECONDS = 2.0

# How long a stopping server waits for the registrations it is still settling: the webhook's
# own deadline (core.outbound.WEBHOOK_DEADLINE_SECONDS), by which a webhook called before the
# signal has answered or failed. A task still running then (a hub call after a slow webhook) is
# cancelled; its operation stays ``assigning`` and polls read it as a dead process's.
STOP_GRACE_SECONDS = 10.0


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


class PendingRegistrations:
    """The registrations this process is settling in the background: each a task that outlives
    the request that started it, tracked until it ends so that a stopping server can wait for
    it (one per process, in bootstrap's Container)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[RegistrationOutcome]] = set()

    @property
    def running(self) -> int:
        """Registrations being settled now."""
        return len(self._tasks)

    async def decide(
        self,
        result: RegistrationOutcome | WebhookCall | HubCall,
        *,
        devices: DeviceRegistration,
        webhook: AllocationWebhook,
        hubs: HubIdentities,
        storage: Runner,
        worker: Callable[..., Awaitable[Any]],
        wait: float,
    ) -> RegistrationOutcome:
        """The outcome of ``register``'s ``result`` if decided within ``wait`` seconds, else its
        operation, stored ``assigning`` and settled by a background task (the arguments are
        :func:`settle`'s). An error the task raises within ``wait`` is raised here, as it was
        when the register made the calls itself."""
        if isinstance(result, RegistrationOutcome):
            return result
        operation, call = await storage(devices.hold, result)
        settling = settle(
            call, devices=devices, webhook=webhook, hubs=hubs, storage=storage, worker=worker
        )
        task = asyncio.create_task(self._settle(call, settling))
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        # asyncio.wait, unlike wait_for, never cancels the task: neither when the time is up nor
        # when this request is cancelled (its client went away).
        done, _ = await asyncio.wait({task}, timeout=wait)
        if done:
            return task.result()
        return RegistrationOutcome(operation, None)

    async def close(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Wait up to ``grace`` seconds for the registrations being settled, then cancel the
        rest (their calls' threads end by their own deadlines; nothing more is stored)."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in late:
            task.cancel()
        if late:
            log.warning(
                "stopped with %d registrations undecided after %g s; their operations stay "
                "assigning, and polls read them failed",
                len(late),
                grace,
            )
            await asyncio.wait(late)

    async def _settle(
        self, call: WebhookCall | HubCall, settling: Awaitable[RegistrationOutcome]
    ) -> RegistrationOutcome:
        try:
            return await settling
        except DevprovError as exc:
            log.warning(
                "operation %s of '%s' stays assigning: %s",
                call.context.operation_id,
                call.context.fresh.registration_id,
                exc.message,
            )
            raise

    def _forget(self, task: asyncio.Task[RegistrationOutcome]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved here: a DevprovError is logged by _settle
        if error is not None and not isinstance(error, DevprovError):
            log.error("settling a registration failed unexpectedly", exc_info=error)
