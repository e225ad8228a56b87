"""The tables, as SQLAlchemy Core metadata. The migrations create them; this describes them
for the repositories. Keep the two in step (tests/storage compares them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the backend keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

services = Table(
    "services",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("id_scope", String(32), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("max_certificates", Integer, nullable=False),
    Column("code_lifetime_seconds", Integer, nullable=False),
    # 0006: raised by triggers whenever the service's certificates, enrollment groups or linked
    # hubs change; device attestation keeps what it read of them until it moves
    # (service.trust, docs/storage.md#the-trust-revision).
    Column("trust_revision", BigInteger, nullable=False, server_default="0"),
)

access_policies = Table(
    "access_policies",
    metadata,
    Column(
        "service", String(64), ForeignKey("services.name", ondelete="CASCADE"), primary_key=True
    ),
    Column("name", String(64), primary_key=True),
    Column("primary_key", String(128), nullable=False),
    Column("secondary_key", String(128), nullable=False),
    Column("rights", String(256), nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(64), ForeignKey("services.name", ondelete="CASCADE"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("name_key", String(256), nullable=False),
    Column("der", LargeBinary, nullable=False),
    Column("is_verified", Boolean, nullable=False),
    Column("verification_method", String(32)),
    Column("verified_at", UtcDateTime()),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("etag", String(64), nullable=False),
    Column("code", String(128)),
    Column("code_issued_at", UtcDateTime()),
    Column("superseded_codes", Text, nullable=False),
    Column("used_codes", Text, nullable=False),
    # Upper-case hex SHA-256 of der (0002): how caReferences of enrollment groups are matched.
    Column("sha256", String(64)),
    UniqueConstraint("service", "name_key", name="uq_certificates_service_name"),
    Index("ix_certificates_service_sha256", "service", "sha256"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("service", String(64), nullable=False),
    Column("certificate", String(256)),
    Column("action", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", Text),
    Column("error_code", String(64)),
    Column("api_version", String(64)),
    Column("registration_id", String(128)),
    # Lower-case registration_id (0003): ids compare ignoring case, and `devprov audit
    # --registration` finds a device's events by this index, newest first.
    Column("registration_key", String(128)),
    Index("ix_audit_events_service_at", "service", "at"),
    Index("ix_audit_events_registration_key", "registration_key", "id"),
    # Retention deletes the oldest events first (0003).
    Index("ix_audit_events_at", "at"),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

# --- 0002: enrollments, registrations, operations, linked hubs --------------------------------

# Individual enrollments and enrollment groups. The columns are what queries filter and order
# by; ``document`` is JSON of the rest of the value (storage.enrollment_repository). The primary
# key is both the case-insensitive uniqueness of ids and the index pages are read in.
enrollments = Table(
    "enrollments",
    metadata,
    Column(
        "service", String(64), ForeignKey("services.name", ondelete="CASCADE"), primary_key=True
    ),
    Column("kind", String(16), primary_key=True),
    Column("id_key", String(128), primary_key=True),
    Column("id", String(128), nullable=False),
    Column("attestation_type", String(16), nullable=False),
    Column("provisioning_status", String(16), nullable=False),
    Column("etag", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("document", Text, nullable=False),
    # 0007: the credential policy the enrollment names (lower-case), for "in use" counts.
    Column("credential_policy_key", String(64), nullable=True),
    Index("ix_enrollments_service_kind_attestation", "service", "kind", "attestation_type"),
    Index("ix_enrollments_service_credential_policy", "service", "credential_policy_key"),
)

# The certificates an enrollment group attests with, one row per slot: the SHA-256 of an inline
# signing certificate, or the name of the registry certificate a caReference points at. Kept in
# step with ``enrollments`` by the repository, so a device's chain finds its group by index.
enrollment_certificates = Table(
    "enrollment_certificates",
    metadata,
    Column(
        "service", String(64), ForeignKey("services.name", ondelete="CASCADE"), primary_key=True
    ),
    Column("group_key", String(128), primary_key=True),
    Column("slot", String(16), primary_key=True),
    Column("sha256", String(64)),
    Column("ca_name_key", String(256)),
    Index("ix_enrollment_certificates_service_sha256", "service", "sha256"),
    Index("ix_enrollment_certificates_service_ca_name", "service", "ca_name_key"),
)

registrations = Table(
    "registrations",
    metadata,
    Column(
        "service", String(64), ForeignKey("services.name", ondelete="CASCADE"), primary_key=True
    ),
    Column("registration_key", String(128), primary_key=True),
    Column("registration_id", String(128), nullable=False),
    Column("method", String(16), nullable=False),
    Column("enrollment_kind", String(16), nullable=False),
    Column("enrollment_id", String(128), nullable=False),
    # Lower-case enrollment_id: groups are matched ignoring case, and by this index.
    Column("enrollment_key", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("substatus", String(64)),
    Column("device_id", String(128)),
    Column("assigned_hub", String(256)),
    Column("initial_hub", String(256)),
    Column("error_code", Integer),
    Column("error_message", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("etag", String(64), nullable=False),
    Column("payload", Text),
    Column("certificate", Text),
    Column("signing_certificate", Text),
    Column("leaf_sha256", String(64)),
    Index(
        "ix_registrations_service_enrollment",
        "service",
        "enrollment_kind",
        "enrollment_key",
        "registration_key",
    ),
)

operations = Table(
    "operations",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("service", String(64), ForeignKey("services.name", ondelete="CASCADE"), nullable=False),
    Column("registration_id", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("enrollment_kind", String(16)),
    Column("enrollment_id", String(128)),
    Column("leaf_sha256", String(64)),
    Column("error_code", Integer),
    Column("error_message", Text),
    Index("ix_operations_service_registration", "service", "registration_id"),
    # Retention deletes the oldest finished operations first (0003).
    Index("ix_operations_created_at", "created_at"),
)

linked_hubs = Table(
    "linked_hubs",
    metadata,
    Column(
        "service", String(64), ForeignKey("services.name", ondelete="CASCADE"), primary_key=True
    ),
    Column("host_name", String(256), primary_key=True),
    Column("weight", Integer, nullable=False),
    Column("apply_allocation_policy", Boolean, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # 0005: what an assignment creates there (service.hub_identity.HubKind), and the settings
    # that reach it as a JSON object of strings, secrets included; NULL for kind none.
    Column("kind", String(32), nullable=False, server_default="none"),
    Column("settings", Text, nullable=True),
)

# --- 0004: portal users and sessions ------------------------------------------------------

# Users who sign in to the portal with a password (service.operator). ``name_key`` is the
# lower-case name: names are unique ignoring case.
portal_users = Table(
    "portal_users",
    metadata,
    Column("name_key", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("password_changed_at", UtcDateTime(), nullable=False),
)

# Signed-in portal sessions (service.portal_session), keyed by the SHA-256 of the cookie's token.
portal_sessions = Table(
    "portal_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("operator", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    # Removing a user or changing a password ends that user's sessions.
    Index("ix_portal_sessions_operator", "operator"),
    # Each sign-in deletes a batch of expired sessions, oldest first.
    Index("ix_portal_sessions_expires_at", "expires_at"),
)

# --- 0007: credential policies and the operational certificates issued under them ------------

# A service's credential policies (core.credential_policy). ``name_key`` is the lower-case name;
# ``ca_chain`` the issuing CA's PEM first, then what is above it. The key is a secret file
# (storage.issuing_key), never a column.
credential_policies = Table(
    "credential_policies",
    metadata,
    Column(
        "service", String(64), ForeignKey("services.name", ondelete="CASCADE"), primary_key=True
    ),
    Column("name_key", String(64), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("ca_chain", Text, nullable=False),
    Column("validity_days", Integer, nullable=False),
    Column("organization", String(64)),
    Column("organizational_unit", String(64)),
    Column("server_auth", Boolean, nullable=False),
    Column("crl_number", BigInteger, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("etag", String(64), nullable=False),
)

# Every operational certificate issued, kept after its policy is gone (the records of what was
# issued outlive it). ``serial`` is upper-case hex; ``registration_key`` the lower-case id.
issued_certificates = Table(
    "issued_certificates",
    metadata,
    Column(
        "service", String(64), ForeignKey("services.name", ondelete="CASCADE"), primary_key=True
    ),
    Column("serial", String(48), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("registration_id", String(128), nullable=False),
    Column("registration_key", String(128), nullable=False),
    Column("policy_key", String(64), nullable=False),
    Column("policy", String(64), nullable=False),
    Column("not_before", UtcDateTime(), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),
    Column("issued_at", UtcDateTime(), nullable=False),
    Column("certificate", LargeBinary, nullable=False),
    Column("operation_id", String(128)),
    Column("superseded_at", UtcDateTime()),
    Column("revoked_at", UtcDateTime()),
    # A device presenting its operational certificate is found by the certificate's SHA-256.
    Index("ix_issued_certificates_service_sha256", "service", "sha256", unique=True),
    Index("ix_issued_certificates_service_registration", "service", "registration_key"),
    Index("ix_issued_certificates_service_policy", "service", "policy_key", "issued_at"),
    Index("ix_issued_certificates_operation", "operation_id"),
)
