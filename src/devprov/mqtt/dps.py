"""DPS's device API over MQTT: the CONNECT user name, the two request topics and the answer
topic (docs/dps-wire.md#mqtt, docs/mqtt.md).

The same use cases as the HTTPS device API (``service.device.DeviceRegistration``) decide
everything; this module only reads DPS's MQTT framing and writes the same JSON bodies
(``service.device_answer``) on DPS's answer topics. CONNECT authenticates the device
(``DeviceRegistration.authenticate``): X.509 from the TLS client chain, a symmetric key from the
SAS token in the password. Each request then attests it again, as an HTTPS request would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl

from devprov.bootstrap import Container
from devprov.core.error import AuthenticationError, DevprovError, ErrorKind, MalformedRequestError
from devprov.core.registration_id import shown_id
from devprov.device_request import Device, DeviceRequests, shown
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
from devprov.service.attestation import Credentials
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream import Carrier, Peer, StreamOpener

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


def opener(container: Container, policy: ConnectionPolicy) -> StreamOpener:
    """The :data:`StreamOpener` of DPS's MQTT device endpoint."""

    def open_session(carrier: Carrier, peer: Peer) -> MqttSession:
        return MqttSession(carrier, peer, DpsApplication(container, peer), policy)

    return open_session


class DpsApplication:
    """One device's MQTT connection to DPS (session.Application)."""

    def __init__(self, container: Container, peer: Peer) -> None:
        self._requests = DeviceRequests(container, peer, protocol="mqtt", name="MQTT")
        self._device = Device("", "", Credentials())

    # --- CONNECT ------------------------------------------------------------------------------

    async def connect(self, packet: Connect, peer: Peer) -> int:
        origin = self._requests.origin(f"CONNECT {shown(packet.username or '')}")
        try:
            scope, registration_id = _read_username(packet)
            password = None
            if packet.password is not None:
                try:
                    password = packet.password.decode("utf-8")
                except UnicodeDecodeError:
                    raise MalformedRequestError("the password is not UTF-8") from None
        except DevprovError as exc:
            await self._requests.refused("connect", exc, origin, packet.client_id)
            return BAD_USERNAME_OR_PASSWORD
        if packet.client_id.lower() != registration_id.lower():
            error = MalformedRequestError(
                f"the client id {shown_id(packet.client_id)} is not the registration id "
                f"{shown_id(registration_id)} of the user name"
            )
            await self._requests.refused("connect", error, origin, registration_id)
            return IDENTIFIER_REJECTED
        device = Device(
            scope, registration_id, Credentials(chain_der=peer.chain_der, authorization=password)
        )
        try:
            await self._requests.authenticate(device, origin)
        except DevprovError as exc:  # logged and audited by now
            return _connack_code(exc)
        self._device = device
        return ACCEPTED

    def serves(self, topic_filter: str) -> bool:
        return topic_filter == RESPONSE_FILTER

    # --- requests -----------------------------------------------------------------------------

    async def publish(self, packet: Publish) -> Sequence[Answer]:
        topic = packet.topic
        request = f"PUBLISH {shown(topic)}"
        if topic.startswith(REGISTER_TOPIC):
            fields = _read_query(topic, REGISTER_TOPIC, {"$rid"})
            answer = await self._requests.register(self._device, packet.payload, request)
        elif topic.startswith(POLL_TOPIC):
            fields = _read_query(topic, POLL_TOPIC, {"$rid", "operationId"})
            answer = await self._requests.poll(self._device, fields["operationId"], request)
        else:
            raise ProtocolViolation(f"PUBLISH to {shown(topic)}, a topic DPS does not serve")
        topic = ANSWER_TOPIC.format(status=answer.status, rid=fields["$rid"])
        if answer.retry_after is not None:
            topic += f"&retry-after={answer.retry_after}"
        return [(topic, json.dumps(answer.body, separators=(",", ":")).encode())]


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
                f"PUBLISH to {shown(topic)}: its query must hold {', '.join(sorted(keys))} "
                "once each"
            )
        fields[key] = value
    if set(fields) != keys or not _REQUEST_ID.fullmatch(fields["$rid"]):
        raise ProtocolViolation(f"PUBLISH to {shown(topic)}: a request id DPS would not echo")
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
