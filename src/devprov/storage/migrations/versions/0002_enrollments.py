"""Enrollments, enrollment group certificates, registration states, operations, linked hubs;
the SHA-256 of registry certificates (backfilled) and the registration id of audit events.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _service_column(*, primary_key: bool) -> sa.Column[str]:
    return sa.Column(
        "service",
        sa.String(64),
        sa.ForeignKey("services.name", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
    )


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.add_column(sa.Column("sha256", sa.String(64)))
        batch.create_index("ix_certificates_service_sha256", ["service", "sha256"])
    _backfill_certificate_thumbprints()
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("registration_id", sa.String(128)))

    op.create_table(
        "enrollments",
        _service_column(primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("id_key", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("attestation_type", sa.String(16), nullable=False),
        sa.Column("provisioning_status", sa.String(16), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_enrollments_service_kind_attestation",
        "enrollments",
        ["service", "kind", "attestation_type"],
    )
    op.create_table(
        "enrollment_certificates",
        _service_column(primary_key=True),
        sa.Column("group_key", sa.String(128), primary_key=True),
        sa.Column("slot", sa.String(16), primary_key=True),
        sa.Column("sha256", sa.String(64)),
        sa.Column("ca_name_key", sa.String(256)),
    )
    op.create_index(
        "ix_enrollment_certificates_service_sha256",
        "enrollment_certificates",
        ["service", "sha256"],
    )
    op.create_index(
        "ix_enrollment_certificates_service_ca_name",
        "enrollment_certificates",
        ["service", "ca_name_key"],
    )
    op.create_table(
        "registrations",
        _service_column(primary_key=True),
        sa.Column("registration_key", sa.String(128), primary_key=True),
        sa.Column("registration_id", sa.String(128), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("enrollment_kind", sa.String(16), nullable=False),
        sa.Column("enrollment_id", sa.String(128), nullable=False),
        sa.Column("enrollment_key", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("substatus", sa.String(64)),
        sa.Column("device_id", sa.String(128)),
        sa.Column("assigned_hub", sa.String(256)),
        sa.Column("initial_hub", sa.String(256)),
        sa.Column("error_code", sa.Integer),
        sa.Column("error_message", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text),
        sa.Column("certificate", sa.Text),
        sa.Column("signing_certificate", sa.Text),
        sa.Column("leaf_sha256", sa.String(64)),
    )
    op.create_index(
        "ix_registrations_service_enrollment",
        "registrations",
        ["service", "enrollment_kind", "enrollment_key", "registration_key"],
    )
    op.create_table(
        "operations",
        sa.Column("id", sa.String(128), primary_key=True),
        _service_column(primary_key=False),
        sa.Column("registration_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enrollment_kind", sa.String(16)),
        sa.Column("enrollment_id", sa.String(128)),
        sa.Column("leaf_sha256", sa.String(64)),
        sa.Column("error_code", sa.Integer),
        sa.Column("error_message", sa.Text),
    )
    op.create_index(
        "ix_operations_service_registration", "operations", ["service", "registration_id"]
    )
    op.create_table(
        "linked_hubs",
        _service_column(primary_key=True),
        sa.Column("host_name", sa.String(256), primary_key=True),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("apply_allocation_policy", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def _backfill_certificate_thumbprints() -> None:
    """Compute the SHA-256 of every stored certificate in Python: hashing in SQL is not portable
    between SQLite and PostgreSQL. Offline (``--sql``) there are no rows to read, so nothing to do.
    """
    if op.get_context().as_sql:
        return
    certificates = sa.table(
        "certificates",
        sa.column("id", sa.Integer),
        sa.column("der", sa.LargeBinary),
        sa.column("sha256", sa.String),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(certificates.c.id, certificates.c.der).where(certificates.c.sha256.is_(None))
    ).all()
    if not rows:
        return
    bind.execute(
        sa.update(certificates)
        .where(certificates.c.id == sa.bindparam("row_id"))
        .values(sha256=sa.bindparam("thumbprint")),
        [
            {"row_id": row_id, "thumbprint": hashlib.sha256(bytes(der)).hexdigest().upper()}
            for row_id, der in rows
        ],
    )


def downgrade() -> None:
    op.drop_table("linked_hubs")
    op.drop_index("ix_operations_service_registration", "operations")
    op.drop_table("operations")
    op.drop_index("ix_registrations_service_enrollment", "registrations")
    op.drop_table("registrations")
    op.drop_index("ix_enrollment_certificates_service_ca_name", "enrollment_certificates")
    op.drop_index("ix_enrollment_certificates_service_sha256", "enrollment_certificates")
    op.drop_table("enrollment_certificates")
    op.drop_index("ix_enrollments_service_kind_attestation", "enrollments")
    op.drop_table("enrollments")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("registration_id")
    with op.batch_alter_table("certificates") as batch:
        batch.drop_index("ix_certificates_service_sha256")
        batch.drop_column("sha256")
