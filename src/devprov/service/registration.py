"""Registration states as the service API shows them: get, delete, query per enrollment group."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from devprov.core.error import DevprovError, EtagMismatchError, ServiceNotFoundError
from devprov.core.etag import is_etag_match
from devprov.core.query import QueryCollection, parse_query
from devprov.core.registration import RegistrationState
from devprov.service.device import RegistrationNotFoundError
from devprov.service.enrollment import decode_continuation, encode_continuation, page_size
from devprov.service.model import AuditEvent, Outcome
from devprov.service.port import Clock, UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("devprov.registration")


@dataclass(frozen=True)
class StatePage:
    items: list[RegistrationState]
    continuation: str | None


class RegistrationStates:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    def get(self, service: str, registration_id: str) -> RegistrationState:
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            state = uow.registrations.get(service, registration_id)
        if state is None:
            raise RegistrationNotFoundError(f"no registration state for '{registration_id}'")
        return state

    def find(self, service: str, registration_id: str) -> RegistrationState | None:
        with self._uow(read_only=True) as uow:
            return uow.registrations.get(service, registration_id)

    def delete(
        self, service: str, registration_id: str, *, if_match: str | None, actor: str
    ) -> RegistrationState:
        """Forget a registration state; the one deleted (its hub may hold the device still,
        service.hub_sync)."""
        with self._uow() as uow:
            try:
                _require_service(uow, service)
                state = uow.registrations.get(service, registration_id)
                if state is None:
                    raise RegistrationNotFoundError(
                        f"no registration state for '{registration_id}'"
                    )
                if if_match and not is_etag_match(if_match, state.etag):
                    raise EtagMismatchError(
                        f"ETag is invalid: If-Match {if_match} does not match '{registration_id}'"
                    )
                uow.registrations.remove(service, state.registration_id, expected_etag=state.etag)
            except DevprovError as exc:
                uow.rollback()
                self._record(uow, service, registration_id, actor, exc)
                raise
            self._record(uow, service, registration_id, actor, None)
        log.info(
            "registration state of '%s' in service '%s' deleted by %s",
            state.registration_id,
            service,
            actor,
        )
        return state

    def query(
        self,
        service: str,
        group_id: str,
        query: Any = "*",
        *,
        continuation: str | None,
        max_items: int | None,
    ) -> StatePage:
        """The registration states of one enrollment group. Microsoft's Python service SDK sends
        no body here (the handler passes "*"); the Node and Java SDKs send a query
        specification, checked by :func:`devprov.core.query.parse_query`."""
        parse_query(query, QueryCollection.DEVICE_REGISTRATIONS)
        limit = page_size(max_items)
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            items = uow.registrations.page_for_group(
                service, group_id, after=decode_continuation(continuation), limit=limit + 1
            )
        more = len(items) > limit
        items = items[:limit]
        return StatePage(items, encode_continuation(items[-1].key) if more else None)

    def list(
        self,
        service: str,
        *,
        prefix: str | None = None,
        continuation: str | None,
        max_items: int | None,
    ) -> StatePage:
        """The service's registration states in id order (ignoring case), only ids starting with
        ``prefix`` if given; the continuation names the last id (no OFFSET, no count)."""
        limit = page_size(max_items)
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            items = uow.registrations.page(
                service,
                after=decode_continuation(continuation),
                limit=limit + 1,
                prefix=prefix or None,
            )
        more = len(items) > limit
        items = items[:limit]
        return StatePage(items, encode_continuation(items[-1].key) if more else None)

    def _record(
        self,
        uow: UnitOfWork,
        service: str,
        registration_id: str,
        actor: str,
        error: DevprovError | None,
    ) -> None:
        uow.audit.record(
            AuditEvent(
                at=self._clock(),
                service=service,
                action="registration.delete",
                outcome=Outcome.FAILED if error else Outcome.SUCCEEDED,
                actor=actor,
                reason=error.message if error else None,
                error_code=error.code if error else None,
                registration_id=registration_id,
            )
        )
        uow.commit()


def _require_service(uow: UnitOfWork, service: str) -> None:
    if uow.services.get(service) is None:
        raise ServiceNotFoundError(f"provisioning service '{service}' does not exist")
