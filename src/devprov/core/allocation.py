"""Choosing the IoT hub a device is assigned to: DPS's allocation policies
(docs/dps-wire.md#enrollment-models).

``hashed``, ``geoLatency`` and ``static`` are decided here. ``custom`` is decided by a webhook the
service layer calls; this module builds the webhook's request and checks its response, in the
shapes of DOCS ``concepts-custom-allocation`` (MicrosoftDocs/azure-docs, articles/iot-dps/).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import accumulate

from devprov.core.error import CustomAllocationError, InvalidHubError, NoHubError
from devprov.core.registration_id import registration_key


class AllocationPolicy(Enum):
    """Spelled as the service API spells ``allocationPolicy``
    (docs/dps-wire.md#enrollment-models)."""

    HASHED = "hashed"
    GEO_LATENCY = "geoLatency"
    STATIC = "static"
    CUSTOM = "custom"


# ARM's IotHubDefinitionDescription.allocationWeight is optional and DPS documents no default.
# 1 makes a hub set without weights "evenly weighted", which is how DOCS describe the hashed
# policy's default ("linked IoT hubs are equally likely to have devices provisioned to them").
DEFAULT_ALLOCATION_WEIGHT = 1


@dataclass(frozen=True)
class LinkedHub:
    """A hub linked to the service (ARM ``iotHubs[]``): ``name``, ``allocationWeight``,
    ``applyAllocationPolicy``. Weight 0 keeps a hub out of hashing."""

    host_name: str
    weight: int = DEFAULT_ALLOCATION_WEIGHT
    apply_allocation_policy: bool = True

    def __post_init__(self) -> None:
        if not self.host_name:
            raise InvalidHubError("a linked hub needs a host name")
        if self.weight < 0:
            raise InvalidHubError(
                f"linked hub {self.host_name!r} has allocation weight {self.weight}; "
                "weights are 0 or more"
            )


def _eligible(
    candidates: Sequence[LinkedHub], enrollment_hubs: Sequence[str] | None
) -> list[LinkedHub]:
    """The enrollment's ``iotHubs`` when it names any (they "must be a subset of the hubs linked
    to the instance", docs/dps-wire.md#enrollment-models), else the linked hubs that apply the
    allocation policy.

    Host names compare case-insensitively (DNS names, RFC 4343).
    """
    linked: dict[str, LinkedHub] = {}
    for hub in candidates:
        if hub.host_name.lower() in linked:
            raise InvalidHubError(f"hub {hub.host_name!r} is linked twice")
        linked[hub.host_name.lower()] = hub
    if not enrollment_hubs:
        return [hub for hub in candidates if hub.apply_allocation_policy]
    unknown = [name for name in enrollment_hubs if name.lower() not in linked]
    if unknown:
        raise InvalidHubError(
            f"the enrollment names hubs that are not linked to the service: {', '.join(unknown)}"
        )
    return list({name.lower(): linked[name.lower()] for name in enrollment_hubs}.values())


def _hashed(registration_id: str, hubs: Sequence[LinkedHub]) -> str:
    """DPS's "evenly weighted distribution": each hub gets a share of devices proportional to
    its allocation weight (DOCS ``how-to-reprovision``).

    SHA-256 of the case-folded id, as an integer, modulo the total weight picks a point on the
    hubs laid end to end in host-name order: the same device lands on the same hub whatever order
    the hubs are listed in, for as long as the set and weights stay the same. Changing the set
    moves some devices, which matters only when they register again: a registration keeps its
    hub unless the reprovision policy moves it.
    """
    weighted = sorted((hub for hub in hubs if hub.weight > 0), key=lambda h: h.host_name.lower())
    if not weighted:
        raise NoHubError(
            "no linked IoT hub is available to this enrollment (none is linked, applies the "
            "allocation policy, or has an allocation weight above 0)"
        )
    bounds = list(accumulate(hub.weight for hub in weighted))
    digest = hashlib.sha256(registration_key(registration_id).encode("ascii")).digest()
    point = int.from_bytes(digest, "big") % bounds[-1]
    return weighted[bisect_right(bounds, point)].host_name


def choose_hub(
    policy: AllocationPolicy,
    registration_id: str,
    candidates: Sequence[LinkedHub],
    *,
    enrollment_hubs: Sequence[str] | None,
) -> str:
    """The host name of the hub ``registration_id`` is assigned to, spelled as it is linked.

    ``candidates`` are the hubs linked to the service; ``enrollment_hubs`` the enrollment's
    ``iotHubs`` (None or empty when it names none).

    - ``hashed``: weighted, deterministic by registration id (see :func:`_hashed`);
    - ``geoLatency``: hashed too. DPS picks the hub nearest the device and hashes among equally
      near ones (DOCS ``concepts-service``); a self-hosted server has no regions, so every hub
      is equally near;
    - ``static``: the enrollment's one hub (DPS requires ``iotHubs`` to hold exactly one);
    - ``custom``: decided by the webhook, never here: ValueError.

    Raises :class:`InvalidHubError` (unlinked or several static hubs), :class:`NoHubError` (no
    hub to choose from, DPS's errorCode 400208) and, from the hashing,
    :class:`~devprov.core.error.InvalidRegistrationIdError`.
    """
    if policy is AllocationPolicy.CUSTOM:
        raise ValueError(
            "custom allocation is the webhook's decision: use build_custom_allocation_request "
            "and parse_custom_allocation_response"
        )
    hubs = _eligible(candidates, enrollment_hubs)
    if policy is AllocationPolicy.STATIC:
        if not enrollment_hubs:
            raise NoHubError("static allocation needs the enrollment to name its hub in iotHubs")
        if len(hubs) != 1:
            raise InvalidHubError(
                f"static allocation needs exactly one hub in iotHubs; the enrollment names {len(hubs)}"
            )
        return hubs[0].host_name
    return _hashed(registration_id, hubs)


# --- custom allocation --------------------------------------------------------------------------


def _redacted(enrollment: Mapping[str, object]) -> dict[str, object]:
    """The enrollment as the webhook sees it. DOCS' example request shows a symmetric-key group's
    attestation as ``{"type": "symmetricKey"}`` and the webhook URL's query (its function key) as
    ``?****``: keys never leave the server."""
    body = dict(enrollment)
    attestation = body.get("attestation")
    if isinstance(attestation, Mapping):
        body["attestation"] = {k: v for k, v in attestation.items() if k != "symmetricKey"}
    definition = body.get("customAllocationDefinition")
    if isinstance(definition, Mapping):
        url = definition.get("webhookUrl")
        if isinstance(url, str) and "?" in url:
            url = url.partition("?")[0] + "?****"
        body["customAllocationDefinition"] = {**definition, "webhookUrl": url}
    return body


def build_custom_allocation_request(
    *,
    enrollment: Mapping[str, object],
    enrollment_group: bool,
    registration_id: str,
    linked_hubs: Sequence[str],
    current_hub: str | None = None,
    current_device_id: str | None = None,
    payload: object = None,
    x509: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The AllocationRequest DPS POSTs to a custom allocation webhook (DOCS
    ``concepts-custom-allocation``):

    ``{"enrollmentGroup" | "individualEnrollment": {...}, "deviceRuntimeContext":
    {"registrationId", "currentIotHubHostName"?, "currentDeviceId"?, "x509" | "symmetricKey",
    "payload"?}, "linkedHubs": [host names]}``

    ``enrollment`` is the enrollment as the service API renders it; its symmetric keys and the
    webhook's function key are removed. The current hub and device id are present only on a
    re-registration, the payload only when the device sent one. ``x509`` is the device's
    certificate details for an X.509 device; without it the device is a symmetric-key one, whose
    context DOCS show as ``"symmetricKey": {}``.

    Unsure: DOCS give no X.509 example ("contains certificate details"), so the shape of ``x509``
    is the caller's. DOCS spell the hub member ``currentIoTHubHostName`` in a table and
    ``currentIotHubHostName`` in the JSON example; the JSON spelling is used.
    """
    context: dict[str, object] = {"registrationId": registration_id}
    if current_hub is not None:
        context["currentIotHubHostName"] = current_hub
    if current_device_id is not None:
        context["currentDeviceId"] = current_device_id
    if x509 is not None:
        context["x509"] = dict(x509)
    else:
        context["symmetricKey"] = {}
    if payload is not None:
        context["payload"] = payload
    return {
        "enrollmentGroup" if enrollment_group else "individualEnrollment": _redacted(enrollment),
        "deviceRuntimeContext": context,
        "linkedHubs": list(linked_hubs),
    }


@dataclass(frozen=True)
class CustomAllocationResult:
    """What a webhook decided. (Not ``CustomAllocation``: core.enrollment has that name for the
    enrollment's ``customAllocationDefinition``.)"""

    iot_hub_host_name: str  # spelled as the linked hub is
    initial_twin: Mapping[str, object] | None = None  # {"tags": {...}, "properties": {"desired"}}
    payload: Mapping[str, object] | None = None  # returned to the device in registrationState


def _member(body: Mapping[str, object], name: str) -> object:
    """A member looked up case-insensitively: DOCS spell the hub ``iotHubHostname`` in a table
    and ``iotHubHostName`` in every example, and DPS's .NET JSON binding ignores case (unsure:
    inferred from that inconsistency). Two spellings at once are ambiguous and refused."""
    found = [key for key in body if isinstance(key, str) and key.lower() == name.lower()]
    if len(found) > 1:
        raise CustomAllocationError(
            f"the webhook's response has {name} more than once: {', '.join(found)}"
        )
    return body[found[0]] if found else None


def _initial_twin(value: object) -> Mapping[str, object] | None:
    """DPS's TwinState: ``{"tags": {...}, "properties": {"desired": {...}}}``, both optional."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise CustomAllocationError("the webhook's initialTwin is not a JSON object")
    tags, properties = value.get("tags"), value.get("properties")
    if tags is not None and not isinstance(tags, Mapping):
        raise CustomAllocationError("the webhook's initialTwin.tags is not a JSON object")
    if properties is not None:
        desired = properties.get("desired") if isinstance(properties, Mapping) else None
        if not isinstance(properties, Mapping) or not (
            desired is None or isinstance(desired, Mapping)
        ):
            raise CustomAllocationError(
                "the webhook's initialTwin.properties must be an object with an object 'desired'"
            )
    return value


def parse_custom_allocation_response(
    body: object, linked: Collection[str]
) -> CustomAllocationResult:
    """Check a webhook's AllocationResponse (DOCS ``concepts-custom-allocation``):
    ``{"iotHubHostName": ..., "initialTwin"?: {...}, "payload"?: {...}}``.

    The hub "must be one of the IoT hubs passed in the linkedHubs property in the request", here
    ``linked``, compared case-insensitively. Raises :class:`CustomAllocationError`, which DPS
    reports on the registration as ``failed`` with an errorCode.
    """
    if not isinstance(body, Mapping):
        raise CustomAllocationError("the webhook's response is not a JSON object")
    hub = _member(body, "iotHubHostName")
    if not isinstance(hub, str) or not hub:
        raise CustomAllocationError("the webhook's response names no iotHubHostName")
    chosen = {name.lower(): name for name in linked}.get(hub.lower())
    if chosen is None:
        raise CustomAllocationError(
            f"the webhook chose {hub[:300]!r}, which is not one of the hubs linked to the service"
        )
    payload = _member(body, "payload")
    if payload is not None and not isinstance(payload, Mapping):
        # DOCS: "an object that contains data to be passed back to the device"; DEV-SPEC types
        # DeviceRegistrationResult.payload as an object
        # (docs/dps-wire.md#device-request-and-response-models).
        raise CustomAllocationError("the webhook's payload is not a JSON object")
    return CustomAllocationResult(
        iot_hub_host_name=chosen,
        initial_twin=_initial_twin(_member(body, "initialTwin")),
        payload=payload,
    )
