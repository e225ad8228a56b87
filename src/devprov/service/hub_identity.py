"""What an assignment makes in the assigned hub: the device's identity, and the port that makes it.

DPS creates the device in the IoT hub it assigns, with the authentication that matches how the
device attested, and applies the enrollment's initial twin (docs/hubs.md). A linked hub has a
kind: ``none`` (devprov names the hub and creates nothing: offline testing), ``azure-iothub``
(IoT Hub's registry REST API) or ``mosquitto`` (Mosquitto's dynamic-security plugin). The
adapters behind :class:`HubIdentities` make the network calls; the use cases decide what to ask
for and record the story in the audit log.

Every method of the port is idempotent (create-or-update, disable, delete-if-present), so a
registration that failed half-way is completed by the device registering again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from devprov.core.error import InvalidInputError, UnavailableError


class HubKind(enum.Enum):
    NONE = "none"
    AZURE_IOTHUB = "azure-iothub"
    MOSQUITTO = "mosquitto"


class DeviceAuthKind(enum.Enum):
    """IoT Hub's ``authentication.type`` values (docs/hubs.md#identities)."""

    CERTIFICATE_AUTHORITY = "certificateAuthority"  # X.509 from a CA: an enrollment group's device
    SELF_SIGNED = "selfSigned"  # X.509 by thumbprint: an individual enrollment's own certificate
    SAS = "sas"  # symmetric keys


@dataclass(frozen=True)
class DeviceAuthentication:
    kind: DeviceAuthKind
    # SELF_SIGNED: the SHA-1 thumbprints (40 hex digits, upper case) of the device certificate(s)
    # the enrollment holds; the secondary may be None.
    primary_thumbprint: str | None = None
    secondary_thumbprint: str | None = None
    # SAS: the device's own keys (base64), derived from the group keys for a group's device.
    primary_key: str | None = None
    secondary_key: str | None = None


@dataclass(frozen=True)
class DeviceIdentity:
    """The identity an assignment asks the hub to hold."""

    device_id: str
    registration_id: str
    authentication: DeviceAuthentication
    # The enrollment's initialTwin as DPS documents it ({"tags": {...}, "properties":
    # {"desired": {...}}}), or None.
    initial_twin: Mapping[str, Any] | None = None
    enabled: bool = True


@dataclass(frozen=True)
class HubConnection:
    """What reaches a hub of a kind other than ``none``: the settings its kind names
    (docs/hubs.md#hub-kinds), secrets included. Stored with the hub; never printed again."""

    kind: HubKind
    host_name: str
    settings: Mapping[str, str] = field(default_factory=dict)


class HubUnreachableError(UnavailableError):
    """The hub could not be reached, or did not answer in time."""

    code = "IotHubUnreachable"
    number = 503110


class HubRefusedError(UnavailableError):
    """The hub answered, and refused or failed the request (its answer is quoted)."""

    code = "IotHubRefused"
    number = 503111


class InvalidHubSettingsError(InvalidInputError):
    """A hub's kind is unknown, or its settings are missing or malformed."""

    code = "InvalidHubSettings"
    number = 400112


class HubIdentities(Protocol):
    """Creates, disables and removes device identities in hubs of one kind.

    Each call raises :class:`HubUnreachableError` or :class:`HubRefusedError` on failure, with a
    message precise enough for the audit log (which hub, what was asked, what it answered).
    Every call is idempotent.
    """

    def put(self, hub: HubConnection, identity: DeviceIdentity) -> str:
        """Create the identity, or bring an existing one to ``identity`` (authentication,
        enabled, initial twin when the hub has twins). Returns what was done, for the audit log,
        e.g. "identity created in hub.example with authentication certificateAuthority"."""
        ...

    def disable(self, hub: HubConnection, device_id: str) -> str:
        """Make the identity unable to connect (no error when it does not exist)."""
        ...

    def delete(self, hub: HubConnection, device_id: str) -> str:
        """Remove the identity (no error when it does not exist)."""
        ...
