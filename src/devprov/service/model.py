"""The records the use cases load and store: provisioning services, registry certificates,
shared access policies and audit events. Frozen values; stores return new ones."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509

from devprov.core.certificate import CertificateFacts, describe_der, load_der
from devprov.core.possession import DEFAULT_CODE_LIFETIME, VerificationCodes
from devprov.service.hub_identity import HubConnection, HubKind

# DPS allows 25 CA certificates per instance (docs/dps-wire.md#limits-and-quotas); devprov makes
# it a per-service setting with that default.
DEFAULT_MAX_CERTIFICATES = 25

# DPS's rights (docs/dps-wire.md#shared-access-policies-and-rights); the default policy holds all
# of them.
ALL_RIGHTS = frozenset(
    {
        "ServiceConfig",
        "EnrollmentRead",
        "EnrollmentWrite",
        "DeviceConnect",
        "RegistrationStatusRead",
        "RegistrationStatusWrite",
    }
)
OWNER_POLICY = "provisioningserviceowner"


class VerificationMethod(enum.Enum):
    SELF_ATTESTED = "selfAttested"
    PROOF_OF_POSSESSION = "proofOfPossession"


@dataclass(frozen=True)
class ProvisioningService:
    name: str
    id_scope: str
    created_at: datetime
    max_certificates: int = DEFAULT_MAX_CERTIFICATES
    code_lifetime: timedelta = DEFAULT_CODE_LIFETIME
    # Raised by the database whenever the service's certificates, enrollment groups or linked
    # hubs change (docs/storage.md#the-trust-revision); 0 for a service not read from one.
    trust_revision: int = 0


@dataclass(frozen=True)
class AccessPolicy:
    service: str
    name: str
    primary_key: str
    secondary_key: str
    rights: frozenset[str] = ALL_RIGHTS


@dataclass(frozen=True)
class CertificateRecord:
    service: str
    name: str
    der: bytes
    is_verified: bool
    verification_method: VerificationMethod | None
    verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    etag: str
    codes: VerificationCodes = field(default_factory=VerificationCodes)

    @property
    def certificate(self) -> x509.Certificate:
        return load_der(self.der)

    @property
    def facts(self) -> CertificateFacts:
        return describe_der(self.der)


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class AuditEvent:
    at: datetime
    service: str
    action: str
    outcome: Outcome
    actor: str
    certificate: str | None = None
    reason: str | None = None
    error_code: str | None = None
    api_version: str | None = None
    registration_id: str | None = None
    id: int | None = None  # the store's sequence number; None until recorded


@dataclass(frozen=True)
class AuditFilter:
    """Which audit events a paged read returns; None matches any. ``action`` and ``actor`` match
    exactly; ``registration_id`` and ``certificate`` ignoring case (ids and certificate names
    compare that way everywhere); ``since`` is inclusive and ``until`` exclusive."""

    service: str | None = None
    action: str | None = None
    actor: str | None = None
    registration_id: str | None = None
    certificate: str | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditPosition:
    """Where a newest-first read of the audit log stopped: its last event's time and id."""

    at: datetime
    id: int


@dataclass(frozen=True)
class HubRecord:
    """An IoT hub linked to a provisioning service, which allocation may assign devices to."""

    service: str
    host_name: str  # lower-case host name, e.g. myhub.azure-devices.net
    weight: int
    apply_allocation_policy: bool
    created_at: datetime
    # What an assignment creates there (docs/hubs.md#hub-kinds), and what reaches it: the keys
    # its kind names, secrets included (never printed: see ``shown_settings``). Empty for none.
    kind: HubKind = HubKind.NONE
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def connection(self) -> HubConnection | None:
        """What the hub adapters need, or None for a hub that creates nothing."""
        if self.kind is HubKind.NONE:
            return None
        return HubConnection(self.kind, self.host_name, dict(self.settings))


@dataclass(frozen=True)
class Operation:
    """One register call: what a device polls with its operationId."""

    id: str
    service: str
    registration_id: str
    created_at: datetime
    status: str  # assigning, assigned, failed, disabled
    enrollment_kind: str | None = None
    enrollment_id: str | None = None
    leaf_sha256: str | None = None  # the certificate that registered (X.509)
    error_code: int | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class PortalUser:
    """Who may sign in to the portal with a password (service.operator)."""

    name: str
    password_hash: str  # argon2id, in its PHC string form ($argon2id$v=19$...)
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True)
class PortalSession:
    """A signed-in portal session (service.portal_session)."""

    id: str  # the hex SHA-256 of the token the cookie carries: the row's key
    operator: str  # "admin", or "user:NAME"
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
