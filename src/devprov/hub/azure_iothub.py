"""The ``azure-iothub`` hub kind: device identities made through IoT Hub's registry REST API.

An assignment to such a hub creates or updates ``PUT /devices/{id}`` with the authentication the
device attested with, then applies the enrollment's initial twin with ``PATCH /twins/{id}``
(docs/hubs.md#azure-iot-hub). Every request is shaped as Microsoft's ``azure-iot-hub`` service
SDK shapes it, and authenticated as it is, with a service SAS token signed by the connection
string's shared access policy (docs/hubs.md#azure-iot-hub-registry-contract).

Synchronous: the use case calls it on a worker thread. Failures are translated here, once:
no answer is :class:`HubUnreachableError`, an answer that refuses is :class:`HubRefusedError`,
and no message ever holds the policy's key or a token signed with it.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import certifi
import httpx

from devprov.core.sas import build_sas_token
from devprov.hub.azure_iothub_settings import (
    RegistryCredentials,
    RegistrySettings,
    invalid_setting,
    parse_settings,
)
from devprov.service.hub_identity import (
    DeviceAuthentication,
    DeviceAuthKind,
    DeviceIdentity,
    HubConnection,
    HubRefusedError,
    HubUnreachableError,
)

# Each phase of a request (connecting, TLS included; sending; each wait for bytes of the answer)
# waits at most this long, so a hub that stops answering fails the registration instead of
# holding its worker thread; a put makes at most four requests (docs/hubs.md#azure-iot-hub).
TIMEOUT_SECONDS = 10.0

# How long a token is good for: the SDK's default (SasToken ttl=3600). A token is built per call.
TOKEN_LIFETIME_SECONDS = 3600

# A device or twin answer is a few kilobytes; a larger one is not what was asked for.
MAX_ANSWER_BYTES = 256 * 1024

# How much of a hub's error text the audit log quotes.
MAX_QUOTED_CHARACTERS = 300

# The SDK sends If-Match as a quoted entity tag; "*" quoted is what its update_* and delete_device
# send when given the etag "*" or none (docs/hubs.md#azure-iot-hub-registry-contract).
_ANY_ETAG = '"*"'
_JSON = "application/json; charset=utf-8"


# --- request bodies --------------------------------------------------------------------------


def _authentication(auth: DeviceAuthentication) -> dict[str, Any]:
    """IoT Hub's AuthenticationMechanism as the SDK serialises it: absent values left out."""
    if auth.kind is DeviceAuthKind.SELF_SIGNED:
        if not auth.primary_thumbprint:
            raise ValueError("a selfSigned identity needs its primary thumbprint")
        thumbprints = {"primaryThumbprint": auth.primary_thumbprint}
        if auth.secondary_thumbprint:
            thumbprints["secondaryThumbprint"] = auth.secondary_thumbprint
        return {"x509Thumbprint": thumbprints, "type": auth.kind.value}
    if auth.kind is DeviceAuthKind.SAS:
        if not auth.primary_key:
            raise ValueError("a sas identity needs its primary key")
        keys = {"primaryKey": auth.primary_key}
        if auth.secondary_key:
            keys["secondaryKey"] = auth.secondary_key
        return {"symmetricKey": keys, "type": auth.kind.value}
    return {"type": auth.kind.value}


def _device(device_id: str, enabled: bool, authentication: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "deviceId": device_id,
        "status": "enabled" if enabled else "disabled",
        "authentication": dict(authentication),
        "capabilities": {"iotEdge": False},
    }


def _twin_patch(initial_twin: Mapping[str, Any]) -> dict[str, Any]:
    """The enrollment's initialTwin as the SDK's Twin serialises: tags and desired properties."""
    patch: dict[str, Any] = {}
    if initial_twin.get("tags") is not None:
        patch["tags"] = initial_twin["tags"]
    properties = initial_twin.get("properties") or {}
    if properties.get("desired") is not None:
        patch["properties"] = {"desired": properties["desired"]}
    return patch


def _present(value: Any) -> Any:
    """``value`` without nulls and the objects left empty by removing them: a hub's GET answer
    lists every authentication field, null where unused; the SDK sends only those it has."""
    if isinstance(value, Mapping):
        kept = {key: _present(item) for key, item in value.items() if item is not None}
        return {key: item for key, item in kept.items() if item != {}}
    return value


# --- the adapter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes


class AzureIotHubRegistry:
    """:class:`~devprov.service.hub_identity.HubIdentities` over IoT Hub's registry REST API."""

    def __init__(
        self,
        *,
        timeout: float = TIMEOUT_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # httpcore traces every request at DEBUG; its trace never runs, whatever the process's
        # logging configuration, so no request detail reaches a log by that way.
        logging.getLogger("httpcore").setLevel(logging.INFO)
        self._timeout = timeout
        self._clock = clock

    def put(self, hub: HubConnection, identity: DeviceIdentity) -> str:
        settings = parse_settings(hub)
        device_id = identity.device_id
        existing = self._get(settings, device_id)
        body = _device(device_id, identity.enabled, _authentication(identity.authentication))
        done = "updated"
        if existing is None:
            what = f"create device {device_id}"
            answer = self._call(
                settings, "PUT", _device_path(device_id), what, body, conflict_ok=True
            )
            # 409: made by another writer since the GET; it is brought to this identity below.
            done = "created" if answer.status != 409 else done
        if done == "updated":
            what = f"update device {device_id}"
            self._call(settings, "PUT", _device_path(device_id), what, body, if_match=True)
        host = settings.credentials.host_name
        story = (
            f"identity {done} in {host} with authentication {identity.authentication.kind.value}"
        )
        if identity.initial_twin is not None:
            patch = _twin_patch(identity.initial_twin)
            if patch:
                what = f"apply the initial twin of {device_id}"
                self._call(settings, "PATCH", _twin_path(device_id), what, patch, if_match=True)
                story += ", initial twin applied"
        if not identity.enabled:
            story += ", disabled"
        return story

    def disable(self, hub: HubConnection, device_id: str) -> str:
        settings = parse_settings(hub)
        host = settings.credentials.host_name
        existing = self._get(settings, device_id)
        if existing is None:
            return f"no identity {device_id} in {host} to disable"
        if existing.get("status") == "disabled":
            return f"identity {device_id} in {host} already disabled"
        authentication = _present(existing.get("authentication") or {})
        if not isinstance(authentication, dict) or "type" not in authentication:
            raise HubRefusedError(f"{host} answered device {device_id} without its authentication")
        body = _device(device_id, False, authentication)
        what = f"disable device {device_id}"
        self._call(settings, "PUT", _device_path(device_id), what, body, if_match=True)
        return f"identity {device_id} disabled in {host}"

    def delete(self, hub: HubConnection, device_id: str) -> str:
        settings = parse_settings(hub)
        host = settings.credentials.host_name
        what = f"delete device {device_id}"
        answer = self._call(
            settings, "DELETE", _device_path(device_id), what, None, if_match=True, absent_ok=True
        )
        if answer.status == 404:
            return f"no identity {device_id} in {host} to delete"
        return f"identity {device_id} deleted from {host}"

    # --- requests ---

    def _get(self, settings: RegistrySettings, device_id: str) -> dict[str, Any] | None:
        what = f"read device {device_id}"
        answer = self._call(settings, "GET", _device_path(device_id), what, None, absent_ok=True)
        if answer.status == 404:
            return None
        try:
            device = json.loads(answer.body)
        except ValueError:
            device = None
        if not isinstance(device, dict):
            host = settings.credentials.host_name
            raise HubRefusedError(f"{host} answered {what} with a body that is not a device")
        return device

    def _call(
        self,
        settings: RegistrySettings,
        method: str,
        path: str,
        what: str,
        body: Mapping[str, Any] | None,
        *,
        if_match: bool = False,
        absent_ok: bool = False,
        conflict_ok: bool = False,
    ) -> _Answer:
        headers = {"Authorization": self._token(settings.credentials), "Accept": "application/json"}
        content = None
        if body is not None:
            headers["Content-Type"] = _JSON
            content = json.dumps(body).encode("utf-8")
        if if_match:
            headers["If-Match"] = _ANY_ETAG
        url = f"{settings.base_url}{path}"
        answer = self._send(settings, method, url, headers, content, what)
        if (
            answer.status < 300
            or (absent_ok and answer.status == 404)
            or (conflict_ok and answer.status == 409)
        ):
            return answer
        raise _refusal(settings, what, answer)

    def _send(
        self,
        settings: RegistrySettings,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        what: str,
    ) -> _Answer:
        host = settings.credentials.host_name
        try:
            with (
                httpx.Client(
                    verify=_trust(settings.ca_file),
                    timeout=httpx.Timeout(self._timeout),
                    trust_env=False,  # no proxy or CA bundle from the environment: the settings say
                ) as client,
                client.stream(
                    method,
                    url,
                    params={"api-version": settings.api_version},
                    headers=headers,
                    content=content,
                ) as response,
            ):
                body = _read(response, host, what)
                return _Answer(response.status_code, body)
        except httpx.TimeoutException:
            raise HubUnreachableError(
                f"{host} did not answer the request to {what} within {self._timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise HubUnreachableError(
                f"{host} could not be reached to {what}: {reason[:MAX_QUOTED_CHARACTERS]}"
            ) from None

    def _token(self, credentials: RegistryCredentials) -> str:
        expiry = int(self._clock().timestamp()) + TOKEN_LIFETIME_SECONDS
        # sr is the hub's host name, URL-encoded, as the SDK signs it (quote_plus(HostName)).
        return build_sas_token(credentials.key, credentials.host_name, expiry, credentials.policy)


def _device_path(device_id: str) -> str:
    # Path parameters URL-encoded with nothing kept, as msrest's Serializer.url does.
    return f"/devices/{quote(device_id, safe='')}"


def _twin_path(device_id: str) -> str:
    return f"/twins/{quote(device_id, safe='')}"


def _trust(ca_file: str | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=ca_file or certifi.where())
    except (OSError, ssl.SSLError) as exc:
        raise invalid_setting(
            f"ca_file {ca_file!r} holds no CA certificate that can be read ({exc})"
        ) from None


def _read(response: httpx.Response, host: str, what: str) -> bytes:
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise HubRefusedError(
                f"{host} answered the request to {what} with more than {MAX_ANSWER_BYTES} bytes"
            )
    return body


def _hub_message(body: bytes) -> str:
    """IoT Hub's error text: ``{"Message": "ErrorCode:...", "ExceptionMessage": "Tracking ID..."}``."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        parts = [str(answer[key]) for key in ("Message", "ExceptionMessage") if answer.get(key)]
        text = " ".join(parts)
    else:
        text = body.decode("utf-8", "replace")
    text = " ".join(text.split())
    if len(text) > MAX_QUOTED_CHARACTERS:
        text = text[: MAX_QUOTED_CHARACTERS - 3] + "..."
    return text or "no message"


def _refusal(settings: RegistrySettings, what: str, answer: _Answer) -> HubRefusedError:
    credentials = settings.credentials
    # A hub might echo what it was sent; the key never reaches the audit log by that way.
    message = _hub_message(answer.body).replace(credentials.key, "<key>")
    host = credentials.host_name
    if answer.status in (401, 403):
        return HubRefusedError(
            f"{host} refused the credentials of policy {credentials.policy!r} to {what} "
            f"({answer.status} {message})"
        )
    return HubRefusedError(f"{host} answered the request to {what} with {answer.status}: {message}")
