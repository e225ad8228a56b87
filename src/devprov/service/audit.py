"""Reading the audit log: every state change and every refused proof, newest last."""

from __future__ import annotations

from devprov.service.model import AuditEvent
from devprov.service.port import UnitOfWorkFactory

# The most events one read returns; the log itself keeps everything.
MAX_EVENTS_PER_READ = 10_000


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
