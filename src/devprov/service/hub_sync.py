"""Identities in hubs after an enrollment is disabled or deleted, or a registration deleted
(docs/hubs.md#disabling-and-deleting).

The change itself is committed first; what it means for the hubs is planned from the stored
registration states (:class:`IdentitySync`, on a storage thread), the hub calls are made on a
worker thread (:func:`run_hub_changes`), and each device's outcome is audited on its own. A
failed call changes nothing stored: the operator sees it in the audit, and the hub call is
idempotent, so doing the change again (or the device registering again) repairs it.

Which call, by hub kind:
- an enrollment disabled: disable, in every kind;
- an enrollment deleted: Mosquitto removes the client (a broker has no other record of it),
  IoT Hub disables the identity (its twin and data are the operator's to delete);
- a registration deleted: Mosquitto removes the client; IoT Hub deletes the identity only when
  the operator asks (``--delete-identity``).
Re-enabling an enrollment does not re-enable identities: each device registering again does.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import DevprovError
from devprov.core.registration import RegistrationState
from devprov.service.device_pending import Runner
from devprov.service.hub_identity import HubConnection, HubIdentities, HubKind
from devprov.service.model import AuditEvent, Outcome
from devprov.service.port import Clock, UnitOfWork, UnitOfWorkFactory

# The most hub calls one change makes: each may wait for a timeout, and the operator's request
# waits for them all. Devices past it are named in the audit as not done (the first
# _NOT_DONE_SHOWN of them), to be repeated by the operator or by the devices registering again.
MAX_HUB_CALLS = 1000
_NOT_DONE_SHOWN = 50
_PAGE = 500


class HubAction(enum.Enum):
    DISABLE = "disable"
    DELETE = "delete"


@dataclass(frozen=True)
class HubChange:
    action: HubAction
    registration_id: str
    device_id: str
    hub: HubConnection


@dataclass(frozen=True)
class HubChanges:
    """The hub calls one committed change calls for."""

    service: str
    cause: str  # what the operator did, for the audit: "enrollment group 'g' disabled"
    changes: tuple[HubChange, ...] = ()
    not_done: int = 0  # devices past MAX_HUB_CALLS
    not_done_ids: tuple[str, ...] = ()


class IdentitySync:
    """Plans and records the hub calls of a change; the calls themselves run elsewhere."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def for_enrollment(
        self, service: str, kind: EnrollmentKind, id: str, *, deleted: bool
    ) -> HubChanges:
        label = "enrollment" if kind is EnrollmentKind.INDIVIDUAL else "enrollment group"
        cause = f"{label} '{id}' {'deleted' if deleted else 'disabled'}"
        with self._uow(read_only=True) as uow:
            connections = _connections(uow, service)
            if not connections:
                return HubChanges(service, cause)
            states = _states_of(uow, service, kind, id)
            changes: list[HubChange] = []
            for state in states:
                hub = connections.get(state.assigned_hub or "")
                if hub is None:
                    continue
                mosquitto = hub.kind is HubKind.MOSQUITTO
                action = HubAction.DELETE if deleted and mosquitto else HubAction.DISABLE
                changes.append(_change(action, state, hub))
        return _bounded(service, cause, changes)

    def for_registration(self, state: RegistrationState, *, delete_identity: bool) -> HubChanges:
        cause = f"registration '{state.registration_id}' deleted"
        with self._uow(read_only=True) as uow:
            hub = _connections(uow, state.service).get(state.assigned_hub or "")
        if hub is None or (hub.kind is HubKind.AZURE_IOTHUB and not delete_identity):
            return HubChanges(state.service, cause)
        return HubChanges(state.service, cause, (_change(HubAction.DELETE, state, hub),))

    def record(
        self, plan: HubChanges, results: Sequence[str | DevprovError], *, actor: str
    ) -> None:
        """One audit event per device, and one naming the devices left undone."""
        now = self._clock()
        with self._uow() as uow:
            for change, result in zip(plan.changes, results, strict=True):
                failed = isinstance(result, DevprovError)
                reason = result.message if isinstance(result, DevprovError) else result
                uow.audit.record(
                    AuditEvent(
                        at=now,
                        service=plan.service,
                        action=f"hub.{change.action.value}",
                        outcome=Outcome.FAILED if failed else Outcome.SUCCEEDED,
                        actor=actor,
                        reason=f"{plan.cause}: {reason}",
                        error_code=result.code if isinstance(result, DevprovError) else None,
                        registration_id=change.registration_id,
                    )
                )
            if plan.not_done:
                shown = ", ".join(plan.not_done_ids)
                more = plan.not_done - len(plan.not_done_ids)
                uow.audit.record(
                    AuditEvent(
                        at=now,
                        service=plan.service,
                        action="hub.notDone",
                        outcome=Outcome.FAILED,
                        actor=actor,
                        reason=f"{plan.cause}: {plan.not_done} devices past the first "
                        f"{MAX_HUB_CALLS} were not changed in their hubs: {shown}"
                        + (f" and {more} more" if more > 0 else ""),
                    )
                )
            uow.commit()


def apply_changes(plan: HubChanges, hubs: HubIdentities) -> list[str | DevprovError]:
    """Make the calls, one by one (a worker thread's work); each result or error."""
    results: list[str | DevprovError] = []
    for change in plan.changes:
        try:
            if change.action is HubAction.DELETE:
                results.append(hubs.delete(change.hub, change.device_id))
            else:
                results.append(hubs.disable(change.hub, change.device_id))
        except DevprovError as exc:
            results.append(exc)
    return results


async def run_hub_changes(
    plan: HubChanges,
    *,
    sync: IdentitySync,
    hubs: HubIdentities,
    storage: Runner,
    worker: Callable[..., Awaitable[Any]],
    actor: str,
) -> None:
    """The calls on a worker thread, then their audit on a storage thread."""
    if not plan.changes and not plan.not_done:
        return
    results = await worker(apply_changes, plan, hubs)
    await storage(sync.record, plan, results, actor=actor)


def _change(action: HubAction, state: RegistrationState, hub: HubConnection) -> HubChange:
    return HubChange(action, state.registration_id, state.device_id or state.registration_id, hub)


def _bounded(service: str, cause: str, changes: list[HubChange]) -> HubChanges:
    rest = changes[MAX_HUB_CALLS:]
    return HubChanges(
        service,
        cause,
        tuple(changes[:MAX_HUB_CALLS]),
        len(rest),
        tuple(c.registration_id for c in rest[:_NOT_DONE_SHOWN]),
    )


def _connections(uow: UnitOfWork, service: str) -> dict[str, HubConnection]:
    return {
        hub.host_name: hub.connection for hub in uow.hubs.all(service) if hub.connection is not None
    }


def _states_of(
    uow: UnitOfWork, service: str, kind: EnrollmentKind, id: str
) -> list[RegistrationState]:
    """The registration states an enrollment decided."""
    if kind is EnrollmentKind.INDIVIDUAL:
        state = uow.registrations.get(service, id)
        if state is None or state.enrollment_kind is not EnrollmentKind.INDIVIDUAL:
            return []
        return [state]
    states: list[RegistrationState] = []
    after: str | None = None
    while True:
        page = uow.registrations.page_for_group(service, id, after=after, limit=_PAGE)
        states += page
        if len(page) < _PAGE:
            return states
        after = page[-1].key
