"""Refused requests, in the log and the audit trail, at a rate a flood cannot raise.

Every refusal of the device API, and every request to the service and management APIs that
fails authentication, comes here once, from whichever transport answered it. The limit is
:mod:`devprov.core.refusal_limit`'s: the first refusals of a key in each interval get their own
log line (and, for a device that failed attestation, their own audit row) with the precise
reason; the rest are counted, and one summary line and row per key and interval says how many
were left out (docs/operations.md#refusals-retention-and-the-audit-index).

Summaries are written when a later refusal finds the window over, when :meth:`RefusalLog.flush`
runs (the server calls it periodically), and at shutdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from devprov.core.error import DevprovError, InvalidInputError, NotFoundError
from devprov.core.refusal_limit import (
    RefusalKey,
    RefusalSummary,
    RefusalWindows,
    source_network,
)
from devprov.core.registration_id import shown_id, validate_registration_id
from devprov.service.model import AuditEvent, Outcome
from devprov.service.port import Clock, UnitOfWorkFactory

log = logging.getLogger("devprov.refusal")


@dataclass(frozen=True)
class Origin:
    """Where a request came from, as the transport that answered it saw it."""

    address: str | None = None  # the client's IP address
    request: str = ""  # what was asked, for the log: "PUT /0ne.../registrations/x/register"
    context: str = ""  # what else the log line carries: "api-version ..., tracking ..."
    read: bool = False  # a GET or HEAD: a NotFound there is no news, logged at DEBUG
    protocol: str = "https"  # what carried it: https, mqtt, mqtt-ws, amqp, amqp-ws (metrics)


@dataclass(frozen=True)
class Recorded:
    """What :meth:`RefusalLog.record` did: logged the refusal in full (or only counted it), and
    the audit rows still to write."""

    full: bool
    events: list[AuditEvent]


@dataclass(frozen=True)
class Refusal:
    """One refused request."""

    action: str  # register, operationStatus, statusLookup, serviceApi, managementApi
    error: DevprovError
    origin: Origin = Origin()
    service: str | None = None  # the provisioning service, when the request named one
    registration_id: str | None = None  # as the client sent it, valid or not
    audited: bool = False  # a device that failed attestation: the audit trail records it


def _valid_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_registration_id(value)
    except InvalidInputError:
        return None


class RefusalLog:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, windows: RefusalWindows) -> None:
        self._uow = uow
        self._clock = clock
        self._windows = windows
        self._lock = threading.Lock()  # the webhook's worker threads refuse too

    def refused(self, refusal: Refusal) -> bool:
        """Log (and audit) ``refusal``, or count it; True when it was recorded in full."""
        recorded = self.record(refusal)
        self.write(recorded.events)
        return recorded.full

    def record(self, refusal: Refusal) -> Recorded:
        """Log ``refusal`` or count it, and return the audit rows it calls for, unwritten.

        No storage here: an adapter on the event loop records at once and hands the rows, when
        there are any, to a storage thread (:meth:`write`)."""
        key = RefusalKey(
            service=refusal.service,
            action=refusal.action,
            code=refusal.error.code,
            network=source_network(refusal.origin.address),
            audited=refusal.audited and refusal.service is not None,
        )
        example = "-" if refusal.registration_id is None else shown_id(refusal.registration_id)
        now = self._clock()
        with self._lock:
            admission = self._windows.admit(key, example, now=now)
        events = self._summarise(admission.closed)
        if not admission.record:
            return Recorded(full=False, events=events)
        self._log(refusal)
        if key.audited and refusal.service is not None:
            valid = _valid_id(refusal.registration_id)
            actor = f"device:{valid if valid is not None else example}"
            if refusal.origin.address is not None:
                # The client's address: the socket's, or the one a trusted load balancer's PROXY
                # header named (docs/operations.md#the-proxy-protocol).
                actor += f" from {refusal.origin.address}"
            events.append(
                AuditEvent(
                    at=now,
                    service=refusal.service,
                    action=refusal.action,
                    outcome=Outcome.FAILED,
                    actor=actor,
                    reason=refusal.error.message,
                    error_code=refusal.error.code,
                    registration_id=valid,
                )
            )
        return Recorded(full=True, events=events)

    def flush(self, *, everything: bool = False) -> int:
        """Write the summaries of windows that are over (all of them with ``everything``, at
        shutdown); how many were written."""
        with self._lock:
            summaries = self._windows.close(now=self._clock(), everything=everything)
        self.write(self._summarise(summaries))
        return len(summaries)

    def _log(self, refusal: Refusal) -> None:
        """The refusal's one line: what was asked, the error code, the precise reason."""
        origin, error = refusal.origin, refusal.error
        level = logging.INFO
        if isinstance(error, NotFoundError) and origin.read:
            level = logging.DEBUG
        asked = origin.request or (
            f"{refusal.action} of {shown_id(refusal.registration_id)}"
            if refusal.registration_id is not None
            else refusal.action
        )
        parts = [f"from {origin.address}"] if origin.address is not None else []
        parts += [origin.context] if origin.context else []
        context = f" ({', '.join(parts)})" if parts else ""
        log.log(level, "%s -> %s %s%s", asked, error.code, error.message, context)

    def _summarise(
        self, summaries: list[RefusalSummary] | tuple[RefusalSummary, ...]
    ) -> list[AuditEvent]:
        """Log each summary; the audit rows of those that are audited."""
        events = []
        for summary in summaries:
            text = summary.describe()
            log.info("refusals of service '%s': %s", summary.key.service or "-", text)
            if summary.key.audited and summary.key.service is not None:
                events.append(
                    AuditEvent(
                        at=summary.end,
                        service=summary.key.service,
                        action=summary.key.action,
                        outcome=Outcome.FAILED,
                        actor=f"devices from {summary.key.network}",
                        reason=text,
                        error_code=summary.key.code,
                    )
                )
        return events

    def write(self, events: Sequence[AuditEvent]) -> None:
        """Write the audit rows of :meth:`record`, in one transaction. A refusal is answered
        whether or not its rows could be written: a database that cannot take them now is the
        log's news, not the client's."""
        if not events:
            return
        try:
            with self._uow() as uow:
                for event in events:
                    uow.audit.record(event)
                uow.commit()
        except DevprovError as exc:
            log.warning("the audit trail could not record a refusal: %s", exc.message)
