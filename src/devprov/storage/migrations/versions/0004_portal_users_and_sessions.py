"""Portal users and server-side portal sessions.

``portal_users`` holds who may sign in to the portal with a password (``devprov user``), the
password only as its argon2id hash. ``portal_sessions`` holds signed-in sessions keyed by the
SHA-256 of the token the cookie carries, so every instance on the database knows them and
signing out ends one everywhere. The portal's key is a row of ``settings``, made on first use.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_users",
        sa.Column("name_key", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "portal_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("operator", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_portal_sessions_operator", "portal_sessions", ["operator"])
    op.create_index("ix_portal_sessions_expires_at", "portal_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_portal_sessions_expires_at", "portal_sessions")
    op.drop_index("ix_portal_sessions_operator", "portal_sessions")
    op.drop_table("portal_sessions")
    op.drop_table("portal_users")
    op.execute("DELETE FROM settings WHERE key = 'portal_key'")
