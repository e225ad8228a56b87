"""DPS's device API over MQTT: the CONNECT user name, the two request topics and the answer
topic (docs/dps-wire.md#mqtt, docs/mqtt.md).

The same use cases as the HTTPS device API (``service.device.DeviceRegistration``) decide
everything; this module only reads DPS's MQTT framing and writes the same JSON bodies
(``service.device_answer``) on DPS's answer topics. CONNECT authenticates the device
(``DeviceRegistration.authenticate``): X.509 from the TLS client chain, a symmetric key from the
SAS token in the password. Each request then attests it again, as an HTTPS request would.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl

from devprov.bootstrap import Container
from devprov.core.error import (
    AuthenticationError,
    DevprovError,
    ErrorKind,
    MalformedRequestError,
    StorageOverloadedError,
)
from devprov.core.json_text import parse_json
from devprov.core.registration_id import shown_id
from devprov.mqtt.codec import (
    ACCEPTED,
    BAD_USERNAME_OR_PASSWORD,
    IDENTIFIER_REJECTED,
    NOT_AUTHORIZED,
    SERVER_UNAVAILABLE,
    Connect,
    Publish,
)
from devprov.mqtt.session import Answer, MqttSession, ProtocolViolation
from devprov.service import request_context
from devprov.service.attestation import Credentials
from devprov.service.device_answer import (
    RETRY_AFTER_SECONDS,
    assigning_body,
    device_message,
    error_body,
    operation_status_body,
    registration_payload,
    retry_after_of,
    status_of,
)
from devprov.service.device_pending import settle
from devprov.service.refusal_log import Origin, Refusal
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream import Carrier, Peer, StreamOpener

P = ParamSpec("P")
T = TypeVar("T")

RESPONSE_FILTER = "$dps/registrations/res/#"
REGISTER_TOPIC = "$dps/registrations/PUT/iotdps-register/?"
POLL_TOPIC = "$dps/registrations/GET/iotdps-get-operationstatus/?"
ANSWER_TOPIC = "$dps/registrations/res/{status}/?$rid={rid}"

# {idScope}/registrations/{registrationId}/{query}: the id scope and registration id are
# checked by the use case (an unknown scope, an id DPS would not accept), the query here.
_USERNAME = re.compile(r"(?P<scope>[^/]+)/registrations/(?P<rid>[^/]+)/(?P<query>.*)", re.DOTALL)
_USERNAME_KEYS = {"api-version", "ClientVersion"}

# A request id comes back in the answer topic, which Microsoft's Python SDK splits on "$", "&"
# and "=" (docs/sdk-clients.md#python-device-topics-and-payloads): it is echoed only when it is
# made of characters that survive that, as the SDKs' ids (uuid4, quoted; integers) are.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._~%-]{1,128}")

# The most of a topic or user name a log line shows.
_SHOWN = 200


def opener(container: Container, policy: ConnectionPolicy) -> StreamOpener:
    """The :data:`StreamOpener` of DPS's MQTT device endpoint."""

    def open_session(carrier: Carrier, peer: Peer) -> MqttSession:
        return MqttSession(carrier, peer, DpsApplication(container, peer), policy)

    return open_session


class DpsApplication:
    """One device's MQTT connection to DPS (session.Application)."""

    def __init__(self, container: Container, peer: Peer) -> None:
        self._c = container
        self._peer = peer
        self._scope = self._registration_id = ""
        self._credentials = Credentials()
        self._via = "MQTT over WebSocket" if peer.transport == "websocket" else "MQTT"

    # --- CONNECT ------------------------------------------------------------------------------

    async def connect(self, packet: Connect, peer: Peer) -> int:
        origin = self._origin(f"CONNECT {_shown(packet.username or '')}")
        try:
            scope, registration_id = _read_username(packet)
            password = None
            if packet.password is not None:
                try:
                    password = packet.password.decode("utf-8")
                except UnicodeDecodeError:
                    raise MalformedRequestError("the password is not UTF-8") from None
        except DevprovError as exc:
            await self._refused("connect", exc, origin, packet.client_id)
            return BAD_USERNAME_OR_PASSWORD
        if packet.client_id.lower() != registration_id.lower():
            error = MalformedRequestError(
                f"the client id {shown_id(packet.client_id)} is not the registration id "
                f"{shown_id(registration_id)} of the user name"
            )
            await self._refused("connect", error, origin, registration_id)
            return IDENTIFIER_REJECTED
        credentials = Credentials(chain_der=peer.chain_der, authorization=password)
        try:
            await self._c.storage.run(
                self._c.devices.authenticate, scope, registration_id, credentials, origin=origin
            )
        except StorageOverloadedError as exc:  # the use case never ran: not logged yet
            await self._refused("connect", exc, origin, registration_id)
            return _connack_code(exc)
        except DevprovError as exc:  # the use case has logged and audited it
            return _connack_code(exc)
        self._scope, self._registration_id, self._credentials = (
            scope,
            registration_id,
            credentials,
        )
        return ACCEPTED

    def serves(self, topic_filter: str) -> bool:
        return topic_filter == RESPONSE_FILTER

    # --- requests -----------------------------------------------------------------------------

    async def publish(self, packet: Publish) -> Sequence[Answer]:
        topic = packet.topic
        if topic.startswith(REGISTER_TOPIC):
            action, fields = "register", _read_query(topic, REGISTER_TOPIC, {"$rid"})
        elif topic.startswith(POLL_TOPIC):
            action, fields = (
                "operationStatus",
                _read_query(topic, POLL_TOPIC, {"$rid", "operationId"}),
            )
        else:
            raise ProtocolViolation(f"PUBLISH to {_shown(topic)}, a topic DPS does not serve")
        request_id = fields["$rid"]
        tracking_id = str(uuid.uuid4())
        # The log lines of this request name it (service.request_context).
        request_context.request_id.set(tracking_id)
        origin = self._origin(f"PUBLISH {_shown(topic)}", tracking_id)
        started = time.monotonic()
        try:
            if action == "register":
                status, body = await self._register(packet.payload, origin)
            else:
                status, body = await self._poll(fields["operationId"], origin)
        except (_Recorded, DevprovError) as caught:
            if isinstance(caught, _Recorded):
                error = caught.error
            else:  # refused here, or by the storage pool: not logged yet
                error = caught
                await self._refused(action, error, origin, self._registration_id)
            self._c.metrics.observe_request("mqtt", status_of(error), time.monotonic() - started)
            return [self._error(error, request_id, tracking_id)]
        self._c.metrics.observe_request("mqtt", status, time.monotonic() - started)
        retry = RETRY_AFTER_SECONDS if status == 202 else None
        return [(_answer_topic(status, request_id, retry), _json(body))]

    async def _register(self, payload: bytes, origin: Origin) -> tuple[int, dict[str, Any]]:
        body = parse_json(payload) if payload.strip() else None
        custom = registration_payload(body, self._registration_id)
        result = await self._use_case(
            self._c.devices.register,
            self._scope,
            self._registration_id,
            self._credentials,
            custom,
            origin=origin,
        )
        outcome = await settle(
            result,
            devices=self._c.devices,
            webhook=self._c.webhook,
            hubs=self._c.hub_identities,
            storage=self._c.storage.run,
            worker=asyncio.to_thread,
        )
        return 202, assigning_body(outcome.operation)

    async def _poll(self, operation_id: str, origin: Origin) -> tuple[int, dict[str, Any]]:
        outcome = await self._use_case(
            self._c.devices.operation_status,
            self._scope,
            self._registration_id,
            operation_id,
            self._credentials,
            origin=origin,
        )
        body = operation_status_body(outcome.operation, outcome.state)
        return (202 if outcome.operation.status == "assigning" else 200), body

    # --- helpers ------------------------------------------------------------------------------

    async def _use_case(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``call`` on a storage thread. What it refuses it has logged itself (_Recorded); the
        pool's own refusal (StorageOverloadedError) has not been: the use case never ran."""
        try:
            return await self._c.storage.run(call, *args, **kwargs)
        except StorageOverloadedError:
            raise
        except DevprovError as exc:
            raise _Recorded(exc) from exc

    def _error(self, error: DevprovError, request_id: str, tracking_id: str) -> Answer:
        body = error_body(error, tracking_id, datetime.now(UTC), message=device_message(error))
        return _answer_topic(status_of(error), request_id, retry_after_of(error)), _json(body)

    def _origin(self, request: str, tracking_id: str | None = None) -> Origin:
        context = self._via + (f", tracking {tracking_id}" if tracking_id else "")
        address = self._peer.address[0] if self._peer.address else None
        protocol = "mqtt-ws" if self._peer.transport == "websocket" else "mqtt"
        return Origin(address=address, request=request, context=context, protocol=protocol)

    async def _refused(
        self, action: str, error: DevprovError, origin: Origin, registration_id: str
    ) -> None:
        await self._c.refuse(
            Refusal(
                action=action,
                error=error,
                origin=origin,
                registration_id=registration_id or None,
                audited=isinstance(error, AuthenticationError),
            )
        )


class _Recorded(Exception):
    """A refusal the use case has logged (and audited) already; it is only answered."""

    def __init__(self, error: DevprovError) -> None:
        super().__init__(error.message)
        self.error = error


def _read_username(packet: Connect) -> tuple[str, str]:
    """The id scope and registration id of DPS's user name; raises MalformedRequestError."""
    username = packet.username
    if username is None:
        raise MalformedRequestError("CONNECT has no user name")
    match = _USERNAME.fullmatch(username)
    if match is None:
        raise MalformedRequestError(
            "the user name is not '{idScope}/registrations/{registrationId}/api-version=...'"
        )
    fields = _parse_pairs(match["query"], "the user name")
    unknown = sorted(set(fields) - _USERNAME_KEYS)
    if unknown:
        raise MalformedRequestError(f"the user name carries unknown fields: {', '.join(unknown)}")
    if not fields.get("api-version"):
        raise MalformedRequestError("the user name has no api-version")
    return match["scope"], match["rid"]


def _read_query(topic: str, prefix: str, keys: set[str]) -> dict[str, str]:
    """The fields of a request topic's query: exactly ``keys``, each once, the request id as
    sent (it is echoed), the others decoded."""
    raw = topic[len(prefix) :]
    pairs = [pair.partition("=") for pair in raw.split("&")]
    fields: dict[str, str] = {}
    for key, sign, value in pairs:
        if not sign or key in fields or key not in keys or not value:
            raise ProtocolViolation(
                f"PUBLISH to {_shown(topic)}: its query must hold {', '.join(sorted(keys))} "
                "once each"
            )
        fields[key] = value
    if set(fields) != keys or not _REQUEST_ID.fullmatch(fields["$rid"]):
        raise ProtocolViolation(f"PUBLISH to {_shown(topic)}: a request id DPS would not echo")
    if "operationId" in fields:
        fields["operationId"] = _parse_pairs(f"o={fields['operationId']}", "the topic")["o"]
    return fields


def _parse_pairs(query: str, where: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise MalformedRequestError(f"{where} has a malformed query") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise MalformedRequestError(f"{where} names {key} twice")
        fields[key] = value
    return fields


def _connack_code(error: DevprovError) -> int:
    """The CONNACK return code of a refused CONNECT (docs/mqtt.md#connect-return-codes)."""
    if isinstance(error, AuthenticationError):
        return NOT_AUTHORIZED
    if error.kind is ErrorKind.UNAVAILABLE:
        return SERVER_UNAVAILABLE
    return BAD_USERNAME_OR_PASSWORD


def _answer_topic(status: int, request_id: str, retry_after: int | None) -> str:
    topic = ANSWER_TOPIC.format(status=status, rid=request_id)
    return topic + (f"&retry-after={retry_after}" if retry_after is not None else "")


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}... ({len(text)} characters)"
