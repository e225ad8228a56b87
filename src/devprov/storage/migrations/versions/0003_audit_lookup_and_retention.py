"""Indexes for the audit lookup by registration id and for retention.

``devprov audit --registration ID`` compared ``lower(registration_id)``, which no index serves,
so every lookup read the whole audit table. A lower-case copy of the id, ``registration_key``
(backfilled here, written by the repository), is indexed with the row id, so a device's newest
events come from the index alone. Retention deletes audit events and finished operations oldest
first, by ``at`` and ``created_at``.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("registration_key", sa.String(128)))
    # lower() in SQL folds ASCII alike on SQLite and PostgreSQL, and ids are ASCII.
    op.execute(
        "UPDATE audit_events SET registration_key = lower(registration_id) "
        "WHERE registration_id IS NOT NULL"
    )
    op.create_index("ix_audit_events_registration_key", "audit_events", ["registration_key", "id"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_operations_created_at", "operations", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_operations_created_at", "operations")
    op.drop_index("ix_audit_events_at", "audit_events")
    op.drop_index("ix_audit_events_registration_key", "audit_events")
    with op.batch_alter_table("audit_events") as batch:
        batch.drop_column("registration_key")
