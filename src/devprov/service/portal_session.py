"""Portal sessions, kept in the database so that every instance sharing it knows them.

A session is found by the SHA-256 of a random token that only the operator's cookie carries: a
copy of the database holds no usable cookie. Signing out deletes the row, so a copied cookie
stops working at once (docs/portal.md#sessions). A session lasts ``LIFETIME`` from its sign-in;
an expired row is deleted when it is read, and each sign-in deletes a batch of expired ones, so
the table holds little more than the sessions of the last working day.

The portal's key (what CSRF tokens are derived with) is one random value in the settings table,
made by the first instance that needs it and read by every other.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta

from devprov.service.model import PortalSession
from devprov.service.operator import OperatorAccounts, user_operator
from devprov.service.port import Clock, UnitOfWorkFactory
from devprov.service.retry import retrying

# A working day: an operator signs in once for a session of work, and a forgotten browser does
# not stay signed in for ever.
LIFETIME = timedelta(hours=8)
# last_seen_at is written at most this often per session: a write per page would queue every
# page behind SQLite's one writer, and "seen in the last minute" is all an operator needs.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# Expired rows one sign-in deletes: bounded, so a sign-in never holds the write lock for long.
PRUNE_PER_SIGN_IN = 100
# The session token: 32 random bytes (256 bits, OWASP Session Management Cheat Sheet asks for at
# least 64 bits of entropy). A longer cookie is not ours and is not hashed or looked up.
TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 64

PORTAL_KEY_SETTING = "portal_key"
PORTAL_KEY_BYTES = 32


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class PortalSessions:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, accounts: OperatorAccounts) -> None:
        self._uow = uow
        self._clock = clock
        self._accounts = accounts
        self._key: bytes | None = None

    def key(self) -> bytes:
        """The portal's key, shared by every instance on the database (made on first use)."""
        if self._key is None:
            with self._uow(read_only=True) as uow:
                stored = uow.settings.get(PORTAL_KEY_SETTING)
            if stored is None:
                made = base64.b64encode(secrets.token_bytes(PORTAL_KEY_BYTES)).decode("ascii")
                with self._uow() as uow:
                    # Two instances may make one at once: the first one stored is everyone's.
                    stored = uow.settings.setdefault(PORTAL_KEY_SETTING, made)
                    uow.commit()
            self._key = base64.b64decode(stored)
        return self._key

    @retrying
    def open(self, operator: str) -> tuple[PortalSession, str]:
        """A new session of ``operator`` and its token (what the cookie carries)."""
        with self._uow() as uow:
            record, token = self._open(operator)
            uow.portal_sessions.add(record)
            uow.portal_sessions.prune(before=record.created_at, limit=PRUNE_PER_SIGN_IN)
            uow.commit()
        return record, token

    def sign_in_user(self, name: str, password: str) -> tuple[PortalSession, str] | None:
        """A session of the user when ``password`` is theirs, else None (never saying which of
        the two was wrong)."""
        user = self._accounts.check_password(name, password)
        if user is None:
            return None

        @retrying
        def store() -> tuple[PortalSession, str] | None:
            with self._uow() as uow:
                # Locked, and checked again: a user removed, or a password changed, while the
                # hash was being checked gets no session (their sessions are ending).
                current = uow.users.lock(user.name)
                if current is None or current.password_hash != user.password_hash:
                    return None
                record, token = self._open(user_operator(current.name))
                uow.portal_sessions.add(record)
                uow.portal_sessions.prune(before=record.created_at, limit=PRUNE_PER_SIGN_IN)
                uow.commit()
            return record, token

        return store()

    def find(self, token: str | None) -> PortalSession | None:
        """The live session ``token`` opens, or None (no such session, or it expired)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        session_id, now = token_id(token), self._clock()
        with self._uow(read_only=True) as uow:
            record = uow.portal_sessions.get(session_id)
        if record is None:
            return None
        if record.expires_at <= now:
            self._remove(session_id)
            return None
        if now - record.last_seen_at >= LAST_SEEN_RESOLUTION:
            with self._uow() as uow:
                uow.portal_sessions.touch(session_id, now)
                uow.commit()
        return record

    def close(self, token: str | None) -> None:
        """End the session ``token`` opens (sign-out); nothing when there is none."""
        if token and len(token) <= MAX_TOKEN_LENGTH:
            self._remove(token_id(token))

    @retrying
    def _remove(self, session_id: str) -> None:
        with self._uow() as uow:
            uow.portal_sessions.remove(session_id)
            uow.commit()

    def _open(self, operator: str) -> tuple[PortalSession, str]:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        return PortalSession(token_id(token), operator, now, now + LIFETIME, now), token
