"""A device's requests to DPS as every session transport runs them (MQTT, AMQP): authenticate the
connection, register, poll, and answer a refusal, whatever frames the request and its answer.

The HTTPS device API (``http.device_api``) and the session transports ask the same use cases
(``service.device.DeviceRegistration``) and answer the same JSON (``service.device_answer``).
A session transport reads its framing (a topic, an AMQP message's properties), hands the request
to a :class:`DeviceRequests`, and frames the :class:`DeviceAnswer` it gets back (an answer topic,
an AMQP reply or rejection). What lives here is what each of them would otherwise write again:
running a use case on the storage executor, keeping apart the refusals the use case has logged
from those it has not, settling a registration that waits on a webhook or a hub, the tracking
id, the origin the log and the audit trail name, and the request metrics. The HTTPS device API
runs its use cases with :func:`run_use_case` too.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from devprov.bootstrap import Container
from devprov.core.error import AuthenticationError, DevprovError, StorageOverloadedError
from devprov.core.json_text import parse_json
from devprov.service import request_context
from devprov.service.attestation import Credentials
from devprov.service.device_answer import (
    RETRY_AFTER_SECONDS,
    device_message,
    error_body,
    operation_status_body,
    register_answer,
    registration_request,
    retry_after_of,
    status_of,
)
from devprov.service.refusal_log import Origin, Refusal
from devprov.transport.stream import Peer

P = ParamSpec("P")
T = TypeVar("T")

# What a request's work returns: DPS's status and JSON body.
Outcome = tuple[int, dict[str, Any]]

# The most of a topic, a user name or an address a log line shows.
SHOWN_CHARACTERS = 200


@dataclass(frozen=True)
class Device:
    """Who a session speaks for, once authenticated: the id scope and registration id it named,
    and the credentials each request attests again (the TLS client chain, a SAS token)."""

    scope: str
    registration_id: str
    credentials: Credentials


@dataclass(frozen=True)
class DeviceAnswer:
    """The answer to one request, before a transport frames it: DPS's status, the JSON body
    (RegistrationOperationStatus, or DPS's error body), the poll delay a 202 suggests or the
    retry delay of a 503, the tracking id, and the refusal when it is one."""

    status: int
    body: dict[str, Any]
    retry_after: int | None
    tracking_id: str
    error: DevprovError | None = None


class DeviceRequests:
    """One device connection's requests, whichever session transport carries them."""

    def __init__(self, container: Container, peer: Peer, *, protocol: str, name: str) -> None:
        """``protocol`` names the transport in the origin and the metrics (``mqtt``, ``amqp``;
        ``mqtt-ws``, ``amqp-ws`` for a session inside a WebSocket), ``name`` in log lines
        ("MQTT", "AMQP over WebSocket")."""
        self._c = container
        self._address = peer.address[0] if peer.address else None
        websocket = peer.transport == "websocket"
        self._api = protocol
        self._protocol = f"{protocol}-ws" if websocket else protocol
        self._context = f"{name} over WebSocket" if websocket else name

    # --- the connection -----------------------------------------------------------------------

    def origin(self, request: str, tracking_id: str | None = None) -> Origin:
        """Where a request came from, for the log and the audit trail."""
        context = self._context + (f", tracking {tracking_id}" if tracking_id else "")
        return Origin(
            address=self._address, request=request, context=context, protocol=self._protocol
        )

    async def authenticate(self, device: Device, origin: Origin) -> None:
        """Attest ``device`` as a session opens (``DeviceRegistration.authenticate``); raises
        the refusal, logged and audited by then."""
        try:
            await self._c.storage.run(
                self._c.devices.authenticate,
                device.scope,
                device.registration_id,
                device.credentials,
                origin=origin,
            )
        except StorageOverloadedError as exc:  # the use case never ran: not logged yet
            await self.refused("connect", exc, origin, device.registration_id)
            raise

    async def refused(
        self, action: str, error: DevprovError, origin: Origin, registration_id: str
    ) -> None:
        """Log (and for a failed authentication, audit) a refusal the transport decided, or
        that the storage pool made before the use case ran (service.refusal_log)."""
        await self._c.refuse(
            Refusal(
                action=action,
                error=error,
                origin=origin,
                registration_id=registration_id or None,
                audited=isinstance(error, AuthenticationError),
            )
        )

    # --- requests -----------------------------------------------------------------------------

    async def register(
        self, device: Device, body: bytes, request: str, *, force: bool = False
    ) -> DeviceAnswer:
        """A DeviceRegistration body (JSON, or empty): the decided operation status at once, or
        202 and the operation to poll (service.device_answer.register_answer)."""

        async def work(origin: Origin) -> Outcome:
            document = parse_json(body) if body.strip() else None
            asked = registration_request(document, device.registration_id)
            result = await self._use_case(
                self._c.devices.register,
                device.scope,
                device.registration_id,
                device.credentials,
                asked.payload,
                force=force,
                origin=origin,
                csr=asked.csr,
            )
            outcome = await self._c.decide(result, worker=asyncio.to_thread)
            return register_answer(
                outcome.operation,
                outcome.state,
                always_poll=self._c.always_poll,
                chain=outcome.issued_chain,
            )

        return await self.answer("register", request, device.registration_id, work)

    async def poll(self, device: Device, operation_id: str, request: str) -> DeviceAnswer:
        """An operation's status: 202 while it is assigning, else 200 and the outcome."""

        async def work(origin: Origin) -> Outcome:
            outcome = await self._use_case(
                self._c.devices.operation_status,
                device.scope,
                device.registration_id,
                operation_id,
                device.credentials,
                origin=origin,
            )
            body = operation_status_body(outcome.operation, outcome.state, outcome.issued_chain)
            return (202 if outcome.operation.status == "assigning" else 200), body

        return await self.answer("operationStatus", request, device.registration_id, work)

    async def refusal(
        self, action: str, error: DevprovError, request: str, registration_id: str
    ) -> DeviceAnswer:
        """The answer to a request the transport refuses itself (an unknown operation); a
        ``connect`` refusal (an AMQP attach) is not a metered request: the request-duration
        metric counts what a device asks, not its sessions."""

        async def work(origin: Origin) -> Outcome:
            raise error

        metered = action != "connect"
        return await self.answer(action, request, registration_id, work, metered=metered)

    async def answer(
        self,
        action: str,
        request: str,
        registration_id: str,
        work: Callable[[Origin], Awaitable[Outcome]],
        *,
        metered: bool = True,
    ) -> DeviceAnswer:
        """Run ``work`` as one request: a tracking id its log lines name, its origin, its
        duration in the metrics (when ``metered``); a refusal becomes DPS's error body, logged
        once."""
        tracking_id = str(uuid.uuid4())
        # The log lines of this request name it (service.request_context).
        request_context.request_id.set(tracking_id)
        origin = self.origin(request, tracking_id)
        started = time.monotonic()
        try:
            status, body = await work(origin)
        except (Recorded, DevprovError) as caught:
            if isinstance(caught, Recorded):
                error = caught.error
            else:  # refused here, or by the storage pool: not logged yet
                error = caught
                await self.refused(action, error, origin, registration_id)
            if metered:
                self._observe(status_of(error), started)
            message = device_message(error)
            return DeviceAnswer(
                status=status_of(error),
                body=error_body(error, tracking_id, datetime.now(UTC), message=message),
                retry_after=retry_after_of(error),
                tracking_id=tracking_id,
                error=error,
            )
        if metered:
            self._observe(status, started)
        retry = RETRY_AFTER_SECONDS if status == 202 else None
        return DeviceAnswer(status, body, retry, tracking_id)

    # --- helpers ------------------------------------------------------------------------------

    def _observe(self, status: int, started: float) -> None:
        self._c.metrics.observe_request(self._api, status, time.monotonic() - started)

    async def _use_case(self, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_use_case(self._c, call, *args, **kwargs)


class Recorded(Exception):
    """A refusal the use case has logged (and audited) already; it is only answered."""

    def __init__(self, error: DevprovError) -> None:
        super().__init__(error.message)
        self.error = error


async def run_use_case(
    c: Container, call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """``call`` on a storage thread. What it refuses it has logged itself (:class:`Recorded`);
    the pool's own refusal (StorageOverloadedError) has not been: the use case never ran."""
    try:
        return await c.storage.run(call, *args, **kwargs)
    except StorageOverloadedError:
        raise
    except DevprovError as exc:
        raise Recorded(exc) from exc


def shown(text: str) -> str:
    """``text`` for a log line: whole, or its first :data:`SHOWN_CHARACTERS` and its length."""
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return f"{text[:SHOWN_CHARACTERS]}... ({len(text)} characters)"
