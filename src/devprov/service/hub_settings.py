"""The settings of a linked hub by kind: which keys each kind takes, their rules, and how they
are shown without their secrets (docs/hubs.md#hub-kinds).

The keys are fixed: the command line writes them, the hub adapters (devprov.hub) read them.
Secrets (a connection string's key, the broker admin's password) are kept with the hub like the
enrollments' keys, and never shown again: :func:`shown_settings` is what every command and page
prints.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from devprov.service.hub_identity import HubKind, InvalidHubSettingsError

# IoT Hub's registry api-version the adapter sends when a hub names none.
DEFAULT_API_VERSION = "2021-04-12"
# The topics a Mosquitto device may use, unless the hub names another pattern.
DEFAULT_TOPIC_PATTERN = "devices/{device_id}/#"

_REQUIRED: dict[HubKind, frozenset[str]] = {
    HubKind.NONE: frozenset(),
    HubKind.AZURE_IOTHUB: frozenset({"connection_string"}),
    HubKind.MOSQUITTO: frozenset({"broker", "tls"}),
}
_OPTIONAL: dict[HubKind, frozenset[str]] = {
    HubKind.NONE: frozenset(),
    HubKind.AZURE_IOTHUB: frozenset({"api_version", "ca_file", "endpoint"}),
    HubKind.MOSQUITTO: frozenset(
        {"ca_file", "username", "password", "topic_pattern", "device_listener"}
    ),
}
SECRET_KEYS = frozenset({"connection_string", "password"})

# HostName, SharedAccessKeyName and SharedAccessKey: a policy with registry write rights (IoT
# Hub's "registryReadWrite"); a device's connection string (DeviceId=...) cannot write the
# registry.
_CONNECTION_PARTS = ("HostName", "SharedAccessKeyName", "SharedAccessKey")
_API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(-preview)?")
_BROKER = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})")


def parse_kind(text: str) -> HubKind:
    try:
        return HubKind(text)
    except ValueError:
        kinds = ", ".join(k.value for k in HubKind)
        raise InvalidHubSettingsError(f"hub kind {text!r} is not one of {kinds}") from None


def parse_connection_string(text: str) -> dict[str, str]:
    """The parts of an IoT Hub connection string; raises InvalidHubSettingsError, never quoting
    the key."""
    parts: dict[str, str] = {}
    for item in text.strip().split(";"):
        name, sign, value = item.partition("=")
        if not item:
            continue
        if not sign or not value or name in parts:
            raise InvalidHubSettingsError(
                "connection_string is not 'HostName=...;SharedAccessKeyName=...;"
                "SharedAccessKey=...'"
            )
        parts[name] = value
    missing = [p for p in _CONNECTION_PARTS if p not in parts]
    if missing:
        raise InvalidHubSettingsError(f"connection_string has no {', '.join(missing)}")
    return parts


def validate_settings(kind: HubKind, host_name: str, settings: Mapping[str, str]) -> dict[str, str]:
    """The settings of a hub of ``kind`` named ``host_name``, checked key by key."""
    given = {k: v for k, v in settings.items()}
    unknown = sorted(set(given) - _REQUIRED[kind] - _OPTIONAL[kind])
    if unknown:
        raise InvalidHubSettingsError(
            f"a hub of kind {kind.value} takes no setting {', '.join(unknown)}"
        )
    missing = sorted(k for k in _REQUIRED[kind] if not given.get(k))
    if missing:
        raise InvalidHubSettingsError(
            f"a hub of kind {kind.value} needs the setting {', '.join(missing)}"
        )
    if kind is HubKind.AZURE_IOTHUB:
        _check_azure(host_name, given)
    elif kind is HubKind.MOSQUITTO:
        _check_mosquitto(given)
    return given


def _check_azure(host_name: str, settings: Mapping[str, str]) -> None:
    parts = parse_connection_string(settings["connection_string"])
    endpoint = settings.get("endpoint")
    if endpoint is not None:
        where = urlsplit(endpoint)
        if where.scheme != "https" or not where.hostname or where.path not in ("", "/"):
            raise InvalidHubSettingsError(f"endpoint {endpoint!r} is not https://host[:port]")
    elif parts["HostName"].lower() != host_name.lower():
        raise InvalidHubSettingsError(
            f"the connection string names HostName {parts['HostName']}, not the hub {host_name}"
        )
    version = settings.get("api_version")
    if version is not None and not _API_VERSION.fullmatch(version):
        raise InvalidHubSettingsError(f"api_version {version!r} is not YYYY-MM-DD[-preview]")


def _check_mosquitto(settings: Mapping[str, str]) -> None:
    broker = _BROKER.fullmatch(settings["broker"])
    if broker is None or not 0 < int(broker["port"]) < 65536:
        raise InvalidHubSettingsError(f"broker {settings['broker']!r} is not host:port")
    if settings["tls"] not in ("true", "false"):
        raise InvalidHubSettingsError("tls must be 'true' or 'false'")
    if ("username" in settings) != ("password" in settings):
        raise InvalidHubSettingsError("the broker's admin needs both a username and a password")
    pattern = settings.get("topic_pattern")
    if pattern is not None and "{device_id}" not in pattern:
        # Without the device id every device would reach the same topics.
        raise InvalidHubSettingsError("topic_pattern must contain {device_id}")


def shown_settings(kind: HubKind, settings: Mapping[str, str]) -> list[tuple[str, str]]:
    """What may be printed of a hub's settings: every key, each secret as "stored"."""
    shown: list[tuple[str, str]] = []
    for key in sorted(settings):
        label = key.replace("_", " ")
        if key == "connection_string":
            try:
                policy = parse_connection_string(settings[key])["SharedAccessKeyName"]
            except InvalidHubSettingsError:
                shown.append((label, "stored"))
            else:
                shown.append((label, f"stored (policy {policy})"))
        elif key in SECRET_KEYS:
            shown.append((label, "stored"))
        else:
            shown.append((label, settings[key]))
    if kind is HubKind.AZURE_IOTHUB and "api_version" not in settings:
        shown.append(("api version", f"{DEFAULT_API_VERSION} (default)"))
    if kind is HubKind.MOSQUITTO and "topic_pattern" not in settings:
        shown.append(("topic pattern", f"{DEFAULT_TOPIC_PATTERN} (default)"))
    return shown
