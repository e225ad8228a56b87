"""A provisioning service over real SQLite, driven as the use cases see it: registry, enrollments,
hubs and device registration, with a test clock."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devprov.core.enrollment import EnrollmentKind
from devprov.core.error import DevprovError
from devprov.core.sas import build_sas_token
from devprov.service.attestation import Credentials
from devprov.service.audit import AuditTrail
from devprov.service.device import DeviceRegistration
from devprov.service.enrollment import EnrollmentService
from devprov.service.hub import HubDirectory
from devprov.service.model import Outcome
from devprov.service.registry import CertificateRegistry
from devprov.storage.issuing_key import FileIssuingKeyStore
from tests import factory as f
from tests.hubs import RecordingHubs

KEY = base64.b64encode(b"g" * 32).decode()


class FakeWebhook:
    """Stands in for the webhook's HTTP server; tests/http covers the real client."""

    def __init__(self, answer: object = None, error: DevprovError | None = None) -> None:
        self.answer, self.error, self.requests = answer, error, []

    def call(self, url: str, body: Mapping[str, Any]) -> object:
        self.requests.append((url, body))
        if self.error:
            raise self.error
        return self.answer


class CountedMetrics:
    """A ``devprov.service.port.Metrics`` that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def registration(self, *, outcome: str, attestation: str, protocol: str) -> None:
        self.calls.append(("registration", outcome, attestation, protocol))

    def attestation_failure(self, reason: str) -> None:
        self.calls.append(("attestation_failure", reason))

    def possession_attempt(self, outcome: str) -> None:
        self.calls.append(("possession_attempt", outcome))

    def observe_request(self, api: str, status: int, seconds: float) -> None:
        self.calls.append(("request", api, str(status)))


class World:
    def __init__(self, uow, clock, directory, data_root: Path | None = None) -> None:
        """``data_root``: where the credential policies' issuing keys are kept (none without)."""
        self.uow = uow
        self.data_root = data_root
        self.clock = clock
        self.service = directory.get("default")
        self.metrics = CountedMetrics()
        self.registry = CertificateRegistry(uow, clock, secrets.token_bytes, self.metrics)
        self.enrollments = EnrollmentService(uow, clock, secrets.token_bytes)
        self.hubs = HubDirectory(uow, clock)
        self.webhook = FakeWebhook()
        self.hub_calls = RecordingHubs()
        self.devices = DeviceRegistration(
            uow,
            clock,
            secrets.token_bytes,
            metrics=self.metrics,
            issuing_keys=FileIssuingKeyStore(data_root) if data_root is not None else None,
        )
        self.audit = AuditTrail(uow)
        self.hubs.add("default", "hub-a.azure-devices.net", actor="test")

    def verified_ca(self, ca: f.Ca, name: str) -> None:
        self.registry.upload("default", name, ca.pem, is_verified=True, if_match=None, actor="t")

    def unverified_ca(self, ca: f.Ca, name: str) -> None:
        self.registry.upload("default", name, ca.pem, is_verified=False, if_match=None, actor="t")

    def prove(self, name: str, ca: f.Ca) -> None:
        """Proof-of-possession of an uploaded certificate, as an operator makes it."""
        coded = self.registry.generate_code("default", name, if_match="*", actor="t")
        proof = f.verification(ca, coded.codes.current or "", now=self.clock.now)
        self.registry.verify("default", name, f.pem(proof), if_match=coded.etag, actor="t")

    def audit_reasons(self, registration_id: str) -> list[str | None]:
        """The reasons the audit log gives for this device's refused registrations."""
        return [
            event.reason
            for event in self.audit.events(registration_id=registration_id)
            if event.action == "register" and event.outcome is Outcome.FAILED
        ]

    def group(self, id: str, **attestation: Any) -> None:
        doc: dict[str, Any] = {"enrollmentGroupId": id, "attestation": attestation}
        doc.update(attestation.pop("extra", {}))
        self.enrollments.create_or_update(
            "default", EnrollmentKind.GROUP, id, doc, if_match=None, actor="t"
        )

    def individual(self, id: str, doc: dict[str, Any]) -> None:
        self.enrollments.create_or_update(
            "default",
            EnrollmentKind.INDIVIDUAL,
            id,
            {"registrationId": id, **doc},
            if_match=None,
            actor="t",
        )

    def register(self, rid: str, credentials: Credentials, payload=None, *, force=False, csr=None):
        """Register ``rid`` to its outcome (webhook and hub calls made here); ``csr`` is the
        register body's."""
        return self.devices.register_with(
            self.webhook,
            self.service.id_scope,
            rid,
            credentials,
            payload,
            force=force,
            hubs=self.hub_calls,
            csr=csr,
        )

    def epoch(self) -> int:
        """The test clock's now, in seconds: tokens expire against it, not the wall clock."""
        return int(self.clock.now.timestamp())

    def token(self, rid: str, key: str, *, expiry: int | None = None) -> Credentials:
        resource = f"{self.service.id_scope}/registrations/{rid}"
        return Credentials(
            authorization=build_sas_token(key, resource, expiry or self.epoch() + 3600)
        )


def chain(*cas: f.Ca) -> Credentials:
    """The credentials of a device that presents these certificates, its own first."""
    return Credentials(chain_der=tuple(c.der for c in cas))
