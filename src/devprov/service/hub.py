"""Linked IoT hubs of a provisioning service: allocation assigns devices to them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from devprov.core.enrollment import MAX_LINKED_HUBS
from devprov.core.error import ConflictError, InvalidInputError, NotFoundError, ServiceNotFoundError
from devprov.service.hub_identity import HubKind
from devprov.service.hub_settings import validate_settings
from devprov.service.model import AuditEvent, HubRecord, Outcome
from devprov.service.port import Clock, UnitOfWork, UnitOfWorkFactory
from devprov.service.retry import retrying

# A host name (RFC 1123 labels); hubs are named by host, e.g. myhub.azure-devices.net.
_HOST = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)

# DPS's allocation weight is a positive integer; 1,000 bounds the arithmetic without limiting use.
MAX_WEIGHT = 1000


class InvalidHubNameError(InvalidInputError):
    """A linked hub is not a host name, or its weight is out of range."""

    code = "InvalidHubName"
    number = 400420


class HubNotFoundError(NotFoundError):
    """The hub is not linked to the service."""

    code = "LinkedHubNotFound"
    number = 404420


class HubLimitError(ConflictError):
    """The service links DPS's maximum of 50 hubs."""

    code = "LinkedHubLimitExceeded"
    number = 409420


def validate_hub(host_name: str, weight: int) -> str:
    name = host_name.strip().lower()
    if not _HOST.fullmatch(name):
        raise InvalidHubNameError(
            f"{host_name!r} is not a host name (for example myhub.azure-devices.net)"
        )
    if not 0 < weight <= MAX_WEIGHT:
        raise InvalidHubNameError(f"the allocation weight must be 1 to {MAX_WEIGHT}")
    return name


class HubDirectory:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def all(self, service: str) -> list[HubRecord]:
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            return uow.hubs.all(service)

    def get(self, service: str, host_name: str) -> HubRecord:
        name = host_name.strip().lower()
        for hub in self.all(service):
            if hub.host_name == name:
                return hub
        raise HubNotFoundError(f"IoT hub '{host_name}' is not linked to service '{service}'")

    @retrying
    def add(
        self,
        service: str,
        host_name: str,
        *,
        weight: int = 1,
        apply_allocation_policy: bool = True,
        kind: HubKind | None = None,
        settings: Mapping[str, str] | None = None,
        actor: str,
    ) -> HubRecord:
        """Link a hub, or change a linked one. ``kind`` None keeps a linked hub's kind and
        settings (a new hub is kind none), so changing a weight never drops the secrets."""
        name = validate_hub(host_name, weight)
        checked = None if kind is None else validate_settings(kind, name, settings or {})
        with self._uow() as uow:
            # Locked: the hub limit is a count, then an insert, and two instances linking one
            # hub must not both insert it (docs/storage.md#instances-sharing-one-database).
            _require_service(uow, service, lock=True)
            existing = {hub.host_name: hub for hub in uow.hubs.all(service)}
            record = HubRecord(service, name, weight, apply_allocation_policy, self._clock())
            if name in existing:
                record = replace(existing[name], weight=weight)
                record = replace(record, apply_allocation_policy=apply_allocation_policy)
            if kind is not None and checked is not None:
                record = replace(record, kind=kind, settings=checked)
            if name in existing:
                uow.hubs.replace(record)
            else:
                if len(existing) >= MAX_LINKED_HUBS:
                    raise HubLimitError(f"a service links at most {MAX_LINKED_HUBS} IoT hubs")
                uow.hubs.add(record)
            self._audit(
                uow,
                service,
                "hub.update" if name in existing else "hub.link",
                actor,
                _detail(record),
            )
            uow.commit()
            return record

    @retrying
    def remove(self, service: str, host_name: str, *, actor: str) -> None:
        name = host_name.strip().lower()
        with self._uow() as uow:
            _require_service(uow, service)
            if not uow.hubs.remove(service, name):
                raise HubNotFoundError(
                    f"IoT hub '{host_name}' is not linked to service '{service}'"
                )
            self._audit(uow, service, "hub.unlink", actor, name)
            uow.commit()

    def _audit(self, uow: UnitOfWork, service: str, action: str, actor: str, detail: str) -> None:
        # The hub and its weight go in the reason column: the audit log has no hub column, and
        # its reason is what `devprov audit` and the portal show beside the action.
        uow.audit.record(
            AuditEvent(
                at=self._clock(),
                service=service,
                action=action,
                outcome=Outcome.SUCCEEDED,
                actor=actor,
                reason=detail,
            )
        )


def _detail(hub: HubRecord) -> str:
    """The audit reason of a link or change: the hub, its weight and kind, never its settings."""
    detail = f"{hub.host_name}, weight {hub.weight}"
    if not hub.apply_allocation_policy:
        detail += ", no allocation"
    if hub.kind is not HubKind.NONE:
        detail += f", kind {hub.kind.value}"
    return detail


def _require_service(uow: UnitOfWork, service: str, *, lock: bool = False) -> None:
    found = uow.services.lock(service) if lock else uow.services.get(service)
    if found is None:
        raise ServiceNotFoundError(f"provisioning service '{service}' does not exist")
