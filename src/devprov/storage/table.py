"""The tables, as SQLAlchemy Core metadata. The migrations create them; this describes them
for the repositories. Keep the two in step (tests/storage compares them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
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
    UniqueConstraint("service", "name_key", name="uq_certificates_service_name"),
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
    Index("ix_audit_events_service_at", "service", "at"),
)

settings = Table(
    "settings",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)
