"""SQL implementations of the portal's stores: users and sessions (migration 0004)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, RowMapping, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from devprov.core.error import AlreadyExistsError
from devprov.service.model import PortalSession, PortalUser
from devprov.storage.table import portal_sessions, portal_users


def _user(row: RowMapping) -> PortalUser:
    return PortalUser(
        name=row["name"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        password_changed_at=row["password_changed_at"],
    )


class SqlUserStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, name: str) -> PortalUser | None:
        query = select(portal_users).where(portal_users.c.name_key == name.lower())
        row = self._c.execute(query).mappings().first()
        return _user(row) if row else None

    def lock(self, name: str) -> PortalUser | None:
        """FOR UPDATE on PostgreSQL; SQLite renders none, its BEGIN IMMEDIATE serialises
        writers already."""
        query = (
            select(portal_users).where(portal_users.c.name_key == name.lower()).with_for_update()
        )
        row = self._c.execute(query).mappings().first()
        return _user(row) if row else None

    def all(self) -> list[PortalUser]:
        rows = self._c.execute(select(portal_users).order_by(portal_users.c.name_key)).mappings()
        return [_user(row) for row in rows]

    def add(self, user: PortalUser) -> None:
        try:
            with self._c.begin_nested():
                self._c.execute(
                    insert(portal_users).values(
                        name_key=user.name.lower(),
                        name=user.name,
                        password_hash=user.password_hash,
                        created_at=user.created_at,
                        password_changed_at=user.password_changed_at,
                    )
                )
        except IntegrityError as exc:
            raise AlreadyExistsError(f"portal user '{user.name}' already exists") from exc

    def set_password(self, name: str, password_hash: str, at: datetime) -> None:
        self._c.execute(
            update(portal_users)
            .where(portal_users.c.name_key == name.lower())
            .values(password_hash=password_hash, password_changed_at=at)
        )

    def remove(self, name: str) -> None:
        self._c.execute(delete(portal_users).where(portal_users.c.name_key == name.lower()))


def _session(row: RowMapping) -> PortalSession:
    return PortalSession(
        id=row["id"],
        operator=row["operator"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_seen_at=row["last_seen_at"],
    )


class SqlPortalSessionStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, session_id: str) -> PortalSession | None:
        query = select(portal_sessions).where(portal_sessions.c.id == session_id)
        row = self._c.execute(query).mappings().first()
        return _session(row) if row else None

    def add(self, session: PortalSession) -> None:
        self._c.execute(
            insert(portal_sessions).values(
                id=session.id,
                operator=session.operator,
                created_at=session.created_at,
                expires_at=session.expires_at,
                last_seen_at=session.last_seen_at,
            )
        )

    def touch(self, session_id: str, at: datetime) -> None:
        self._c.execute(
            update(portal_sessions)
            .where(portal_sessions.c.id == session_id)
            .values(last_seen_at=at)
        )

    def remove(self, session_id: str) -> None:
        self._c.execute(delete(portal_sessions).where(portal_sessions.c.id == session_id))

    def remove_operator(self, operator: str) -> int:
        result = self._c.execute(
            delete(portal_sessions).where(portal_sessions.c.operator == operator)
        )
        return int(result.rowcount)

    def prune(self, *, before: datetime, limit: int) -> int:
        """Oldest first, by ix_portal_sessions_expires_at."""
        expired = (
            select(portal_sessions.c.id)
            .where(portal_sessions.c.expires_at < before)
            .order_by(portal_sessions.c.expires_at)
            .limit(limit)
        )
        result = self._c.execute(
            delete(portal_sessions).where(portal_sessions.c.id.in_(expired.scalar_subquery()))
        )
        return int(result.rowcount)
