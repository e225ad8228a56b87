"""Enrollment use cases of the DPS service API: create or update with DPS's etag rules, read,
delete, query with continuation, bulk operations and attestation mechanisms.

Etag rules (docs/dps-wire.md#service-etags): PUT without If-Match creates and is refused with 409
when the record exists; PUT with If-Match updates and is refused with 412 when it does not match
(``*`` matches any existing record; on a missing record any If-Match fails, RFC 7232 3.1). DELETE's
If-Match is optional.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass, replace
from typing import Any

from devprov.core.enrollment import (
    GENERATED_KEY_BYTES,
    MAX_ENROLLMENT_GROUPS_PER_TYPE,
    MAX_INDIVIDUAL_ENROLLMENTS,
    Attestation,
    AttestationType,
    Enrollment,
    EnrollmentKind,
    InvalidEnrollmentError,
    keep_stored_certificates,
    keep_stored_keys,
    parse_enrollment,
)
from devprov.core.error import (
    AlreadyExistsError,
    ConflictError,
    DevprovError,
    EtagMismatchError,
    InvalidInputError,
    MalformedRequestError,
    NotFoundError,
    ServiceNotFoundError,
)
from devprov.core.etag import ETAG_BYTES, build_etag, is_etag_match
from devprov.core.query import QueryCollection, parse_query
from devprov.core.registration_id import validate_enrollment_group_id, validate_registration_id
from devprov.service.model import AuditEvent, Outcome
from devprov.service.port import Clock, RandomBytes, UnitOfWork, UnitOfWorkFactory
from devprov.service.retry import retrying

log = logging.getLogger("devprov.enrollment")

# The service API's bulk operations take at most 10 items (docs/dps-wire.md#bulk-operations).
MAX_BULK_ITEMS = 10

# What the query endpoint of each kind lists (devprov.core.query).
QUERY_COLLECTIONS = {
    EnrollmentKind.INDIVIDUAL: QueryCollection.ENROLLMENTS,
    EnrollmentKind.GROUP: QueryCollection.ENROLLMENT_GROUPS,
}

# Query paging: DPS leaves the default page size unstated; 100 keeps a page under the 96 KB
# message limit for typical records, and a client may ask for up to 1,000.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class EnrollmentNotFoundError(NotFoundError):
    """No individual enrollment by that registration ID (DPS's 404201)."""

    code = "EnrollmentNotFound"
    number = 404201


class EnrollmentGroupNotFoundError(NotFoundError):
    """No enrollment group by that ID (DPS's 404202)."""

    code = "EnrollmentGroupNotFound"
    number = 404202


class EnrollmentLimitError(ConflictError):
    """The service holds DPS's maximum of enrollment groups of that type (100) or enrollments."""

    code = "EnrollmentLimitExceeded"
    number = 409201


class UnknownCredentialPolicyError(InvalidEnrollmentError):
    """An enrollment names a credential policy its provisioning service does not have."""

    code = "UnknownCredentialPolicy"
    number = 400629


class BulkOperationError(InvalidInputError):
    """A bulk operation has no valid mode, no items, or more than 10."""

    code = "InvalidBulkOperation"
    number = 400403


@dataclass(frozen=True)
class BulkError:
    id: str
    error_code: int
    error_status: str


@dataclass(frozen=True)
class BulkResult:
    is_successful: bool
    errors: tuple[BulkError, ...]


@dataclass(frozen=True)
class EnrollmentChange:
    record: Enrollment
    disabled: bool  # an enabled enrollment was disabled by this write


@dataclass(frozen=True)
class Page:
    items: list[Enrollment]
    continuation: str | None


def _not_found(kind: EnrollmentKind, service: str, id: str) -> NotFoundError:
    if kind is EnrollmentKind.INDIVIDUAL:
        return EnrollmentNotFoundError(f"enrollment '{id}' does not exist in service '{service}'")
    return EnrollmentGroupNotFoundError(
        f"enrollment group '{id}' does not exist in service '{service}'"
    )


def validate_id(kind: EnrollmentKind, id: str) -> str:
    if kind is EnrollmentKind.INDIVIDUAL:
        return validate_registration_id(id)
    return validate_enrollment_group_id(id)


def encode_continuation(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def decode_continuation(token: str | None) -> str | None:
    if not token:
        return None
    try:
        key = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise MalformedRequestError(
            "the x-ms-continuation token is not one this server issued"
        ) from exc
    if not key:
        raise MalformedRequestError("the x-ms-continuation token is not one this server issued")
    return key


def page_size(value: int | None) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    if value < 1:
        raise MalformedRequestError("x-ms-max-item-count must be a positive number")
    return min(value, MAX_PAGE_SIZE)


class EnrollmentService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, random_bytes: RandomBytes) -> None:
        self._uow = uow
        self._clock = clock
        self._random = random_bytes

    def get(self, service: str, kind: EnrollmentKind, id: str) -> Enrollment:
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            found = uow.enrollments.get(service, kind, id)
        if found is None:
            raise _not_found(kind, service, id)
        return found

    def attestation_mechanism(self, service: str, kind: EnrollmentKind, id: str) -> Attestation:
        return self.get(service, kind, id).attestation

    def create_or_update(
        self,
        service: str,
        kind: EnrollmentKind,
        id: str,
        doc: Any,
        *,
        if_match: str | None,
        actor: str,
    ) -> Enrollment:
        return self.write(service, kind, id, doc, if_match=if_match, actor=actor).record

    @retrying
    def write(
        self,
        service: str,
        kind: EnrollmentKind,
        id: str,
        doc: Any,
        *,
        if_match: str | None,
        actor: str,
    ) -> EnrollmentChange:
        """``create_or_update``, telling also whether the write disabled the enrollment (the
        adapters then disable its devices in their hubs, docs/hubs.md#disabling-and-deleting)."""
        with self._uow() as uow:
            try:
                record, existing = self._write(uow, service, kind, id, doc, if_match=if_match)
            except DevprovError as exc:
                self._audit(uow, service, kind, id, "createOrUpdate", actor, exc)
                raise
            self._audit(uow, service, kind, id, "createOrUpdate", actor, None)
        _log_change(service, kind, record.id, "updated" if existing else "created", actor)
        disabled = existing is not None and existing.enabled and not record.enabled
        return EnrollmentChange(record, disabled=disabled)

    def _write(
        self,
        uow: UnitOfWork,
        service: str,
        kind: EnrollmentKind,
        id: str,
        doc: Any,
        *,
        if_match: str | None,
    ) -> tuple[Enrollment, Enrollment | None]:
        """The record written, and the one it replaced (None when it was created)."""
        # Locked: the limits are a count, then an insert; with the service's row locked no other
        # instance counts between the two (docs/storage.md#instances-sharing-one-database).
        _require_service(uow, service, lock=True)
        validate_id(kind, id)
        parsed = parse_enrollment(doc, kind, service=service, path_id=id)
        self._check_references(uow, parsed)
        now = self._clock()
        existing = uow.enrollments.get(service, kind, id)
        parsed = keep_stored_keys(keep_stored_certificates(parsed, existing), existing)
        if existing is None:
            if if_match:
                raise EtagMismatchError(
                    f"ETag is invalid: '{id}' does not exist, so If-Match cannot match"
                )
            self._check_limits(uow, parsed)
            record = replace(
                self._with_keys(parsed),
                etag=self._etag(),
                created_at=now,
                updated_at=now,
            )
            uow.enrollments.add(record)
            return record, None
        if not if_match:
            raise AlreadyExistsError(
                f"'{existing.id}' already exists; send If-Match with its etag (or *) to update it"
            )
        if not is_etag_match(if_match, existing.etag):
            raise EtagMismatchError(
                f"ETag is invalid: If-Match {if_match} does not match '{existing.id}'"
            )
        if parsed.attestation.type is not existing.attestation.type:
            self._check_limits(uow, parsed)
        record = replace(
            self._with_keys(parsed),
            id=existing.id,
            etag=self._etag(),
            created_at=existing.created_at,
            updated_at=now,
        )
        uow.enrollments.replace(record, expected_etag=existing.etag)
        return record, existing

    @retrying
    def delete(
        self, service: str, kind: EnrollmentKind, id: str, *, if_match: str | None, actor: str
    ) -> None:
        with self._uow() as uow:
            try:
                _require_service(uow, service)
                existing = uow.enrollments.get(service, kind, id)
                if existing is None:
                    raise _not_found(kind, service, id)
                if if_match and not is_etag_match(if_match, existing.etag):
                    raise EtagMismatchError(
                        f"ETag is invalid: If-Match {if_match} does not match '{id}'"
                    )
                uow.enrollments.remove(service, kind, existing.id, expected_etag=existing.etag)
            except DevprovError as exc:
                self._audit(uow, service, kind, id, "delete", actor, exc)
                raise
            self._audit(uow, service, kind, id, "delete", actor, None)
        _log_change(service, kind, existing.id, "deleted", actor)

    def query(
        self,
        service: str,
        kind: EnrollmentKind,
        query: Any,
        *,
        continuation: str | None,
        max_items: int | None,
    ) -> Page:
        parse_query(query, QUERY_COLLECTIONS[kind])
        return self.list(service, kind, continuation=continuation, max_items=max_items)

    def list(
        self,
        service: str,
        kind: EnrollmentKind,
        *,
        prefix: str | None = None,
        continuation: str | None,
        max_items: int | None,
    ) -> Page:
        """One page in id order (ignoring case), only ids starting with ``prefix`` if given; the
        continuation names the last id, so a page is read by index whatever its depth."""
        limit = page_size(max_items)
        after = decode_continuation(continuation)
        with self._uow(read_only=True) as uow:
            _require_service(uow, service)
            items = uow.enrollments.page(
                service, kind, after=after, limit=limit + 1, prefix=prefix or None
            )
        more = len(items) > limit
        items = items[:limit]
        return Page(items, encode_continuation(items[-1].key) if more else None)

    def bulk(self, service: str, kind: EnrollmentKind, body: Any, *, actor: str) -> BulkResult:
        """DPS's bulk operation: each item succeeds or fails on its own
        (docs/dps-wire.md#bulk-operations)."""
        id_field = "registrationId" if kind is EnrollmentKind.INDIVIDUAL else "enrollmentGroupId"
        list_field = "enrollments" if kind is EnrollmentKind.INDIVIDUAL else "enrollmentGroups"
        if not isinstance(body, dict):
            raise BulkOperationError("the body must be a BulkEnrollmentOperation object")
        mode = body.get("mode")
        items = body.get(list_field)
        if mode not in ("create", "update", "updateIfMatchETag", "delete"):
            raise BulkOperationError("'mode' must be create, update, updateIfMatchETag or delete")
        if not isinstance(items, list) or not items:
            raise BulkOperationError(f"'{list_field}' must be a non-empty list")
        if len(items) > MAX_BULK_ITEMS:
            raise BulkOperationError(
                f"a bulk operation takes at most {MAX_BULK_ITEMS} items; got {len(items)}"
            )
        errors: list[BulkError] = []
        for item in items:
            item_id = item.get(id_field) if isinstance(item, dict) else None
            try:
                if not isinstance(item_id, str) or not item_id:
                    raise BulkOperationError(f"every item needs '{id_field}'")
                self._bulk_item(service, kind, mode, item_id, item, actor)
            except DevprovError as exc:
                errors.append(BulkError(str(item_id), exc.number, exc.message))
        return BulkResult(not errors, tuple(errors))

    def _bulk_item(
        self,
        service: str,
        kind: EnrollmentKind,
        mode: str,
        id: str,
        item: dict[str, Any],
        actor: str,
    ) -> None:
        if mode == "delete":
            self.delete(service, kind, id, if_match=item.get("etag") or None, actor=actor)
        elif mode == "create":
            self.create_or_update(service, kind, id, item, if_match=None, actor=actor)
        elif mode == "update":
            exists = self._exists(service, kind, id)
            self.create_or_update(
                service, kind, id, item, if_match="*" if exists else None, actor=actor
            )
        else:  # updateIfMatchETag
            etag = item.get("etag")
            if not isinstance(etag, str) or not etag:
                raise EtagMismatchError("updateIfMatchETag needs the item's 'etag'")
            self.create_or_update(service, kind, id, item, if_match=etag, actor=actor)

    def _exists(self, service: str, kind: EnrollmentKind, id: str) -> bool:
        with self._uow(read_only=True) as uow:
            return uow.enrollments.get(service, kind, id) is not None

    # --- rules ---------------------------------------------------------------------------------

    def _with_keys(self, enrollment: Enrollment) -> Enrollment:
        """Symmetric keys neither in the body nor stored are generated: on a create, or an update
        that turns a record into a symmetric-key one
        (docs/dps-wire.md#symmetric-keys-in-answers)."""
        attestation = enrollment.attestation
        if attestation.type is not AttestationType.SYMMETRIC_KEY:
            return enrollment
        primary = attestation.primary_key or self._key()
        secondary = attestation.secondary_key or self._key()
        return replace(
            enrollment,
            attestation=replace(attestation, primary_key=primary, secondary_key=secondary),
        )

    def _key(self) -> str:
        return base64.b64encode(self._random(GENERATED_KEY_BYTES)).decode("ascii")

    def _etag(self) -> str:
        return build_etag(self._random(ETAG_BYTES))

    def _check_references(self, uow: UnitOfWork, enrollment: Enrollment) -> None:
        for name in enrollment.attestation.ca_references:
            if uow.certificates.get(enrollment.service, name) is None:
                raise InvalidEnrollmentError(
                    f"caReferences names certificate '{name}', which is not in the registry of "
                    f"service '{enrollment.service}'; upload it first"
                )
        policy = enrollment.credential_policy
        if policy is not None and uow.credential_policies.get(enrollment.service, policy) is None:
            raise UnknownCredentialPolicyError(
                f"the enrollment names credential policy '{policy}' (credentialPolicyName or "
                f"certificatePolicyName), which service '{enrollment.service}' does not have; "
                "create the policy first (devprov credential-policy create)"
            )
        linked = {hub.host_name for hub in uow.hubs.all(enrollment.service)}
        unknown = [hub for hub in enrollment.iot_hubs if hub not in linked]
        if unknown:
            raise InvalidEnrollmentError(
                f"iotHubs must be linked hubs of service '{enrollment.service}'; not linked: "
                + ", ".join(unknown)
            )

    def _check_limits(self, uow: UnitOfWork, enrollment: Enrollment) -> None:
        if enrollment.kind is EnrollmentKind.INDIVIDUAL:
            if (
                uow.enrollments.count(enrollment.service, enrollment.kind)
                >= MAX_INDIVIDUAL_ENROLLMENTS
            ):
                raise EnrollmentLimitError(
                    f"a service holds at most {MAX_INDIVIDUAL_ENROLLMENTS} enrollments"
                )
            return
        kind_of = enrollment.attestation.type
        if (
            uow.enrollments.count(enrollment.service, enrollment.kind, kind_of)
            >= MAX_ENROLLMENT_GROUPS_PER_TYPE
        ):
            raise EnrollmentLimitError(
                f"a service holds at most {MAX_ENROLLMENT_GROUPS_PER_TYPE} {kind_of.value} enrollment groups"
            )

    def _audit(
        self,
        uow: UnitOfWork,
        service: str,
        kind: EnrollmentKind,
        id: str,
        action: str,
        actor: str,
        error: DevprovError | None,
    ) -> None:
        if error is not None:
            uow.rollback()
        label = "enrollment" if kind is EnrollmentKind.INDIVIDUAL else "enrollmentGroup"
        uow.audit.record(
            AuditEvent(
                at=self._clock(),
                service=service,
                action=f"{label}.{action}",
                outcome=Outcome.FAILED if error else Outcome.SUCCEEDED,
                actor=actor,
                reason=error.message if error else None,
                error_code=error.code if error else None,
                registration_id=id,
            )
        )
        uow.commit()


def _log_change(service: str, kind: EnrollmentKind, id: str, done: str, actor: str) -> None:
    """The one log line of a change; refusals are the adapter's to log (http.request)."""
    label = "enrollment" if kind is EnrollmentKind.INDIVIDUAL else "enrollment group"
    log.info("%s '%s' of service '%s' %s by %s", label, id, service, done, actor)


def _require_service(uow: UnitOfWork, service: str, *, lock: bool = False) -> None:
    found = uow.services.lock(service) if lock else uow.services.get(service)
    if found is None:
        raise ServiceNotFoundError(f"provisioning service '{service}' does not exist")
