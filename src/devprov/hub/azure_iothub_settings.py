"""The settings of an ``azure-iothub`` hub: its service connection string, where its registry
is reached, and with which API version (docs/hubs.md#azure-iot-hub).

Parsing only: :class:`InvalidHubSettingsError` names the field at fault and never quotes the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from devprov.core.error import InvalidSymmetricKeyError
from devprov.core.sas import parse_symmetric_key
from devprov.service.hub_identity import HubConnection, InvalidHubSettingsError

# The registry API version the SDK pins (azure-iot-hub 2.7.0: iothubgatewayserviceapis/2021-04-12).
DEFAULT_API_VERSION = "2021-04-12"
_API_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?")

# The connection string's fields (Azure's ConnectionString parser: names are case-sensitive).
_HOST_NAME, _KEY_NAME, _KEY = "HostName", "SharedAccessKeyName", "SharedAccessKey"
# Fields of other kinds of IoT Hub connection string, refused with a reason.
_OTHER_FIELDS = {"DeviceId", "ModuleId", "GatewayHostName", "SharedAccessSignature"}
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?")


@dataclass(frozen=True)
class RegistryCredentials:
    """A service connection string's parts: the hub, and the shared access policy signing for it."""

    host_name: str
    policy: str
    key: str = field(repr=False)


@dataclass(frozen=True)
class RegistrySettings:
    credentials: RegistryCredentials
    base_url: str  # where requests go: https://HostName, or the ``endpoint`` setting
    api_version: str
    ca_file: str | None


def invalid_setting(message: str) -> InvalidHubSettingsError:
    return InvalidHubSettingsError(f"azure-iothub hub: {message}")


def _connection_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue  # a trailing ';' is harmless
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals:
            raise invalid_setting(f"connection_string field {name[:40]!r} is not Name=value")
        if name in fields:
            raise invalid_setting(f"connection_string has more than one {name}")
        if name in _OTHER_FIELDS:
            raise invalid_setting(
                f"connection_string has {name}: that is not a service connection string; give "
                "one of a shared access policy with registry write rights"
            )
        if name not in {_HOST_NAME, _KEY_NAME, _KEY}:
            raise invalid_setting(f"connection_string has an unknown field {name[:40]!r}")
        fields[name] = value.strip()
    return fields


def parse_connection_string(text: str) -> RegistryCredentials:
    """``HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`` as IoT Hub gives it.

    Raises :class:`InvalidHubSettingsError` naming the field at fault; never quoting the key.
    """
    fields = _connection_fields(text)
    missing = [name for name in (_HOST_NAME, _KEY_NAME, _KEY) if not fields.get(name)]
    if missing:
        raise invalid_setting(f"connection_string lacks {', '.join(missing)}")
    host = fields[_HOST_NAME]
    if not _HOST.fullmatch(host):
        raise invalid_setting(f"connection_string HostName {host[:64]!r} is not a host name[:port]")
    try:
        parse_symmetric_key(fields[_KEY])
    except InvalidSymmetricKeyError as exc:
        raise invalid_setting(f"connection_string SharedAccessKey: {exc.message}") from None
    return RegistryCredentials(host, fields[_KEY_NAME], fields[_KEY])


def _endpoint(text: str) -> str:
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "https" or not parts.hostname or port == -1:
        raise invalid_setting(f"endpoint {text[:64]!r} is not https://host[:port]")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise invalid_setting(f"endpoint {text[:64]!r} has more than https://host[:port]")
    return f"https://{parts.netloc}"


def parse_settings(hub: HubConnection) -> RegistrySettings:
    """The settings of an ``azure-iothub`` hub (docs/hubs.md#azure-iot-hub).

    The connection string must be for the hub it is stored with: its HostName, without a port,
    is the hub's name, so that a device is never created in a hub other than the one it is told.
    """
    settings = hub.settings
    if "connection_string" not in settings:
        raise invalid_setting("the connection_string setting is missing")
    credentials = parse_connection_string(settings["connection_string"])
    if credentials.host_name.partition(":")[0].lower() != hub.host_name.lower():
        raise invalid_setting(
            f"connection_string HostName {credentials.host_name!r} is not the hub "
            f"{hub.host_name!r}; use the endpoint setting to send requests elsewhere"
        )
    api_version = settings.get("api_version") or DEFAULT_API_VERSION
    if not _API_VERSION.fullmatch(api_version):
        raise invalid_setting(f"api_version {api_version[:32]!r} is not YYYY-MM-DD[-preview]")
    endpoint = settings.get("endpoint")
    base_url = _endpoint(endpoint) if endpoint else f"https://{credentials.host_name}"
    return RegistrySettings(credentials, base_url, api_version, settings.get("ca_file") or None)
