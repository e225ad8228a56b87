"""The portal's users: who may sign in with a user name and password, beside the admin token.

Users belong to the database (so every instance sharing it knows them) and are managed with
``devprov user`` (docs/portal.md#users). A password is kept only as its argon2id hash (the
``PasswordHasher`` port; storage.password). Adding, removing a user and changing a password are
audited under the service ``-``, which names no provisioning service (service names are at least
three characters, service.provisioning). Removing a user or changing a password ends that user's
portal sessions, in the same transaction.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

from devprov.core.error import AlreadyExistsError, InvalidInputError, NotFoundError
from devprov.service.model import AuditEvent, Outcome, PortalUser
from devprov.service.port import Clock, UnitOfWork, UnitOfWorkFactory
from devprov.service.retry import retrying

log = logging.getLogger("devprov.operator")

# A user name: 1 to 64 of letters, digits and ``. _ @ -``, so an e-mail address fits; compared
# ignoring case. Nothing that needs escaping anywhere it is shown (audit lines, the portal).
USER_NAME_RULE = "1 to 64 of the characters A-Z a-z 0-9 . _ @ -"
_USER_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")

# NIST SP 800-63B 5.1.1.2 asks for at least 8 characters of a chosen secret; 12 leaves room for
# the guessing the sign-in limit allows over a long time. The upper bound keeps hashing cheap
# for the server: argon2 reads the whole password.
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

# The service audit events about users are recorded under (no provisioning service is named so).
AUDIT_SERVICE = "-"


class InvalidUserNameError(InvalidInputError):
    """A user name breaks the rule (1 to 64 of A-Z a-z 0-9 . _ @ -)."""

    code = "InvalidUserName"
    number = 400440


class WeakPasswordError(InvalidInputError):
    """A new password is shorter than 12 characters (or longer than 1024)."""

    code = "PasswordTooWeak"
    number = 400441


class UserNotFoundError(NotFoundError):
    """No portal user has that name."""

    code = "UserNotFound"
    number = 404440


class UserExistsError(AlreadyExistsError):
    """A portal user of that name (ignoring case) exists already."""

    code = "UserAlreadyExists"
    number = 409440


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...
    def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` is the one ``password_hash`` was made from."""
        ...


def validate_user_name(name: str) -> str:
    if not _USER_NAME.fullmatch(name):
        raise InvalidUserNameError(f"{name!r} is not a user name: use {USER_NAME_RULE}")
    return name


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(
            f"the password has {len(password)} characters; use at least {MIN_PASSWORD_LENGTH} "
            "(a phrase of several words is easy to remember)"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
    return password


def user_operator(name: str) -> str:
    """The operator a user's portal session names (``user:NAME``; the audit actor adds
    ``portal:``)."""
    return f"user:{name}"


class OperatorAccounts:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, hasher: PasswordHasher) -> None:
        self._uow = uow
        self._clock = clock
        self._hasher = hasher
        # What an unknown name's password is checked against, so that a sign-in takes as long
        # whether the name exists or not (OWASP Authentication Cheat Sheet, "Authentication
        # Responses"). Made on first use: hashing costs tens of milliseconds.
        self._dummy: str | None = None

    def all(self) -> list[PortalUser]:
        with self._uow(read_only=True) as uow:
            return uow.users.all()

    @retrying
    def add(self, name: str, password: str, *, actor: str) -> PortalUser:
        validate_user_name(name)
        password_hash = self._hasher.hash(validate_password(password))
        now = self._clock()
        user = PortalUser(name, password_hash, now, now)
        with self._uow() as uow:
            exists = UserExistsError(
                f"a portal user named '{name}' exists already (names compare ignoring case)"
            )
            if uow.users.get(name) is not None:
                raise exists
            try:
                uow.users.add(user)
            except AlreadyExistsError as exc:  # added by another instance meanwhile
                raise exists from exc
            self._audit(uow, "user.add", name, actor)
            uow.commit()
        log.info("portal user '%s' added by %s", name, actor)
        return user

    @retrying
    def remove(self, name: str, *, actor: str) -> int:
        """Remove the user and end their sessions; how many sessions ended."""
        with self._uow() as uow:
            user = _require(uow, name)
            uow.users.remove(user.name)
            ended = uow.portal_sessions.remove_operator(user_operator(user.name))
            self._audit(uow, "user.remove", user.name, actor, ended)
            uow.commit()
        log.info("portal user '%s' removed by %s; %d sessions ended", user.name, actor, ended)
        return ended

    @retrying
    def change_password(self, name: str, password: str, *, actor: str) -> int:
        """Set a new password and end the user's sessions; how many sessions ended."""
        password_hash = self._hasher.hash(validate_password(password))
        with self._uow() as uow:
            user = _require(uow, name, lock=True)
            uow.users.set_password(user.name, password_hash, self._clock())
            ended = uow.portal_sessions.remove_operator(user_operator(user.name))
            self._audit(uow, "user.password", user.name, actor, ended)
            uow.commit()
        log.info("password of portal user '%s' changed by %s", user.name, actor)
        return ended

    def check_password(self, name: str, password: str) -> PortalUser | None:
        """The user when ``password`` is theirs, else None. Takes as long for a name that does
        not exist (or breaks the rule) as for a wrong password."""
        user = None
        if _USER_NAME.fullmatch(name):
            with self._uow(read_only=True) as uow:
                user = uow.users.get(name)
        stored = user.password_hash if user is not None else self._dummy_hash()
        matches = self._hasher.verify(stored, password[:MAX_PASSWORD_LENGTH])
        return user if matches and user is not None else None

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self._hasher.hash("not a password of any user")
        return self._dummy

    def _audit(
        self, uow: UnitOfWork, action: str, name: str, actor: str, ended: int | None = None
    ) -> None:
        reason = f"user '{name}'"
        if ended:
            reason += f"; {ended} portal session{'s' if ended != 1 else ''} ended"
        uow.audit.record(
            AuditEvent(
                at=self._clock(),
                service=AUDIT_SERVICE,
                action=action,
                outcome=Outcome.SUCCEEDED,
                actor=actor,
                reason=reason,
            )
        )


def _require(uow: UnitOfWork, name: str, *, lock: bool = False) -> PortalUser:
    user = uow.users.lock(name) if lock else uow.users.get(name)
    if user is None:
        raise UserNotFoundError(f"no portal user is named '{name}'; 'devprov user list' shows them")
    return user
