"""Reading the audit log: every state change and every refused proof, newest last (``events``,
for the CLI), or newest first one page at a time with filters (``page``, for the portal)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

from devprov.core.error import MalformedRequestError, ServiceNotFoundError
from devprov.service.model import AuditEvent, AuditFilter, AuditPosition
from devprov.service.port import UnitOfWorkFactory

# The most events one read returns; the log itself keeps everything.
MAX_EVENTS_PER_READ = 10_000

# A page of the newest-first read: enough to scan by eye, small enough to render at once.
DEFAULT_AUDIT_PAGE = 50
MAX_AUDIT_PAGE = 500


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEvent]
    older: str | None  # the cursor of the next (older) page; None at the oldest event


def encode_position(position: AuditPosition) -> str:
    text = f"{position.at.isoformat()}|{position.id}"
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii")


def decode_position(cursor: str | None) -> AuditPosition | None:
    """The position an ``older`` cursor names; a cursor this server did not issue is refused."""
    if not cursor:
        return None
    try:
        text = base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True).decode()
        at_text, id_text = text.split("|")
        at = datetime.fromisoformat(at_text)
        position = AuditPosition(at, int(id_text))
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise MalformedRequestError("the audit cursor is not one this server issued") from exc
    if at.tzinfo is None:
        raise MalformedRequestError("the audit cursor is not one this server issued")
    return position


class AuditTrail:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    def events(
        self,
        *,
        service: str | None = None,
        certificate: str | None = None,
        registration_id: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        with self._uow(read_only=True) as uow:
            return uow.audit.query(
                service=service,
                certificate=certificate,
                registration_id=registration_id,
                limit=max(1, min(limit, MAX_EVENTS_PER_READ)),
            )

    def page(
        self, which: AuditFilter, *, older: str | None = None, limit: int = DEFAULT_AUDIT_PAGE
    ) -> AuditPage:
        """Matching events, newest first, ``limit`` at most; ``older`` is the cursor a previous
        page returned. The cursor is the last event's (time, id), so paging never uses OFFSET
        and new events do not shift the pages already read."""
        size = max(1, min(limit, MAX_AUDIT_PAGE))
        before = decode_position(older)
        with self._uow(read_only=True) as uow:
            if which.service is not None and uow.services.get(which.service) is None:
                raise ServiceNotFoundError(f"provisioning service '{which.service}' does not exist")
            items = uow.audit.page(which, before=before, limit=size + 1)
        more = len(items) > size
        items = items[:size]
        last = items[-1] if items else None
        cursor = None
        if more and last is not None and last.id is not None:
            cursor = encode_position(AuditPosition(last.at, last.id))
        return AuditPage(items, cursor)
