"""Portal sessions: who signed in, until when, and the CSRF token their forms carry.

The session cookie holds a signed value (HMAC-SHA256); the CSRF token is derived from the
session's random id with the same key, so every form of a session carries a token no other
session can produce (the synchronizer-token pattern,
https://cheatsheetseries.owasp.org/cheatsheets/Cross-Site_Request_Forgery_Prevention_Cheat_Sheet.html).
The cookie is ``Secure``, ``HttpOnly`` and ``SameSite=Strict``, scoped to ``/portal``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from devprov.service.port import Clock

COOKIE = "devprov_portal"
PATH = "/portal"
# A working day: an operator signs in once for a session of work, and a forgotten browser does
# not stay signed in for ever.
LIFETIME = timedelta(hours=8)


@dataclass(frozen=True)
class Session:
    id: str
    operator: str  # "admin", or "user:NAME"
    expires_at: datetime
    csrf_token: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and reads session cookies signed with one key."""

    def __init__(self, key: bytes, clock: Clock) -> None:
        self._key = key
        self._clock = clock

    def issue(self, operator: str) -> tuple[Session, str]:
        """A new session for ``operator`` and the cookie value that carries it."""
        session_id = secrets.token_urlsafe(18)
        expires_at = self._clock() + LIFETIME
        payload = _b64(
            json.dumps(
                {"sid": session_id, "op": operator, "exp": int(expires_at.timestamp())},
                separators=(",", ":"),
            ).encode()
        )
        return self._session(session_id, operator, expires_at), f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie carries, or None when it is absent, forged or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            fields = json.loads(_unb64(payload))
            session_id, operator = str(fields["sid"]), str(fields["op"])
            expires_at = datetime.fromtimestamp(int(fields["exp"]), UTC)
        except (ValueError, KeyError, TypeError):
            return None
        if expires_at <= self._clock():
            return None
        return self._session(session_id, operator, expires_at)

    def _session(self, session_id: str, operator: str, expires_at: datetime) -> Session:
        csrf = hmac.new(self._key, f"csrf|{session_id}".encode(), hashlib.sha256).hexdigest()
        return Session(session_id, operator, expires_at, csrf)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())
