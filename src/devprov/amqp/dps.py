"""DPS's device API over AMQP 1.0: the link address, the SASL identity, the two request messages
and their answers (docs/amqp.md).

The AMQP engine (``devprov.amqp.connection``) owns the protocol and asks this module two things
(``devprov.amqp.application``): may a link attach at an address, and what answers a message. The
same use cases as HTTPS and MQTT decide (``devprov.device_request``); this module reads DPS's
AMQP framing and writes the same JSON bodies in DPS's reply messages.

The first link attached at ``{idScope}/registrations/{registrationId}`` authenticates the device
(``DeviceRegistration.authenticate``), as MQTT's CONNECT does: X.509 from the TLS client chain, a
symmetric key from the SAS token in the SASL PLAIN password. A refusal refuses the attach with
DPS's error body as the AMQP error's description (docs/amqp.md#refusals). Each request then
attests the device again, as an HTTPS request would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from devprov.amqp.application import (
    AmqpError,
    LinkRequest,
    Message,
    Reject,
    Reply,
    SaslIdentity,
    Scalar,
)
from devprov.amqp.connection import opener as engine_opener
from devprov.bootstrap import Container
from devprov.core.error import (
    AuthenticationError,
    MalformedRequestError,
    NotFoundError,
    StorageOverloadedError,
)
from devprov.core.registration_id import shown_id
from devprov.device_request import Device, DeviceAnswer, DeviceRequests, shown
from devprov.service.attestation import Credentials
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream import Peer, StreamOpener

# The application properties of DPS's messages (docs/amqp.md#messages).
OPERATION_TYPE = "iotdps-operation-type"
OPERATION_ID = "iotdps-operation-id"
FORCE_REGISTRATION = "iotdps-forceRegistration"
STATUS = "iotdps-status"
RETRY_AFTER = "retry-after"
REGISTER = "iotdps-register"
OPERATION_STATUS = "iotdps-get-operationstatus"

# The AMQP error conditions of DPS's answers, by status (docs/amqp.md#refusals): the ones
# Microsoft's Node SDK translates (azure-iot-amqp-base, amqp_common_errors.js), so that a device
# sees the error DPS's HTTPS status would have told it. 5xx are amqp:internal-error, which the
# SDK retries after the info's retry-after, as it does com.microsoft:device-container-throttled.
UNAUTHORIZED = "amqp:unauthorized-access"
NOT_FOUND = "amqp:not-found"
ARGUMENT_ERROR = "com.microsoft:argument-error"
THROTTLED = "com.microsoft:device-container-throttled"
INTERNAL_ERROR = "amqp:internal-error"
CONDITIONS: Mapping[int, str] = {
    400: ARGUMENT_ERROR,
    401: UNAUTHORIZED,
    403: UNAUTHORIZED,
    404: NOT_FOUND,
    409: "amqp:not-allowed",
    412: "com.microsoft:precondition-failed",
    413: "amqp:link:message-size-exceeded",
    429: THROTTLED,
}

# {idScope}/registrations/{registrationId}, as Node's and .NET's SDKs name it; Microsoft's C SDK
# puts amqps://{host}/ before it (prov_transport_amqp_common.c, AMQP_ADDRESS_FMT). The id scope
# and registration id are checked by the use case, as MQTT's user name's are.
_ADDRESS = re.compile(
    r"(?:amqps?://[^/]+/)?(?P<name>(?P<scope>[^/]+)/registrations/(?P<rid>[^/]+))"
)


class AmqpAddressNotFoundError(NotFoundError):
    """An AMQP link's address is not ``{idScope}/registrations/{registrationId}``."""

    code = "AmqpAddressNotFound"
    number = 404460


class AmqpIdentityMismatchError(AuthenticationError):
    """An AMQP link's address names another device than the SASL PLAIN user name did."""

    code = "AmqpIdentityMismatch"
    number = 401460


class AmqpUnknownOperationError(MalformedRequestError):
    """An AMQP message that is neither DPS's register nor its operation status request, or that
    names another address than its link's."""

    code = "AmqpUnknownOperation"
    number = 400460


def opener(container: Container, policy: ConnectionPolicy) -> StreamOpener:
    """The :data:`StreamOpener` of DPS's AMQP device endpoint (5671, and AMQPWSB10 on the
    HTTPS port's WebSocket path)."""
    return engine_opener(lambda peer: DpsApplication(container, peer), policy)


class DpsApplication:
    """One device's AMQP connection to DPS (``devprov.amqp.application.Application``)."""

    def __init__(self, container: Container, peer: Peer) -> None:
        self._requests = DeviceRequests(container, peer, protocol="amqp", name="AMQP")
        self._peer = peer
        # The devices of this connection, by the address their links attached at.
        self._devices: dict[str, Device] = {}

    # --- attach -------------------------------------------------------------------------------

    async def attach(self, sasl: SaslIdentity, link: LinkRequest) -> AmqpError | None:
        if link.address in self._devices:
            return None
        request = f"ATTACH {shown(link.address)}"
        match = _ADDRESS.fullmatch(link.address)
        if match is None:
            error = AmqpAddressNotFoundError(
                "DPS serves AMQP links at '{idScope}/registrations/{registrationId}' only"
            )
            return amqp_error(await self._requests.refusal("connect", error, request, ""))
        scope, registration_id = match["scope"], match["rid"]
        if sasl.mechanism == "PLAIN" and sasl.username != match["name"]:
            mismatch = AmqpIdentityMismatchError(
                f"the link's address names {shown_id(registration_id)}, the SASL user name "
                f"{shown(sasl.username or '')}"
            )
            answer = await self._requests.refusal("connect", mismatch, request, registration_id)
            return amqp_error(answer)
        # The credentials are attested by each request, as over HTTPS, not here: a refused
        # attach leaves Node's AMQP transport waiting for ever (its link state machine takes the
        # attach answer as opened, then loses the detach's error), while a rejected request
        # fails its registration at once with the error (docs/amqp.md#when-a-device-is-refused).
        password = sasl.password if sasl.mechanism == "PLAIN" else None
        credentials = Credentials(chain_der=self._peer.chain_der, authorization=password)
        self._devices[link.address] = Device(scope, registration_id, credentials)
        return None

    # --- requests -----------------------------------------------------------------------------

    async def request(self, sasl: SaslIdentity, address: str, message: Message) -> Reply | Reject:
        properties = message.application_properties
        operation = properties.get(OPERATION_TYPE)
        named = operation if isinstance(operation, str) else "(no operation type)"
        request = f"TRANSFER {shown(named)} to {shown(address)}"
        device = self._devices.get(address)
        if device is None or not _same_address(message.to, address):
            error = AmqpUnknownOperationError(
                "a message must go to the address of the link it is sent on"
            )
            registration_id = device.registration_id if device else ""
            return _reject(await self._requests.refusal("request", error, request, registration_id))
        if operation == REGISTER:
            force = _is_true(properties.get(FORCE_REGISTRATION))
            answer = await self._requests.register(device, message.body, request, force=force)
        elif operation == OPERATION_STATUS:
            operation_id = properties.get(OPERATION_ID)
            if isinstance(operation_id, str) and operation_id:
                answer = await self._requests.poll(device, operation_id, request)
            else:
                missing = MalformedRequestError(f"{OPERATION_ID} must name the operation to poll")
                answer = await self._requests.refusal(
                    "operationStatus", missing, request, device.registration_id
                )
        else:
            unknown = AmqpUnknownOperationError(
                f"{OPERATION_TYPE} must be {REGISTER} or {OPERATION_STATUS}"
            )
            answer = await self._requests.refusal(
                "request", unknown, request, device.registration_id
            )
        if answer.error is not None:
            return _reject(answer)
        return Reply(reply_message(answer, message.correlation_id))


def reply_message(answer: DeviceAnswer, correlation_id: Scalar) -> Message:
    """DPS's reply (docs/amqp.md#answers): the same JSON as HTTPS and MQTT, the request's
    correlation id, the operation's status and id, and the poll delay of a 202."""
    properties: dict[str, Scalar] = {}
    for name, key in ((STATUS, "status"), (OPERATION_ID, "operationId")):
        value = answer.body.get(key)
        if isinstance(value, str):
            properties[name] = value
    if answer.retry_after is not None:
        properties[RETRY_AFTER] = str(answer.retry_after)
    return Message(
        body=_json(answer.body),
        application_properties=properties,
        correlation_id=correlation_id,
        content_type="application/json",
    )


def amqp_error(answer: DeviceAnswer) -> AmqpError:
    """The AMQP error of a refusal (docs/amqp.md#refusals): the status's condition, DPS's error
    body as the description, and the retry delay, when the refusal has one, in the info."""
    if isinstance(answer.error, StorageOverloadedError):
        condition = THROTTLED  # devprov sheds load: the SDKs retry
    elif answer.status >= 500:  # the server's errors: the SDKs retry them
        condition = INTERNAL_ERROR
    else:
        condition = CONDITIONS.get(answer.status, ARGUMENT_ERROR)
    info: dict[str, Scalar] = {}
    if answer.retry_after is not None:
        info[RETRY_AFTER] = str(answer.retry_after)
    return AmqpError(condition, _json(answer.body).decode("utf-8"), info)


def _reject(answer: DeviceAnswer) -> Reject:
    return Reject(amqp_error(answer))


def _same_address(to: str | None, address: str) -> bool:
    """True when a message names no address (the SDKs send none) or its link's device."""
    if to is None or to == address:
        return True
    named, link = _ADDRESS.fullmatch(to), _ADDRESS.fullmatch(address)
    return named is not None and link is not None and named["name"] == link["name"]


def _is_true(value: Scalar) -> bool:
    """iotdps-forceRegistration: a boolean from the SDKs; the text "true" is taken too."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _json(body: Mapping[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
