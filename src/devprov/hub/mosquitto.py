"""Placeholder for the mosquitto hub adapter, replaced by the adapter itself: every call fails as
an unreachable hub would, so a hub of this kind leaves registrations failed, never assigned."""

from __future__ import annotations

from devprov.service.hub_identity import DeviceIdentity, HubConnection, HubUnreachableError


class MosquittoDynamicSecurity:
    def __init__(self, timeout: float | None = None) -> None:
        self._timeout = timeout

    def put(self, hub: HubConnection, identity: DeviceIdentity) -> str:
        raise HubUnreachableError("not built")

    def disable(self, hub: HubConnection, device_id: str) -> str:
        raise HubUnreachableError("not built")

    def delete(self, hub: HubConnection, device_id: str) -> str:
        raise HubUnreachableError("not built")
