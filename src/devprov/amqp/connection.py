"""One AMQP 1.0 connection, server side: protocol headers, SASL, open and close, sessions,
timers and limits, for an :class:`Application` that decides what links and messages mean (DPS,
``devprov.amqp.dps``). Sessions and links are ``devprov.amqp.session``'s.

It is a :class:`devprov.transport.stream.StreamSession`, so it runs over TLS (5671) and inside a
WebSocket alike. The rules, documented in docs/amqp-protocol.md#the-connection:

- A protocol header first: SASL's (then sasl-init, answered by sasl-outcome, then AMQP's) or
  AMQP's straight away (no SASL). Any other header is answered with ours and closed (section
  2.2). The open must arrive within ``policy.head_timeout`` of the connection.
- The open is answered with max-frame-size :data:`MAX_FRAME_SIZE` (or the client's, when
  smaller), channel-max :data:`CHANNEL_MAX` and idle-time-out ``policy.keep_alive_timeout``.
  A client silent that long is closed; the client's own idle-time-out is honoured with empty
  frames at half of it.
- Messages go to the application one at a time, in order; frames that arrive meanwhile wait,
  at most :data:`MAX_QUEUED_FRAMES` of them.
- A frame that breaks a rule closes the connection with close{error}: amqp:decode-error for
  malformed bytes, amqp:connection:framing-error for a frame over max-frame-size (decided from
  its header), amqp:not-allowed or amqp:invalid-field for a frame out of place.

The module runs a little past the usual 400 lines on purpose: it is one state machine (headers,
SASL, open, the frames of the opened connection, the application's work, timers, closing),
whose phases share the same few fields; sessions and links are already apart.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from enum import Enum

from devprov.amqp.application import (
    AmqpError,
    Application,
    LinkRequest,
    Message,
    Reject,
    Role,
    SaslIdentity,
)
from devprov.amqp.frames import (
    AMQP_FRAME,
    AMQP_HEADER,
    MIN_MAX_FRAME_SIZE,
    SASL_AUTH,
    SASL_FRAME,
    SASL_HEADER,
    SASL_OK,
    Attach,
    Begin,
    Close,
    End,
    Frame,
    FrameReader,
    FrameTooLarge,
    Open,
    Performative,
    Rejected,
    SaslFrame,
    SaslInit,
    SaslMechanisms,
    SaslOutcome,
    encode_frame,
)
from devprov.amqp.sasl import SaslRefused, authenticate, offered_mechanisms
from devprov.amqp.session import (
    DECODE_ERROR,
    INVALID_FIELD,
    NOT_ALLOWED,
    Delivery,
    Link,
    LinkState,
    ProtocolError,
    Session,
)
from devprov.amqp.types import MalformedFrame
from devprov.transport.policy import ConnectionPolicy
from devprov.transport.stream import Carrier, Peer, StreamOpener, StreamSession

logger = logging.getLogger("devprov.amqp")

# The largest frame devprov takes (its max-frame-size): a DPS message of 96 KiB arrives in two.
MAX_FRAME_SIZE = 65536

# The highest channel a client may begin a session on (8 sessions): a DPS client uses one.
CHANNEL_MAX = 7

# Frames a client may send while the application works on its previous request or attach,
# and their bytes. DPS's clients send one request and wait for its answer; a backlog past this
# is a client flooding one connection.
MAX_QUEUED_FRAMES = 64
MAX_QUEUED_BYTES = 2 * MAX_FRAME_SIZE

# Replies waiting for a client to give credit on its receiving link.
MAX_HELD_REPLIES = 16

# Empty frames are sent at half the client's idle-time-out, but not more often than this.
MIN_HEARTBEAT_SECONDS = 0.5

CONTAINER_ID = "devprov"
FRAMING_ERROR = "amqp:connection:framing-error"
RESOURCE_LIMIT_EXCEEDED = "amqp:resource-limit-exceeded"
INTERNAL_ERROR = "amqp:internal-error"
CONNECTION_FORCED = "amqp:connection:forced"


class _Phase(Enum):
    HEADER = "protocol header"
    SASL = "sasl-init"
    SASL_DONE = "AMQP header after SASL"
    OPEN = "open"
    OPENED = "opened"


class AmqpConnection:
    """An AMQP 1.0 server connection over one :class:`Carrier` (see the module docstring)."""

    def __init__(
        self, carrier: Carrier, peer: Peer, application: Application, policy: ConnectionPolicy
    ) -> None:
        self._carrier, self._peer, self._application = carrier, peer, application
        self._policy = policy
        self._loop = asyncio.get_running_loop()
        self._reader = FrameReader(MAX_FRAME_SIZE)
        self._phase = _Phase.HEADER
        self._sasl = SaslIdentity()
        self._offered = offered_mechanisms(client_certificate=bool(peer.chain_der))
        self._sessions: dict[int, Session] = {}  # by the client's channel
        self._queue: deque[Frame] = deque()
        self._queued_bytes = 0
        self._working: asyncio.Future[None] | None = None
        self._closed = self._stopping = self._open_sent = False
        self.max_frame_size = MIN_MAX_FRAME_SIZE  # the client's, once its open arrived
        self._heartbeat: float | None = None
        self._opened_by = self._loop.time() + policy.head_timeout
        self._last_heard = self._last_sent = self._loop.time()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(
            policy.head_timeout, self._check_time
        )
        carrier.idle()

    # --- StreamSession ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._last_heard = self._loop.time()
        self._reader.feed(data)
        while not self._closed:
            if self._phase in (_Phase.HEADER, _Phase.SASL_DONE):
                header = self._reader.protocol_header()
                if header is None:
                    return
                self._on_header(header)
                continue
            try:
                frame = self._reader.next_frame()
            except FrameTooLarge as exc:
                self._fail(FRAMING_ERROR, exc.reason)
                return
            except MalformedFrame as exc:
                self._fail(DECODE_ERROR, f"malformed frame: {exc.reason}")
                return
            if frame is None:
                return
            if frame.body is None and frame.type == AMQP_FRAME:
                continue  # an empty frame: a heartbeat (section 2.4.5)
            if self._working is None:
                self._handle(frame)
            elif not self._enqueue(frame):
                return

    def eof_received(self) -> None:
        self._finish("the client closed the connection")

    def connection_lost(self) -> None:
        self._closed = True
        self._cancel_timer()
        self._queue.clear()

    def shut_down(self) -> None:
        self._stopping = True
        if self._working is None:
            self._fail(CONNECTION_FORCED, "the server is stopping")

    # --- headers and SASL -------------------------------------------------------------------

    def _on_header(self, header: bytes) -> None:
        if self._phase is _Phase.HEADER and header == SASL_HEADER:
            self._carrier.send(SASL_HEADER)
            self._send_sasl(SaslMechanisms(sasl_server_mechanisms=self._offered))
            self._phase = _Phase.SASL
        elif header == AMQP_HEADER:
            self._carrier.send(AMQP_HEADER)
            self._phase = _Phase.OPEN
        else:
            # Section 2.2: answer with a header we support, then close.
            sasl = self._phase is _Phase.HEADER and header[:5] == b"AMQP\x03"
            self._carrier.send(SASL_HEADER if sasl else AMQP_HEADER)
            self._finish(f"protocol header {header!r} where {self._phase.value} was due")

    def _on_sasl(self, frame: Frame) -> None:
        if frame.type != SASL_FRAME or not isinstance(frame.body, SaslInit):
            self._finish(f"{_name(frame)} where sasl-init was due")
            return
        try:
            self._sasl = authenticate(frame.body, self._offered)
        except SaslRefused as exc:
            self._send_sasl(SaslOutcome(code=SASL_AUTH))
            self._finish(f"SASL refused: {exc.reason}")
            return
        self._send_sasl(SaslOutcome(code=SASL_OK))
        self._phase = _Phase.SASL_DONE

    # --- frames -----------------------------------------------------------------------------

    def _handle(self, frame: Frame) -> None:
        try:
            if self._phase is _Phase.SASL:
                self._on_sasl(frame)
            elif self._phase is _Phase.OPEN:
                self._on_open(frame)
            else:
                self._on_frame(frame)
        except ProtocolError as exc:
            self._fail(exc.error.condition, exc.error.description or "")

    def _on_open(self, frame: Frame) -> None:
        body = frame.body
        if frame.type != AMQP_FRAME or not isinstance(body, Open):
            raise ProtocolError(NOT_ALLOWED, f"{_name(frame)} before open")
        if body.max_frame_size < MIN_MAX_FRAME_SIZE:
            raise ProtocolError(INVALID_FIELD, f"max-frame-size {body.max_frame_size} < 512")
        self.max_frame_size = min(body.max_frame_size, MAX_FRAME_SIZE)
        self._reader.max_frame_size = self.max_frame_size
        self._channel_max = min(body.channel_max, CHANNEL_MAX)
        self._send_open()
        self._phase = _Phase.OPENED
        if body.idle_time_out:
            self._heartbeat = max(body.idle_time_out / 2000, MIN_HEARTBEAT_SECONDS)
        self._reschedule()

    def _on_frame(self, frame: Frame) -> None:
        body = frame.body
        if frame.type != AMQP_FRAME or body is None or isinstance(body, SaslFrame):
            raise ProtocolError(NOT_ALLOWED, "a SASL frame after SASL")
        if isinstance(body, Close):
            self._send(0, Close())
            self._finish("the client closed the connection")
        elif isinstance(body, Open):
            raise ProtocolError(NOT_ALLOWED, "a second open")
        elif isinstance(body, Begin):
            self._on_begin(frame.channel, body)
        else:
            session = self._sessions.get(frame.channel)
            if session is None:
                raise ProtocolError(NOT_ALLOWED, f"{body.NAME} on channel {frame.channel}")
            if isinstance(body, End):
                del self._sessions[frame.channel]
                session.end()
            else:
                session.on_frame(body, frame.payload)

    def _on_begin(self, channel: int, begin: Begin) -> None:
        if begin.remote_channel is not None:
            raise ProtocolError(NOT_ALLOWED, "a begin answering a begin the server never sent")
        if channel > CHANNEL_MAX or channel in self._sessions:
            raise ProtocolError(NOT_ALLOWED, f"channel {channel} is over channel-max or in use")
        used = {session.local_channel for session in self._sessions.values()}
        free = [c for c in range(self._channel_max + 1) if c not in used]
        if not free:
            raise ProtocolError(NOT_ALLOWED, "no channel left for another session")
        session = Session(self, free[0], begin)
        self._sessions[channel] = session
        self._send(session.local_channel, session.begin_answer(channel))

    # --- the application's work -------------------------------------------------------------

    def start_attach(
        self, session: Session, link: Link, attach: Attach, request: LinkRequest
    ) -> None:
        async def attach_link() -> None:
            error = await self._application.attach(self._sasl, request)
            if not self._closed:
                session.attached(link, attach, error)

        self._work(attach_link(), f"attach at {request.address!r}")

    def start_request(self, session: Session, link: Link, delivery: Delivery) -> None:
        async def answer() -> None:
            outcome = await self._application.request(self._sasl, link.address, delivery.message)
            if self._closed:
                return
            if isinstance(outcome, Reject):
                if not delivery.settled:
                    session.settle(delivery.delivery_id, Rejected(error=outcome.error))
                return
            session.accept(delivery)
            if outcome.message is not None:
                self._reply(session, link.address, outcome.message)

        self._work(answer(), f"request at {link.address!r}")

    def _work(self, coroutine: Coroutine[object, object, None], what: str) -> None:
        self._carrier.busy()
        self._working = asyncio.ensure_future(coroutine)
        self._working.add_done_callback(lambda task: self._worked(task, what))

    def _worked(self, task: asyncio.Future[None], what: str) -> None:
        self._working = None
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            logger.error("AMQP %s from %s failed", what, self._peer.address, exc_info=failure)
            self._fail(INTERNAL_ERROR, "internal error")
            return
        if self._closed:
            return
        self._carrier.idle()
        if self._stopping:
            self._fail(CONNECTION_FORCED, "the server is stopping")
            return
        while self._queue and self._working is None and not self._closed:
            frame = self._queue.popleft()
            self._queued_bytes -= len(frame.payload)
            self._handle(frame)

    def _reply(self, session: Session, address: str, message: Message) -> None:
        """Send ``message`` on the server's sending link at ``address`` (the client's receiving
        link), on the request's session first; dropped when there is none, as an MQTT answer
        nobody subscribed to is."""
        sessions = [session, *(s for s in self._sessions.values() if s is not session)]
        links = [
            (owner, link)
            for owner in sessions
            for link in owner.links.values()
            if link.role is Role.RECEIVER
            and link.state is LinkState.ATTACHED
            and link.address == address
        ]
        if not links:
            logger.debug("AMQP reply from %s dropped: no link at %r", self._peer.address, address)
            return
        held = sum(len(link.held) for owner in sessions for link in owner.links.values())
        if held >= MAX_HELD_REPLIES:
            self._fail(RESOURCE_LIMIT_EXCEEDED, f"more than {MAX_HELD_REPLIES} replies held")
            return
        owner, link = links[0]
        link.held.append(message)
        owner.flush(link)

    def _enqueue(self, frame: Frame) -> bool:
        self._queue.append(frame)
        self._queued_bytes += len(frame.payload)
        if len(self._queue) > MAX_QUEUED_FRAMES or self._queued_bytes > MAX_QUEUED_BYTES:
            self._fail(RESOURCE_LIMIT_EXCEEDED, "too many frames behind a request at work")
            return False
        return True

    # --- output, timers and closing --------------------------------------------------------

    def send(self, channel: int, body: Performative, payload: bytes = b"") -> None:
        self._send(channel, body, payload)

    def _send(self, channel: int, body: Performative, payload: bytes = b"") -> None:
        if not self._closed:
            self._last_sent = self._loop.time()
            self._carrier.send(encode_frame(Frame(AMQP_FRAME, channel, body, payload)))

    def _send_sasl(self, body: SaslFrame) -> None:
        if not self._closed:
            self._carrier.send(encode_frame(Frame(SASL_FRAME, 0, body)))

    def _send_open(self) -> None:
        self._open_sent = True
        idle_ms = int(self._policy.keep_alive_timeout * 1000)
        self._send(
            0,
            Open(
                container_id=CONTAINER_ID,
                max_frame_size=self._reader.max_frame_size,
                channel_max=CHANNEL_MAX,
                idle_time_out=idle_ms,
            ),
        )

    def _check_time(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._loop.time()
        if self._phase is not _Phase.OPENED:
            if now >= self._opened_by:
                self._fail(
                    RESOURCE_LIMIT_EXCEEDED, f"no open within {self._policy.head_timeout:g} s"
                )
                return
        elif now - self._last_heard >= self._policy.keep_alive_timeout:
            self._fail(RESOURCE_LIMIT_EXCEEDED, "idle timeout")
            return
        elif self._heartbeat is not None and now - self._last_sent >= self._heartbeat * 0.99:
            self._last_sent = now
            self._carrier.send(encode_frame(Frame(AMQP_FRAME, 0, None)))
        self._reschedule()

    def _reschedule(self) -> None:
        self._cancel_timer()
        if self._phase is not _Phase.OPENED:
            due = self._opened_by
        else:
            due = self._last_heard + self._policy.keep_alive_timeout
            if self._heartbeat is not None:
                due = min(due, self._last_sent + self._heartbeat)
        self._timer = self._loop.call_at(max(due, self._loop.time()), self._check_time)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, condition: str, description: str) -> None:
        """Close with an error: after the AMQP header, an open (when none was sent yet) and a
        close carrying it (section 2.4.1); before, just the connection."""
        if self._closed:
            return
        if self._phase in (_Phase.OPEN, _Phase.OPENED):
            if not self._open_sent:
                self._send_open()
            self._send(0, Close(error=AmqpError(condition, description)))
        self._finish(f"{condition}: {description}")

    def _finish(self, reason: str) -> None:
        # At DEBUG, as the MQTT session logs: a client's mistakes are not the operator's news,
        # and a hostile client must not fill the log.
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        self._queue.clear()
        logger.debug("AMQP connection from %s closed: %s", self._peer.address, reason)
        self._carrier.close()


def _name(frame: Frame) -> str:
    return "an empty frame" if frame.body is None else frame.body.NAME


def opener(
    make_application: Callable[[Peer], Application], policy: ConnectionPolicy
) -> StreamOpener:
    """The :data:`StreamOpener` of AMQP connections, each with its own application."""

    def open_connection(carrier: Carrier, peer: Peer) -> StreamSession:
        return AmqpConnection(carrier, peer, make_application(peer), policy)

    return open_connection


__all__ = ["CHANNEL_MAX", "MAX_FRAME_SIZE", "AmqpConnection", "opener"]
