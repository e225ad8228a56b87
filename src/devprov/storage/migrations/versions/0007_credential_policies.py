"""Credential policies and issued operational certificates (docs/operational-certificates.md).

``credential_policies`` holds each service's policies (the issuing CA's chain, the validity and
subject profile of what it issues, the number of its last CRL); the issuing keys are secret files,
not columns. ``issued_certificates`` records every operational certificate issued at a
registration. ``enrollments.credential_policy_key`` names the policy an enrollment links to, so
that a policy in use is found by index. A policy's row counts toward the service's trust revision
(0006): its CA is trusted for its own devices' renewals.

Plain ``ADD COLUMN``, not a batch: a batch copies ``enrollments`` and would drop its triggers.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_EVENTS = ("insert", "update", "delete")
_BUMP = "UPDATE services SET trust_revision = trust_revision + 1 WHERE name = {row}.service"


def _trigger(event: str) -> str:
    return f"trust_revision_credential_policies_{event}"


def upgrade() -> None:
    utc = sa.DateTime(timezone=True)
    op.create_table(
        "credential_policies",
        sa.Column(
            "service",
            sa.String(64),
            sa.ForeignKey("services.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name_key", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("ca_chain", sa.Text(), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=False),
        sa.Column("organization", sa.String(64)),
        sa.Column("organizational_unit", sa.String(64)),
        sa.Column("server_auth", sa.Boolean(), nullable=False),
        sa.Column("crl_number", sa.BigInteger(), nullable=False),
        sa.Column("created_at", utc, nullable=False),
        sa.Column("etag", sa.String(64), nullable=False),
    )
    op.create_table(
        "issued_certificates",
        sa.Column(
            "service",
            sa.String(64),
            sa.ForeignKey("services.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("serial", sa.String(48), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("registration_id", sa.String(128), nullable=False),
        sa.Column("registration_key", sa.String(128), nullable=False),
        sa.Column("policy_key", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(64), nullable=False),
        sa.Column("not_before", utc, nullable=False),
        sa.Column("not_after", utc, nullable=False),
        sa.Column("issued_at", utc, nullable=False),
        sa.Column("certificate", sa.LargeBinary(), nullable=False),
        sa.Column("operation_id", sa.String(128)),
        sa.Column("superseded_at", utc),
        sa.Column("revoked_at", utc),
    )
    op.create_index(
        "ix_issued_certificates_service_sha256",
        "issued_certificates",
        ["service", "sha256"],
        unique=True,
    )
    op.create_index(
        "ix_issued_certificates_service_registration",
        "issued_certificates",
        ["service", "registration_key"],
    )
    op.create_index(
        "ix_issued_certificates_service_policy",
        "issued_certificates",
        ["service", "policy_key", "issued_at"],
    )
    op.create_index("ix_issued_certificates_operation", "issued_certificates", ["operation_id"])
    op.add_column("enrollments", sa.Column("credential_policy_key", sa.String(64), nullable=True))
    op.create_index(
        "ix_enrollments_service_credential_policy",
        "enrollments",
        ["service", "credential_policy_key"],
    )
    if op.get_bind().dialect.name == "postgresql":
        for event in _EVENTS:
            op.execute(
                f"CREATE TRIGGER {_trigger(event)} AFTER {event.upper()} ON credential_policies "
                "FOR EACH ROW EXECUTE FUNCTION devprov_trust_revision()"
            )
    else:
        for event, rows in (("insert", ("NEW",)), ("update", ("OLD", "NEW")), ("delete", ("OLD",))):
            body = " ".join(f"{_BUMP.format(row=row)};" for row in rows)
            op.execute(
                f"CREATE TRIGGER {_trigger(event)} AFTER {event.upper()} ON credential_policies "
                f"FOR EACH ROW BEGIN {body} END"
            )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for event in _EVENTS:
        op.execute(
            f"DROP TRIGGER {_trigger(event)}{' ON credential_policies' if postgresql else ''}"
        )
    op.drop_index("ix_enrollments_service_credential_policy", table_name="enrollments")
    op.execute("ALTER TABLE enrollments DROP COLUMN credential_policy_key")
    op.drop_table("issued_certificates")
    op.drop_table("credential_policies")
