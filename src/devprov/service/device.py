"""The device side of provisioning: register, poll an operation, look up a registration.

A register call attests the device, allocates an IoT hub, stores the registration state and an
operation, and answers with the operation (DPS's 202 + operationId flow,
docs/dps-wire.md#https-register-operation-status-and-status-lookup). devprov
decides synchronously, so the first poll already sees the outcome; the custom-allocation webhook
is the one slow step, bounded by its timeout, and runs outside any database transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from devprov.core import document
from devprov.core.allocation import (
    AllocationPolicy,
    LinkedHub,
    build_custom_allocation_request,
    choose_hub,
    parse_custom_allocation_response,
)
from devprov.core.enrollment import AllocationPolicyName, Enrollment, EnrollmentKind
from devprov.core.error import (
    AlreadyExistsError,
    AuthenticationError,
    DevprovError,
    EtagMismatchError,
    InvalidRegistrationIdError,
    NotFoundError,
    RegistrationAbandonedError,
    ServiceNotFoundError,
    StorageConflictError,
)
from devprov.core.etag import ETAG_BYTES, build_etag
from devprov.core.refusal_limit import RefusalWindows
from devprov.core.registration import (
    RegistrationState,
    RegistrationStatus,
    decide_assignment,
    device_id_for,
    is_abandoned,
)
from devprov.core.registration_id import shown_id, validate_registration_id
from devprov.service.attestation import Attested, Credentials, attest, confirm_caller
from devprov.service.attestation_error import (
    INVALID_REGISTRATION_ID,
    DeviceAttestationError,
    DeviceSasError,
)
from devprov.service.device_issuance import (
    CertificateIssuer,
    IssuanceRequest,
    Issued,
    NoIssuingKeys,
    ignored_note,
    issued_chain,
    prepare_issuance,
    store_issued,
)
from devprov.service.hub_assignment import build_identity
from devprov.service.hub_identity import (
    DeviceIdentity,
    HubConnection,
    HubIdentities,
    HubUnreachableError,
)
from devprov.service.model import AuditEvent, Operation, Outcome, ProvisioningService
from devprov.service.port import (
    Clock,
    IssuingKeyStore,
    Metrics,
    NoMetrics,
    RandomBytes,
    UnitOfWork,
    UnitOfWorkFactory,
)
from devprov.service.refusal_log import Origin, Refusal, RefusalLog
from devprov.service.retry import run_retrying
from devprov.service.trust import TrustCache

log = logging.getLogger("devprov.registration")


class AllocationWebhook(Protocol):
    """Calls a custom allocation webhook; raises a devprov error on failure or timeout."""

    def call(self, url: str, body: Mapping[str, Any]) -> object: ...


@dataclass(frozen=True)
class _Context:
    service: ProvisioningService
    fresh: RegistrationState
    existing: RegistrationState | None
    attested: Attested
    hubs: tuple[LinkedHub, ...]
    force: bool
    protocol: str  # what carried the request, for the registrations metric
    # The linked hubs of a kind other than none, by host name: an assignment to one of them
    # creates the device there first (HubCall).
    connections: Mapping[str, HubConnection]
    # The operation stored ``assigning`` while the call is made (``hold``): the outcome is
    # written to it, under its id, rather than to a new operation.
    operation_id: str | None = None
    # The register's CSR, checked, and its policy: a certificate is issued if it is assigned
    # (service.device_issuance). ``csr_ignored``: it sent one its enrollment has no policy for.
    issuance: IssuanceRequest | None = None
    csr_ignored: bool = False


@dataclass(frozen=True)
class WebhookCall:
    """A registration waiting for its custom allocation webhook.

    ``register`` returns this instead of calling the webhook itself, so the caller decides where
    a slow network call may block (the HTTP adapter runs it on a worker thread, never on the
    event loop), then hands the answer, or the error, to ``complete``.
    """

    url: str
    body: Mapping[str, Any]
    context: _Context


@dataclass(frozen=True)
class HubCall:
    """An assignment waiting for its hub to hold the device's identity.

    Returned, like :class:`WebhookCall`, so the caller runs the network call where it may block
    (a worker thread), then hands what it returned, or the error it raised, to
    ``complete_hub``. Only then is the assignment stored: a failed call leaves the registration
    ``failed`` and the device registering again completes it (the call is idempotent).
    """

    hub: HubConnection
    identity: DeviceIdentity
    decided: RegistrationState  # the assignment to store once the hub holds the identity
    context: _Context
    # The operational certificate issued for ``decided`` before the hub was asked (the identity
    # is CA-signed then), stored with it.
    issued: Issued | None = None


class RegistrationNotFoundError(NotFoundError):
    """No registration state for that registration ID."""

    code = "DeviceRegistrationNotFound"
    number = 404203


class OperationNotFoundError(NotFoundError):
    """No such operation for that device."""

    code = "OperationNotFound"
    number = 404204


@dataclass(frozen=True)
class RegistrationOutcome:
    """An operation and the registration state it produced (None when attestation failed), and
    the operational certificate chain it issued (base64 DER, leaf first; empty when none)."""

    operation: Operation
    state: RegistrationState | None
    issued_chain: tuple[str, ...] = ()


@dataclass
class _Attempt:
    """One device request, for the refusal log: what it asked, and of which service once known."""

    action: str
    registration_id: str
    origin: Origin | None
    service: str | None = None

    @property
    def protocol(self) -> str:
        return self.origin.protocol if self.origin is not None else "https"

    def refusal(self, error: DevprovError) -> Refusal:
        return Refusal(
            action=self.action,
            error=error,
            origin=self.origin or Origin(),
            service=self.service,
            registration_id=self.registration_id,
            # What the audit trail has always held: devices that failed to authenticate.
            audited=isinstance(error, AuthenticationError),
        )


class DeviceRegistration:
    """The device API's use cases. Each logs what it refuses through the refusal log, once, and
    audits devices that fail to authenticate there (service.refusal_log)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        random_bytes: RandomBytes,
        refusals: RefusalLog | None = None,
        metrics: Metrics | None = None,
        trust: TrustCache | None = None,
        issuing_keys: IssuingKeyStore | None = None,
    ) -> None:
        self._uow = uow
        # What devices are checked against, read once per trust revision (service.trust).
        self._trust = trust or TrustCache()
        self._clock = clock
        self._random = random_bytes
        self._refusals = refusals or RefusalLog(uow, clock, RefusalWindows())
        self._metrics: Metrics = metrics or NoMetrics()
        # Signs operational certificates with the credential policies' keys (bootstrap gives
        # the data directory's; without them, a registration that asks for one fails).
        self._issuer = CertificateIssuer(issuing_keys or NoIssuingKeys(), random_bytes)

    def _refused(self, attempt: _Attempt, error: DevprovError) -> None:
        """Log (and audit) a refusal once, and count a failed attestation by its reason."""
        if isinstance(error, DeviceAttestationError | DeviceSasError):
            self._metrics.attestation_failure(error.reason)
        self._refusals.refused(attempt.refusal(error))

    def _count(self, outcome: RegistrationOutcome, protocol: str) -> RegistrationOutcome:
        """A decided registration, counted by outcome, attestation type and protocol."""
        state = outcome.state
        if state is not None:
            self._metrics.registration(
                outcome=state.status.value, attestation=state.method.value, protocol=protocol
            )
        return outcome

    # --- connect --------------------------------------------------------------------------

    def authenticate(
        self,
        id_scope: str,
        registration_id: str,
        credentials: Credentials,
        *,
        origin: Origin | None = None,
    ) -> None:
        """Attest a device that opens a session (MQTT's CONNECT) before it asks anything; each
        request of the session attests it again, against the trust of that moment."""
        attempt = _Attempt("connect", registration_id, origin)
        try:
            with self._uow(read_only=True) as uow:
                service = _service(uow, id_scope)
                attempt.service = service.name
                _check_registration_id(registration_id, credentials)
                attest(
                    uow,
                    service.name,
                    service.id_scope,
                    registration_id,
                    credentials,
                    now=self._clock(),
                    trust=self._trust.view(uow, service),
                )
        except DevprovError as exc:
            self._refused(attempt, exc)
            raise

    # --- register -------------------------------------------------------------------------

    def register(
        self,
        id_scope: str,
        registration_id: str,
        credentials: Credentials,
        payload: Mapping[str, Any] | None,
        *,
        force: bool = False,
        origin: Origin | None = None,
        csr: str | None = None,
    ) -> RegistrationOutcome | WebhookCall | HubCall:
        """Attest, allocate and record a registration. A custom allocation returns a
        :class:`WebhookCall`, an assignment to a hub of a kind other than none a
        :class:`HubCall`, for the caller to complete (service.device_pending). ``csr`` is the
        register body's certificate signing request (base64 DER), for an operational
        certificate (docs/operational-certificates.md#the-wire)."""
        attempt = _Attempt("register", registration_id, origin)
        try:
            # Run again from the read when the device registered through another instance
            # between this call's read and its write: the second run decides against that
            # registration, as if the two had come one after the other (service.retry).
            result = run_retrying(
                lambda: self._register(
                    attempt, id_scope, credentials, payload, force=force, csr=csr
                )
            )
        except DevprovError as exc:
            self._refused(attempt, exc)
            raise
        if isinstance(result, WebhookCall | HubCall):
            return result
        return self._count(result, attempt.protocol)

    def _register(
        self,
        attempt: _Attempt,
        id_scope: str,
        credentials: Credentials,
        payload: Mapping[str, Any] | None,
        *,
        force: bool,
        csr: str | None,
    ) -> RegistrationOutcome | WebhookCall | HubCall:
        now = self._clock()
        registration_id = attempt.registration_id
        with self._uow(read_only=True) as uow:
            service = _service(uow, id_scope)
            attempt.service = service.name
            _check_registration_id(registration_id, credentials)
            trust = self._trust.view(uow, service)
            attested = attest(
                uow,
                service.name,
                service.id_scope,
                registration_id,
                credentials,
                now=now,
                trust=trust,
            )
            # A CSR is checked before anything is decided or written: a refused one leaves no
            # trace but the refusal log (docs/operational-certificates.md#the-registration).
            issuance = None
            if csr is not None:
                issuance = prepare_issuance(
                    trust.credential_policies(),
                    service.name,
                    registration_id,
                    attested.enrollment,
                    csr,
                )
            existing = uow.registrations.get(service.name, registration_id)
            records = trust.hubs()
        hubs = [LinkedHub(h.host_name, h.weight, h.apply_allocation_policy) for h in records]
        connections = {h.host_name: h.connection for h in records if h.connection is not None}
        fresh = self._fresh(service, registration_id, attested, existing)
        context = _Context(
            service,
            fresh,
            existing,
            attested,
            tuple(hubs),
            force,
            attempt.protocol,
            connections,
            issuance=issuance,
            csr_ignored=csr is not None and issuance is None,
        )
        if not attested.enrollment.enabled:
            return self._finish(context, fresh, status=RegistrationStatus.DISABLED)
        enrollment = attested.enrollment
        policy = enrollment.allocation_policy or AllocationPolicyName.HASHED
        if policy is AllocationPolicyName.CUSTOM and enrollment.custom_allocation is not None:
            body = self._webhook_request(fresh.registration_id, attested, existing, hubs, payload)
            return WebhookCall(enrollment.custom_allocation.webhook_url, body, context)
        try:
            hub = choose_hub(
                AllocationPolicy(policy.value),
                fresh.registration_id,
                hubs,
                enrollment_hubs=list(enrollment.iot_hubs) or None,
            )
        except DevprovError as exc:
            return self._fail(context, exc)
        return self._assign(context, hub, None)

    def complete(self, call: WebhookCall, answer: object) -> RegistrationOutcome | HubCall:
        """Finish a registration with the webhook's answer, or with the error calling it raised;
        an assignment to a hub of a kind other than none still waits for that hub (HubCall)."""
        runs = 0

        def once() -> RegistrationOutcome | HubCall:
            # A run after a lost race decides against the registration that won it; the
            # webhook's answer stands (it is not called again: it is outside the database).
            nonlocal runs
            runs += 1
            context = call.context if runs == 1 else self._refreshed(call.context)
            return self._complete(context, answer)

        result = run_retrying(once)
        if isinstance(result, HubCall):
            return result
        return self._count(result, call.context.protocol)

    def complete_hub(self, call: HubCall, result: object) -> RegistrationOutcome:
        """Store the assignment once the hub holds the identity (``result`` is the hub's
        sentence for the audit), or the failure (``result`` is the error the call raised)."""
        runs = 0

        def once() -> RegistrationOutcome:
            nonlocal runs
            runs += 1
            context = call.context if runs == 1 else self._refreshed(call.context)
            if isinstance(result, DevprovError):
                return self._fail(context, result)
            decided, issued = call.decided, call.issued
            if runs > 1:  # decided again against the state that won the race, in the same hub,
                # and its certificate issued again for the registration id as that state spells it
                decided = self._decide(context, call.hub.host_name, call.decided.payload)
                try:
                    issued = self._issue(context, decided)
                except DevprovError as exc:
                    return self._fail(context, exc)
            return self._assigned(context, decided, issued, story=str(result))

        return self._count(run_retrying(once), call.context.protocol)

    def hold(self, call: WebhookCall | HubCall) -> tuple[Operation, WebhookCall | HubCall]:
        """Store the operation of a registration that waits on ``call``, ``assigning``, so that
        a poll finds it while the call is made; the call returned completes that operation
        (service.device_pending). The registration state is written only with the outcome."""
        context = call.context
        attested = context.attested
        operation = Operation(
            id=self._operation_id(),
            service=context.service.name,
            registration_id=context.fresh.registration_id,
            created_at=self._clock(),
            status=RegistrationStatus.ASSIGNING.value,
            enrollment_kind=attested.enrollment.kind.value,
            enrollment_id=attested.enrollment.id,
            leaf_sha256=attested.leaf_sha256,
        )
        with self._uow() as uow:
            uow.operations.add(operation)
            uow.commit()
        return operation, replace(call, context=replace(context, operation_id=operation.id))

    def _complete(self, context: _Context, answer: object) -> RegistrationOutcome | HubCall:
        if isinstance(answer, DevprovError):
            return self._fail(context, answer)
        try:
            allocation = parse_custom_allocation_response(
                answer, [h.host_name for h in context.hubs]
            )
        except DevprovError as exc:
            return self._fail(context, exc)
        return self._assign(context, allocation.iot_hub_host_name, allocation.payload)

    def _refreshed(self, context: _Context) -> _Context:
        """The context with the registration state stored now."""
        service = context.service
        registration_id = context.fresh.registration_id
        with self._uow(read_only=True) as uow:
            existing = uow.registrations.get(service.name, registration_id)
        fresh = self._fresh(service, registration_id, context.attested, existing)
        return replace(context, existing=existing, fresh=fresh)

    def register_with(
        self,
        webhook: AllocationWebhook,
        id_scope: str,
        registration_id: str,
        credentials: Credentials,
        payload: Mapping[str, Any] | None,
        *,
        force: bool = False,
        hubs: HubIdentities | None = None,
        csr: str | None = None,
    ) -> RegistrationOutcome:
        """``register`` and, where needed, the webhook and hub calls, in the caller's thread
        (the CLI and tests; the device endpoints use service.device_pending)."""
        result = self.register(
            id_scope, registration_id, credentials, payload, force=force, csr=csr
        )
        while not isinstance(result, RegistrationOutcome):
            answer: object
            try:
                if isinstance(result, WebhookCall):
                    answer = webhook.call(result.url, result.body)
                elif hubs is None:
                    raise HubUnreachableError(f"no client for hubs of kind {result.hub.kind.value}")
                else:
                    answer = hubs.put(result.hub, result.identity)
            except DevprovError as exc:
                answer = exc
            if isinstance(result, WebhookCall):
                result = self.complete(result, answer)
            else:
                result = self.complete_hub(result, answer)
        return result

    def _fail(self, context: _Context, error: DevprovError) -> RegistrationOutcome:
        failed = replace(context.fresh, error_code=error.number, error_message=error.message)
        return self._finish(context, failed, status=RegistrationStatus.FAILED)

    def _assign(
        self, context: _Context, hub: str, payload: Mapping[str, Any] | None
    ) -> RegistrationOutcome | HubCall:
        """Store the assignment, or, when the hub it lands in has a kind other than none, ask
        for the identity there first. The call is made even when the assignment is unchanged:
        it is idempotent, and it is how a device registering again re-enables its identity.

        The operational certificate its checked CSR asks for is issued before the hub is asked:
        one that cannot be issued (its policy's key file or CA unusable) fails the registration
        with that error and leaves the hub as it was, and one that is issued makes the identity
        CA-signed (service.hub_assignment)."""
        decided = self._decide(context, hub, payload)
        try:
            issued = self._issue(context, decided)
        except DevprovError as exc:
            return self._fail(context, exc)
        connection = context.connections.get(decided.assigned_hub or "")
        if connection is not None:
            identity = build_identity(
                decided, context.attested.enrollment, certificate_issued=issued is not None
            )
            return HubCall(connection, identity, decided, context, issued)
        return self._assigned(context, decided, issued)

    def _issue(self, context: _Context, decided: RegistrationState) -> Issued | None:
        """The operational certificate of an assignment whose register sent a CSR its policy
        accepted (None otherwise); raises the issuer's errors."""
        if context.issuance is None:
            return None
        return self._issuer.issue(context.issuance, decided.registration_id, now=self._clock())

    def _assigned(
        self,
        context: _Context,
        decided: RegistrationState,
        issued: Issued | None,
        *,
        story: str | None = None,
    ) -> RegistrationOutcome:
        """Store an assignment, with the operational certificate issued for it."""
        return self._finish(
            context, decided, status=RegistrationStatus.ASSIGNED, story=story, issued=issued
        )

    def _decide(
        self, context: _Context, hub: str, payload: Mapping[str, Any] | None
    ) -> RegistrationState:
        existing = context.existing
        decided = decide_assignment(
            None if context.force else existing,
            replace(context.fresh, payload=payload),
            context.attested.enrollment,
            hub=hub,
            now=self._clock(),
            etag=self._etag(),
        )
        if context.force and existing is not None:
            decided = replace(decided, created_at=existing.created_at)
        return decided

    def _fresh(
        self,
        service: ProvisioningService,
        registration_id: str,
        attested: Attested,
        existing: RegistrationState | None,
    ) -> RegistrationState:
        now = self._clock()
        return RegistrationState(
            service=service.name,
            registration_id=existing.registration_id if existing else registration_id,
            method=attested.method,
            enrollment_kind=attested.enrollment.kind,
            enrollment_id=attested.enrollment.id,
            status=RegistrationStatus.ASSIGNING,
            created_at=existing.created_at if existing else now,
            updated_at=now,
            etag=self._etag(),
            device_id=device_id_for(attested.enrollment, registration_id),
            assigned_hub=existing.assigned_hub if existing else None,
            initial_hub=existing.initial_hub if existing else None,
            substatus=existing.substatus if existing else None,
            certificate=attested.certificate,
            signing_certificate=attested.signing_certificate,
            leaf_sha256=attested.leaf_sha256,
        )

    def _webhook_request(
        self,
        registration_id: str,
        attested: Attested,
        existing: RegistrationState | None,
        hubs: list[LinkedHub],
        payload: Mapping[str, Any] | None,
    ) -> dict[str, object]:
        enrollment = attested.enrollment
        x509_context = None
        if attested.certificate is not None:
            x509_context = {"certificateInfo": document.certificate_info(attested.certificate)}
            if attested.signing_certificate is not None:
                x509_context["signingCertificateInfo"] = document.certificate_info(
                    attested.signing_certificate
                )
        return build_custom_allocation_request(
            enrollment=document.enrollment(enrollment),
            enrollment_group=enrollment.kind is EnrollmentKind.GROUP,
            registration_id=registration_id,
            linked_hubs=[h.host_name for h in hubs],
            current_hub=existing.assigned_hub if existing else None,
            current_device_id=existing.device_id if existing else None,
            payload=payload,
            x509=x509_context,
        )

    def _finish(
        self,
        context: _Context,
        state: RegistrationState,
        *,
        status: RegistrationStatus,
        story: str | None = None,
        issued: Issued | None = None,
    ) -> RegistrationOutcome:
        """Store the decided state and its operation, and ``issued``, the certificate issued
        for it, in one transaction; ``story`` is what the hub did, told in the same audit event
        as the assignment. With the context's ``operation_id`` (stored ``assigning`` by
        ``hold``) that operation is settled instead of a new one added."""
        service, existing, attested = context.service, context.existing, context.attested
        operation_id = context.operation_id
        now = self._clock()
        if status is not RegistrationStatus.ASSIGNED:
            # A first registration keeps one instant for created and updated, as DPS shows it.
            updated = state.created_at if existing is None else now
            state = replace(state, status=status, updated_at=updated, etag=self._etag())
        operation = Operation(
            id=operation_id or self._operation_id(),
            service=service.name,
            registration_id=state.registration_id,
            created_at=now,
            status=state.status.value,
            enrollment_kind=attested.enrollment.kind.value,
            enrollment_id=attested.enrollment.id,
            leaf_sha256=attested.leaf_sha256,
            error_code=state.error_code,
            error_message=state.error_message,
        )
        notes = (
            story,
            issued.note if issued is not None else None,
            ignored_note(attested.enrollment) if context.csr_ignored else None,
        )
        outcome = _outcome(state, attested.enrollment) + "".join(f"; {n}" for n in notes if n)
        with self._uow() as uow:
            if state is not existing:
                try:
                    if existing is None:
                        uow.registrations.add(state)
                    else:
                        uow.registrations.put(state, expected_etag=existing.etag)
                except (AlreadyExistsError, EtagMismatchError) as exc:
                    # Another request (on this instance or another) wrote the device's state
                    # since it was read: the caller runs the registration again.
                    raise StorageConflictError(
                        f"device '{state.registration_id}' was registered by a concurrent "
                        f"request: {exc.message}"
                    ) from exc
            if operation_id is None:
                uow.operations.add(operation)
            else:
                uow.operations.settle(operation)
            if issued is not None:
                store_issued(uow, issued, operation_id=operation.id, at=now)
            uow.audit.record(
                AuditEvent(
                    at=now,
                    service=service.name,
                    action="register",
                    outcome=Outcome.SUCCEEDED
                    if status is RegistrationStatus.ASSIGNED
                    else Outcome.FAILED,
                    actor=f"device:{state.registration_id}",
                    reason=outcome,
                    registration_id=state.registration_id,
                    error_code=str(state.error_code) if state.error_code else None,
                )
            )
            uow.commit()
        log.info(
            "device '%s' of service '%s': %s",
            state.registration_id,
            service.name,
            outcome,
        )
        return RegistrationOutcome(operation, state, issued.chain if issued is not None else ())

    # --- poll and lookup ------------------------------------------------------------------

    def operation_status(
        self,
        id_scope: str,
        registration_id: str,
        operation_id: str,
        credentials: Credentials,
        *,
        origin: Origin | None = None,
    ) -> RegistrationOutcome:
        attempt = _Attempt("operationStatus", registration_id, origin)
        try:
            return self._operation_status(attempt, id_scope, operation_id, credentials)
        except DevprovError as exc:
            self._refused(attempt, exc)
            raise

    def _operation_status(
        self, attempt: _Attempt, id_scope: str, operation_id: str, credentials: Credentials
    ) -> RegistrationOutcome:
        now = self._clock()
        registration_id = attempt.registration_id
        with self._uow(read_only=True) as uow:
            service = _service(uow, id_scope)
            attempt.service = service.name
            _check_registration_id(registration_id, credentials)
            operation = uow.operations.get(service.name, operation_id)
            if operation is None or operation.registration_id.lower() != registration_id.lower():
                self._attest(uow, service, registration_id, credentials, now=now)
                raise OperationNotFoundError(
                    f"operation {shown_id(operation_id)} of '{registration_id}' does not exist"
                )
            confirm_caller(uow, service, registration_id, operation, credentials, now=now)
            state = uow.registrations.get(service.name, registration_id)
            chain: tuple[str, ...] = ()
            if operation.status == RegistrationStatus.ASSIGNED.value:
                chain = issued_chain(uow, service.name, operation.id)
        if is_abandoned(operation.status, operation.created_at, now=now):
            error = RegistrationAbandonedError(
                "the registration was not decided: the server stopped before its custom "
                "allocation webhook or its hub answered; register again"
            )
            operation = replace(
                operation,
                status=RegistrationStatus.FAILED.value,
                error_code=error.number,
                error_message=error.message,
            )
        return RegistrationOutcome(operation, state, chain)

    def status_lookup(
        self,
        id_scope: str,
        registration_id: str,
        credentials: Credentials,
        *,
        origin: Origin | None = None,
    ) -> RegistrationState:
        attempt = _Attempt("statusLookup", registration_id, origin)
        try:
            return self._status_lookup(attempt, id_scope, credentials)
        except DevprovError as exc:
            self._refused(attempt, exc)
            raise

    def _status_lookup(
        self, attempt: _Attempt, id_scope: str, credentials: Credentials
    ) -> RegistrationState:
        now = self._clock()
        registration_id = attempt.registration_id
        with self._uow(read_only=True) as uow:
            service = _service(uow, id_scope)
            attempt.service = service.name
            _check_registration_id(registration_id, credentials)
            self._attest(uow, service, registration_id, credentials, now=now)
            state = uow.registrations.get(service.name, registration_id)
        if state is None:
            raise RegistrationNotFoundError(f"'{registration_id}' has not registered")
        return state

    # --- helpers --------------------------------------------------------------------------

    def _attest(
        self,
        uow: UnitOfWork,
        service: ProvisioningService,
        registration_id: str,
        credentials: Credentials,
        *,
        now: datetime,
    ) -> Attested:
        trust = self._trust.view(uow, service)
        return attest(
            uow, service.name, service.id_scope, registration_id, credentials, now=now, trust=trust
        )

    def _etag(self) -> str:
        return build_etag(self._random(ETAG_BYTES))

    def _operation_id(self) -> str:
        """DPS's form, ``5.<16 hex>.<guid>`` (docs/dps-wire.md#one-round-trip)."""
        return f"5.{self._random(8).hex()}.{uuid.UUID(bytes=self._random(16), version=4)}"


def _outcome(state: RegistrationState, enrollment: Enrollment) -> str:
    """A decided registration in one sentence, for the audit trail and the log: the hub, the
    device id and substatus, and the enrollment that decided."""
    label = "enrollment" if enrollment.kind is EnrollmentKind.INDIVIDUAL else "enrollment group"
    decided = f"by {label} '{enrollment.id}'"
    if state.status is RegistrationStatus.ASSIGNED:
        substatus = state.substatus.value if state.substatus else "-"
        return (
            f"assigned to {state.assigned_hub} as device '{state.device_id}' ({substatus}) "
            + decided
        )
    if state.status is RegistrationStatus.DISABLED:
        return f"not assigned: {label} '{enrollment.id}' is disabled"
    return f"not assigned {decided}: {state.error_code} {state.error_message}"


def _service(uow: UnitOfWork, id_scope: str) -> ProvisioningService:
    service = uow.services.get_by_scope(id_scope)
    if service is None:
        raise ServiceNotFoundError(f"no provisioning service has ID scope {shown_id(id_scope)}")
    return service


def _check_registration_id(registration_id: str, credentials: Credentials) -> None:
    """Refuse an id DPS would not accept before anything is read for it or written about it.

    The device gets the answer a failed attestation of its kind gets (DPS documents none for a
    malformed id): 401002 for a certificate, 401000 for a token or nothing; the message, with the
    id shortened and its length, is for the log.
    """
    try:
        validate_registration_id(registration_id)
    except InvalidRegistrationIdError as exc:
        if credentials.chain_der and not credentials.authorization:
            raise DeviceAttestationError(exc.message, INVALID_REGISTRATION_ID) from exc
        raise DeviceSasError(exc.message, INVALID_REGISTRATION_ID) from exc
