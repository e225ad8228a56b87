"""Hub kinds: what an assignment creates in a linked hub (docs/hubs.md#hub-kinds).

``linked_hubs.kind`` is ``none`` (devprov names the hub and creates nothing, as before this
revision), ``azure-iothub`` or ``mosquitto``; ``settings`` is a JSON object of strings holding
what reaches the hub, its secrets included (kept like the enrollments' symmetric keys), NULL for
``none``. Hubs linked before this revision keep working as kind ``none``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("linked_hubs") as batch:
        batch.add_column(sa.Column("kind", sa.String(32), nullable=False, server_default="none"))
        batch.add_column(sa.Column("settings", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("linked_hubs") as batch:
        batch.drop_column("settings")
        batch.drop_column("kind")
