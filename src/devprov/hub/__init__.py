"""The hub adapters: one module per hub kind, each a ``service.hub_identity.HubIdentities``
(docs/hubs.md#hub-kinds), and :class:`HubClients`, which hands each call to the adapter of the
hub's kind. This package imports service and core only; bootstrap builds it."""

from __future__ import annotations

from collections.abc import Mapping

from devprov.service.hub_identity import (
    DeviceIdentity,
    HubConnection,
    HubIdentities,
    HubKind,
    InvalidHubSettingsError,
)


class HubClients:
    """A HubIdentities over every kind: each call goes to the adapter of ``hub.kind``."""

    def __init__(self, adapters: Mapping[HubKind, HubIdentities]) -> None:
        self._adapters = dict(adapters)

    def _adapter(self, hub: HubConnection) -> HubIdentities:
        adapter = self._adapters.get(hub.kind)
        if adapter is None:
            # A hub of kind none is never called: the use cases ask only hubs with a connection.
            raise InvalidHubSettingsError(f"no client for hubs of kind {hub.kind.value}")
        return adapter

    def put(self, hub: HubConnection, identity: DeviceIdentity) -> str:
        return self._adapter(hub).put(hub, identity)

    def disable(self, hub: HubConnection, device_id: str) -> str:
        return self._adapter(hub).disable(hub, device_id)

    def delete(self, hub: HubConnection, device_id: str) -> str:
        return self._adapter(hub).delete(hub, device_id)
