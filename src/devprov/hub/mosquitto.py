"""The ``mosquitto`` hub kind: a device's client and role in Mosquitto's dynamic-security plugin.

An assignment to a Mosquitto hub makes, over the plugin's control API (JSON commands published
to ``$CONTROL/dynamic-security/v1``, answers read on ``.../response``; the plugin's README in
Mosquitto's source):

- a role ``devprov-device-D`` whose ACLs allow publishClientSend, publishClientReceive,
  subscribePattern and unsubscribePattern on the hub's topic pattern with ``{device_id}``
  replaced by D (``devices/{device_id}/#`` by default): the literal topic, not the plugin's
  ``%c``/``%u`` substitutions, so the role says which device it is for;
- a client named D holding that role; a symmetric-key device's password is its primary key as
  base64, an X.509 device has none (it logs in with its certificate on a listener with
  ``use_identity_as_username``). docs/hubs-mosquitto.md#mosquitto has the broker configuration,
  the password rule, and what disable and delete do.

Each call opens one admin connection, sends its commands one at a time and waits for each
answer, within :data:`CONNECT_TIMEOUT` and :data:`COMMAND_TIMEOUT`: it runs on a worker thread
and must not hold it for longer.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devprov.core.error import InternalError
from devprov.hub.control import ControlSession
from devprov.service.hub_identity import (
    DeviceAuthKind,
    DeviceIdentity,
    HubConnection,
    HubKind,
    HubRefusedError,
    InvalidHubSettingsError,
)

# Bounds on one call (docs/hubs-mosquitto.md#timeouts): the TCP connection, the TLS handshake
# and the admin's CONNACK together; then each command's answer.
CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 10.0

DEFAULT_TOPIC_PATTERN = "devices/{device_id}/#"
ROLE_PREFIX = "devprov-device-"
# The ACL types a device's role allows on its own topics (the plugin's names).
DEVICE_ACL_TYPES = (
    "publishClientSend",
    "publishClientReceive",
    "subscribePattern",
    "unsubscribePattern",
)
# The plugin's answers that an idempotent call takes as "already so" (plugins/dynamic-security
# clients.c and roles.c of Mosquitto 2.0).
CLIENT_EXISTS = "Client already exists"
CLIENT_NOT_FOUND = "Client not found"
ROLE_EXISTS = "Role already exists"
ROLE_NOT_FOUND = "Role not found"
# What begins the textdescription of every client and role devprov makes: it changes and removes
# only those, so a device ID that names an operator's client (the admin's) cannot take it over.
MARK = "devprov registration"
# Characters a device ID may not hold when it names topics: MQTT's wildcards and level separator
# would widen the role to other devices' topics (MQTT 3.1.1 section 4.7), and NUL is not allowed
# in a topic at all.
TOPIC_UNSAFE = frozenset("+#/\0")


@dataclass(frozen=True)
class BrokerSettings:
    """A Mosquitto hub's settings (docs/hubs-mosquitto.md#settings), parsed."""

    host: str
    port: int
    tls: bool
    ca_file: str | None
    username: str
    password: str
    topic_pattern: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_settings(hub: HubConnection) -> BrokerSettings:
    """The settings of ``hub``, or :class:`InvalidHubSettingsError` naming what is wrong (never
    a secret's value)."""
    if hub.kind is not HubKind.MOSQUITTO:
        raise InvalidHubSettingsError(f"hub {hub.host_name} is of kind {hub.kind.value}")
    settings = hub.settings
    host, port = _parse_broker(hub.host_name, _required(hub, "broker"))
    tls = settings.get("tls", "")
    if tls not in ("true", "false"):
        raise InvalidHubSettingsError(f"hub {hub.host_name}: tls must be true or false")
    pattern = settings.get("topic_pattern") or DEFAULT_TOPIC_PATTERN
    if "{device_id}" not in pattern or pattern.replace("{device_id}", "").count("{"):
        raise InvalidHubSettingsError(
            f"hub {hub.host_name}: topic_pattern must hold {{device_id}} and no other field"
        )
    return BrokerSettings(
        host=host,
        port=port,
        tls=tls == "true",
        ca_file=settings.get("ca_file") or None,
        username=_required(hub, "username"),
        password=_required(hub, "password"),
        topic_pattern=pattern,
    )


def _required(hub: HubConnection, key: str) -> str:
    value = hub.settings.get(key, "")
    if not value:
        raise InvalidHubSettingsError(f"hub {hub.host_name}: setting {key} is missing")
    return value


def _parse_broker(hub_name: str, broker: str) -> tuple[str, int]:
    host, _, port = broker.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 address in brackets
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidHubSettingsError(f"hub {hub_name}: broker must be host:port, not {broker!r}")
    return host, int(port)


def device_topic(pattern: str, device_id: str) -> str:
    """The topic filter ``device_id``'s role allows: ``pattern`` with the ID in place.

    Raises :class:`HubRefusedError` for an ID that would widen the filter to other devices'
    topics (IoT Hub's device IDs may hold ``+`` and ``#``)."""
    unsafe = sorted(TOPIC_UNSAFE.intersection(device_id))
    if unsafe:
        raise HubRefusedError(
            f"device ID {device_id!r} holds {''.join(unsafe)!r}, which would widen its topics "
            f"to other devices' in MQTT: devprov did not ask the broker"
        )
    return pattern.replace("{device_id}", device_id)


def role_name(device_id: str) -> str:
    return ROLE_PREFIX + device_id


class MosquittoDynamicSecurity:
    """:class:`devprov.service.hub_identity.HubIdentities` over Mosquitto's dynamic-security
    plugin. Synchronous: run it on a worker thread."""

    def __init__(
        self, *, connect_timeout: float = CONNECT_TIMEOUT, command_timeout: float = COMMAND_TIMEOUT
    ) -> None:
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout

    def _session(self, hub: HubConnection, settings: BrokerSettings) -> ControlSession:
        return ControlSession(
            broker=f"{hub.host_name} ({settings.address})",
            host=settings.host,
            port=settings.port,
            tls=settings.tls,
            ca_file=settings.ca_file,
            username=settings.username,
            password=settings.password,
            connect_timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
        )

    def put(self, hub: HubConnection, identity: DeviceIdentity) -> str:
        settings = parse_settings(hub)
        device_id = identity.device_id
        topic = device_topic(settings.topic_pattern, device_id)
        role = role_name(device_id)
        mark = made_by_devprov(identity.registration_id)
        acls = [
            {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}
            for acltype in DEVICE_ACL_TYPES
        ]
        # A disabled identity holds no role: a device that logs in with its certificate is not
        # asked for a password, so only an empty role list keeps it off every topic
        # (docs/hubs-mosquitto.md#disable-and-delete).
        roles = [{"rolename": role, "priority": 0}] if identity.enabled else []
        with self._session(hub, settings) as session:
            create = {"command": "createRole", "rolename": role, "textdescription": mark}
            if _failed(session.run({**create, "acls": acls}, ROLE_EXISTS)):
                _check_ours(session, hub, "role", role)
                session.run({"command": "modifyRole", "rolename": role, "acls": acls})
            created = _put_client(session, hub, identity, roles)
            switch = "enableClient" if identity.enabled else "disableClient"
            session.run({"command": switch, "username": device_id})
        kind = identity.authentication.kind.value
        state = "" if identity.enabled else ", disabled"
        done = "created" if created else "updated"
        return (
            f"client {done} in {hub.host_name} with authentication {kind} (topics {topic}{state})"
        )

    def disable(self, hub: HubConnection, device_id: str) -> str:
        settings = parse_settings(hub)
        with self._session(hub, settings) as session:
            if not _check_ours(session, hub, "client", device_id):
                return f"client {device_id} not in {hub.host_name}: nothing to disable"
            session.run({"command": "disableClient", "username": device_id})
            session.run({"command": "modifyClient", "username": device_id, "roles": []})
        return f"client {device_id} disabled in {hub.host_name} (and its topics withdrawn)"

    def delete(self, hub: HubConnection, device_id: str) -> str:
        settings = parse_settings(hub)
        role = role_name(device_id)
        with self._session(hub, settings) as session:
            present = _check_ours(session, hub, "client", device_id)
            if present:
                session.run({"command": "deleteClient", "username": device_id}, CLIENT_NOT_FOUND)
            if _check_ours(session, hub, "role", role):
                session.run({"command": "deleteRole", "rolename": role}, ROLE_NOT_FOUND)
        if not present:
            return f"client {device_id} not in {hub.host_name}: nothing to delete"
        return f"client {device_id} deleted from {hub.host_name}"


def made_by_devprov(registration_id: str) -> str:
    """The ``textdescription`` devprov gives its clients and roles: what it will change."""
    return f"{MARK} {registration_id}"


def _failed(answer: Mapping[str, Any]) -> bool:
    return "error" in answer


def _check_ours(session: ControlSession, hub: HubConnection, what: str, name: str) -> bool:
    """Whether the client or role ``name`` exists; :class:`HubRefusedError` when it does and
    devprov did not make it (an operator's client, the admin itself: never to be changed)."""
    if what == "client":
        answer = session.run({"command": "getClient", "username": name}, CLIENT_NOT_FOUND)
    else:
        answer = session.run({"command": "getRole", "rolename": name}, ROLE_NOT_FOUND)
    if _failed(answer):
        return False
    data = answer.get("data")
    found = data.get(what) if isinstance(data, dict) else None
    description = found.get("textdescription") if isinstance(found, dict) else None
    if not isinstance(description, str) or not description.startswith(MARK + " "):
        raise HubRefusedError(
            f"{what} {name} exists in {hub.host_name} and devprov did not make it: left as it is"
        )
    return True


def _put_client(
    session: ControlSession,
    hub: HubConnection,
    identity: DeviceIdentity,
    roles: list[dict[str, Any]],
) -> bool:
    """Create the client, or bring the existing one to ``identity``; True when created."""
    device_id = identity.device_id
    password = _password(identity)
    command: dict[str, Any] = {
        "command": "createClient",
        "username": device_id,
        "textdescription": made_by_devprov(identity.registration_id),
        "roles": roles,
    }
    if password is not None:
        command["password"] = password
    if not _failed(session.run(command, CLIENT_EXISTS)):
        return True
    _check_ours(session, hub, "client", device_id)
    # The plugin's modifyClient cannot unset a password (an empty one is ignored), so an existing
    # client that now logs in with its certificate gets one that nobody is given.
    command["command"] = "modifyClient"
    command["password"] = password if password is not None else secrets.token_urlsafe(32)
    session.run(command)
    return False


def _password(identity: DeviceIdentity) -> str | None:
    """The password rule (docs/hubs-mosquitto.md#passwords): a symmetric-key device's primary
    key as base64, the key it derives its SAS tokens from; none for an X.509 device."""
    authentication = identity.authentication
    if authentication.kind is not DeviceAuthKind.SAS:
        return None
    if not authentication.primary_key:
        raise InternalError(
            f"device {identity.device_id} authenticates with symmetric keys but has no primary key"
        )
    return authentication.primary_key
