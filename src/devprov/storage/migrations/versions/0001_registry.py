"""Provisioning services, access policies, the certificate registry, audit log and settings.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("id_scope", sa.String(32), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_certificates", sa.Integer, nullable=False),
        sa.Column("code_lifetime_seconds", sa.Integer, nullable=False),
    )
    op.create_table(
        "access_policies",
        sa.Column(
            "service",
            sa.String(64),
            sa.ForeignKey("services.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("primary_key", sa.String(128), nullable=False),
        sa.Column("secondary_key", sa.String(128), nullable=False),
        sa.Column("rights", sa.String(256), nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "service",
            sa.String(64),
            sa.ForeignKey("services.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("name_key", sa.String(256), nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("is_verified", sa.Boolean, nullable=False),
        sa.Column("verification_method", sa.String(32)),
        sa.Column("verified_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("code", sa.String(128)),
        sa.Column("code_issued_at", sa.DateTime(timezone=True)),
        sa.Column("superseded_codes", sa.Text, nullable=False),
        sa.Column("used_codes", sa.Text, nullable=False),
        sa.UniqueConstraint("service", "name_key", name="uq_certificates_service_name"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("certificate", sa.String(256)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("error_code", sa.String(64)),
        sa.Column("api_version", sa.String(64)),
    )
    op.create_index("ix_audit_events_service_at", "audit_events", ["service", "at"])
    op.create_table(
        "settings",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_index("ix_audit_events_service_at", "audit_events")
    op.drop_table("audit_events")
    op.drop_table("certificates")
    op.drop_table("access_policies")
    op.drop_table("services")
