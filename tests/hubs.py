"""A recording HubIdentities for the tests of what devprov asks of hubs: every call kept, in
order, and a failure to raise on demand. The real adapters are tested against a real Mosquitto
and a server implementing IoT Hub's registry contract in tests/hub/."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from devprov.core.error import DevprovError
from devprov.service.hub_identity import DeviceIdentity, HubConnection


@dataclass(frozen=True)
class HubCallRecord:
    action: str  # put, disable, delete
    hub: HubConnection
    device_id: str
    identity: DeviceIdentity | None = None


class RecordingHubs:
    """Keeps each call; raises ``failure`` (when set) instead of doing it."""

    def __init__(self) -> None:
        self.calls: list[HubCallRecord] = []
        self.failure: DevprovError | None = None
        self._lock = threading.Lock()  # calls arrive from worker threads

    def _done(self, record: HubCallRecord, sentence: str) -> str:
        with self._lock:
            self.calls.append(record)
        if self.failure is not None:
            raise self.failure
        return sentence

    def put(self, hub: HubConnection, identity: DeviceIdentity) -> str:
        kind = identity.authentication.kind.value
        return self._done(
            HubCallRecord("put", hub, identity.device_id, identity),
            f"identity created in {hub.host_name} with authentication {kind}",
        )

    def disable(self, hub: HubConnection, device_id: str) -> str:
        return self._done(
            HubCallRecord("disable", hub, device_id), f"identity disabled in {hub.host_name}"
        )

    def delete(self, hub: HubConnection, device_id: str) -> str:
        return self._done(
            HubCallRecord("delete", hub, device_id), f"identity deleted from {hub.host_name}"
        )

    def of(self, action: str) -> list[HubCallRecord]:
        with self._lock:
            return [c for c in self.calls if c.action == action]
