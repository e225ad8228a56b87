"""Portal sessions as the pages see them: who signed in, until when, and their forms' CSRF token.

The session lives in the database (service.portal_session); the cookie carries only its random
token. The CSRF token of a session is derived from the session's id with the portal's key, which
every instance on the database shares, so every form of a session carries a token no other
session can produce, whichever instance rendered it (the synchronizer-token pattern,
https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html).

The sign-in form has a token of its own (login CSRF: another site must not sign a browser in to
an account of its choosing): a short-lived pre-session cookie, and a hidden field derived from it
with the key. Both cookies are ``Secure``, ``HttpOnly`` and ``SameSite=Strict``, scoped to
``/portal``. Every database call here runs on the storage threads, never on the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from devprov.bootstrap import Container
from devprov.service.model import PortalSession
from devprov.service.port import Clock
from devprov.service.portal_session import LIFETIME

__all__ = ["COOKIE", "LIFETIME", "PATH", "SIGN_IN_COOKIE", "Session", "SessionCookies"]

COOKIE = "devprov_portal"
SIGN_IN_COOKIE = "devprov_portal_sign_in"
PATH = "/portal"
# How long a sign-in form may be filled in before it must be loaded again.
SIGN_IN_FORM_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True)
class Session:
    id: str
    operator: str  # "admin", or "user:NAME"
    expires_at: datetime
    csrf_token: str


class SessionCookies:
    """Reads, opens and ends the sessions cookies carry."""

    def __init__(self, container: Container, clock: Clock) -> None:
        self._container = container
        self._clock = clock

    async def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None when it is absent, unknown, ended or expired."""
        if not cookie:
            return None
        return await self._container.storage.run(self._read, cookie)

    async def issue(self, operator: str) -> tuple[Session, str]:
        """A new session for ``operator`` and the cookie value that carries it."""
        return await self._container.storage.run(self._issue, operator)

    async def sign_in_user(self, name: str, password: str) -> tuple[Session, str] | None:
        """A session of the user named, when the password is theirs."""
        return await self._container.storage.run(self._sign_in_user, name, password)

    async def end(self, cookie: str | None) -> None:
        await self._container.storage.run(self._container.portal_sessions.close, cookie)

    async def new_sign_in_form(self) -> tuple[str, str]:
        """(the pre-session cookie, the sign-in form's token) for a sign-in form."""
        cookie = f"{int(self._clock().timestamp())}.{secrets.token_urlsafe(18)}"
        key = await self._container.storage.run(self._container.portal_sessions.key)
        return cookie, _derive(key, f"sign-in|{cookie}")

    async def is_sign_in_form(self, cookie: str | None, token: object) -> bool:
        """True when a sign-in post carries the token of the form its pre-session cookie was
        set with, and the form is not older than ``SIGN_IN_FORM_LIFETIME``."""
        if not cookie or not isinstance(token, str) or cookie.count(".") != 1:
            return False
        issued, _ = cookie.split(".")
        if not issued.isdigit():
            return False
        age = self._clock().timestamp() - int(issued)
        if not 0 <= age <= SIGN_IN_FORM_LIFETIME.total_seconds():
            return False
        key = await self._container.storage.run(self._container.portal_sessions.key)
        return hmac.compare_digest(token, _derive(key, f"sign-in|{cookie}"))

    def _read(self, cookie: str) -> Session | None:
        record = self._container.portal_sessions.find(cookie)
        return None if record is None else self._session(record)

    def _issue(self, operator: str) -> tuple[Session, str]:
        record, token = self._container.portal_sessions.open(operator)
        return self._session(record), token

    def _sign_in_user(self, name: str, password: str) -> tuple[Session, str] | None:
        opened = self._container.portal_sessions.sign_in_user(name, password)
        if opened is None:
            return None
        record, token = opened
        return self._session(record), token

    def _session(self, record: PortalSession) -> Session:
        csrf = _derive(self._container.portal_sessions.key(), f"csrf|{record.id}")
        return Session(record.id, record.operator, record.expires_at, csrf)


def _derive(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
