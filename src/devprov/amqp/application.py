"""The seam between the AMQP 1.0 connection engine (``devprov.amqp.connection``) and what the
messages mean (DPS, ``devprov.amqp.dps``).

The engine owns the protocol: headers, SASL, frames, sessions, links, flow, settlement, timers
and limits. It knows nothing of DPS. It asks the :class:`Application` two questions: may a link
be attached at this address (:meth:`Application.attach`), and what is the answer to a message
received on a link (:meth:`Application.request`). Nothing here does I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

# A value of a message's application-properties map, or of a correlation id / message id: the
# AMQP types DPS's clients use, as Python values (AMQP string, symbol -> str; boolean -> bool;
# integer types -> int; binary -> bytes; uuid -> uuid.UUID; null -> None).
Scalar = str | bool | int | bytes | uuid.UUID | None


class Role(Enum):
    """The role of the *client's* end of a link (AMQP's attach ``role`` field as the client sent
    it): a client SENDER sends requests to the server; a client RECEIVER gets the answers."""

    SENDER = False
    RECEIVER = True


@dataclass(frozen=True)
class SaslIdentity:
    """What the SASL layer established, before any AMQP frame. ``mechanism`` is None when the
    client skipped SASL (sent the AMQP protocol header straight away, as Node's rhea does for an
    X.509 device), else "PLAIN", "EXTERNAL" or "ANONYMOUS". For PLAIN, ``username`` is the
    authentication id and ``password`` the password (UTF-8 text); ``hostname`` is sasl-init's."""

    mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    hostname: str | None = None


@dataclass(frozen=True)
class LinkRequest:
    """A client's attach: the address (its target when it sends, its source when it receives),
    its role, its name and its attach properties (symbol keys as str)."""

    address: str
    role: Role
    name: str
    properties: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class AmqpError:
    """An AMQP error (section 2.8.14 of the AMQP 1.0 specification): ``condition`` is a symbol
    such as "amqp:unauthorized-access", ``description`` a text, ``info`` a map of symbol keys."""

    condition: str
    description: str | None = None
    info: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    """The parts of an AMQP message DPS uses. ``body`` is the concatenation of the message's
    data sections (an amqp-value body of a string or binary is taken as its bytes, UTF-8 for a
    string; an empty body is b""). Properties the message did not carry are None."""

    body: bytes = b""
    application_properties: Mapping[str, Scalar] = field(default_factory=dict)
    message_id: Scalar = None
    correlation_id: Scalar = None
    to: str | None = None
    reply_to: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Reply:
    """What the engine does with a received message: settle it ``accepted`` and send
    ``message`` (when not None) on the server's sending link attached at the same address (the
    client's receiving link), in one data section, as soon as that link has credit."""

    message: Message | None


@dataclass(frozen=True)
class Reject:
    """Settle the received message ``rejected`` with ``error`` (AMQP's rejected outcome); no
    message is sent."""

    error: AmqpError


class Application(Protocol):
    """What one AMQP connection's links and messages mean. One per connection, made by the
    engine's opener with the connection's ``devprov.transport.stream.Peer`` (TLS client chain, address)."""

    def attach(self, sasl: SaslIdentity, link: LinkRequest) -> Awaitable[AmqpError | None]:
        """None lets the link attach; an error refuses it: the engine answers the attach with a
        null source/target, then a detach (closed) carrying the error (AMQP 1.0 section
        2.6.3). Frames that arrive meanwhile wait, in order."""

    def request(
        self, sasl: SaslIdentity, address: str, message: Message
    ) -> Awaitable[Reply | Reject]:
        """A message the client sent on its link attached at ``address``; handled one at a time
        per connection, in order of arrival."""
