"""A trust revision per service: a counter the database itself raises whenever what devices are
checked against changes (docs/storage.md#the-trust-revision).

``services.trust_revision`` goes up, by triggers, on every insert, update and delete of the
service's certificates, enrollment groups, the certificates the groups name, and linked hubs.
Individual enrollments are not counted: a device's own enrollment is read on each request. Each
server process keeps what it read of those tables beside the revision it read them at, and
reads them again only when the service's row shows another revision, so that every instance
sharing the database sees a change by any of them, made by any path, at its next request.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# (table, the condition a row must meet to count, written for NEW and OLD). Only groups count
# among enrollments: a bulk import of individual enrollments keeps every cache.
_WATCHED: tuple[tuple[str, str | None], ...] = (
    ("certificates", None),
    ("enrollments", "{row}.kind = 'group'"),
    ("enrollment_certificates", None),
    ("linked_hubs", None),
)
_BUMP = "UPDATE services SET trust_revision = trust_revision + 1 WHERE name = {row}.service"
_EVENTS = (("insert", ("NEW",)), ("update", ("OLD", "NEW")), ("delete", ("OLD",)))


def _trigger(table: str, event: str) -> str:
    return f"trust_revision_{table}_{event}"


def _when(condition: str | None, rows: tuple[str, ...]) -> str | None:
    if condition is None:
        return None
    return " OR ".join(condition.format(row=row) for row in rows)


def _sqlite_triggers() -> None:
    for table, condition in _WATCHED:
        for event, rows in _EVENTS:
            when = _when(condition, rows)
            # An update that moves a row to another service raises both services' revisions.
            body = " ".join(f"{_BUMP.format(row=row)};" for row in rows)
            op.execute(
                f"CREATE TRIGGER {_trigger(table, event)} AFTER {event.upper()} ON {table} "
                f"FOR EACH ROW {'WHEN ' + when + ' ' if when else ''}BEGIN {body} END"
            )


def _postgresql_triggers() -> None:
    op.execute(
        """
        CREATE FUNCTION devprov_trust_revision() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'INSERT' THEN
                UPDATE services SET trust_revision = trust_revision + 1 WHERE name = OLD.service;
            END IF;
            IF TG_OP <> 'DELETE' THEN
                UPDATE services SET trust_revision = trust_revision + 1 WHERE name = NEW.service;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    for table, condition in _WATCHED:
        for event, rows in _EVENTS:
            when = _when(condition, rows)
            op.execute(
                f"CREATE TRIGGER {_trigger(table, event)} AFTER {event.upper()} ON {table} "
                f"FOR EACH ROW {'WHEN (' + when + ') ' if when else ''}"
                "EXECUTE FUNCTION devprov_trust_revision()"
            )


def upgrade() -> None:
    op.add_column(
        "services",
        sa.Column("trust_revision", sa.BigInteger(), nullable=False, server_default="0"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, _ in _WATCHED:
        for event, _rows in _EVENTS:
            on = f" ON {table}" if postgresql else ""
            op.execute(f"DROP TRIGGER {_trigger(table, event)}{on}")
    if postgresql:
        op.execute("DROP FUNCTION devprov_trust_revision()")
    # ALTER TABLE, not a batch: a batch copies ``services`` and drops it, and dropping it deletes
    # every row that references it (ON DELETE CASCADE) on SQLite (3.35 and later drop a column).
    op.execute("ALTER TABLE services DROP COLUMN trust_revision")
