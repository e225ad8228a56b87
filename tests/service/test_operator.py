"""Portal users (service.operator) and portal sessions (service.portal_session), over a real
SQLite database and real argon2id hashes."""

from __future__ import annotations

import pytest

from devprov.service.model import Outcome
from devprov.service.operator import (
    AUDIT_SERVICE,
    MIN_PASSWORD_LENGTH,
    InvalidUserNameError,
    OperatorAccounts,
    UserExistsError,
    UserNotFoundError,
    WeakPasswordError,
)
from devprov.service.portal_session import (
    LAST_SEEN_RESOLUTION,
    LIFETIME,
    PortalSessions,
    token_id,
)
from devprov.storage.password import Argon2idHasher
from tests.conftest import Clock

PASSWORD = "correct horse battery"


class CountingHasher(Argon2idHasher):
    """The real hasher, counting the verifications it does."""

    def __init__(self) -> None:
        super().__init__()
        self.verified: list[str] = []

    def verify(self, password_hash: str, password: str) -> bool:
        self.verified.append(password_hash)
        return super().verify(password_hash, password)


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def accounts(uow, clock: Clock, hasher: CountingHasher) -> OperatorAccounts:
    return OperatorAccounts(uow, clock, hasher)


@pytest.fixture
def sessions(uow, clock: Clock, accounts: OperatorAccounts) -> PortalSessions:
    return PortalSessions(uow, clock, accounts)


def audit(uow) -> list[tuple[str, str, str | None]]:
    with uow(read_only=True) as u:
        return [
            (e.action, e.actor, e.reason)
            for e in u.audit.query(service=AUDIT_SERVICE)
            if e.outcome is Outcome.SUCCEEDED
        ]


@pytest.mark.parametrize(
    "name", ["a", "alice", "Alice.Smith", "ops_1", "alice@example.com", "x" * 64, "-"]
)
def test_a_name_by_the_rule_is_added(accounts: OperatorAccounts, name: str) -> None:
    added = accounts.add(name, PASSWORD, actor="cli:test")
    assert [u.name for u in accounts.all()] == [name]
    assert added.password_hash.startswith("$argon2id$")
    assert PASSWORD not in added.password_hash


@pytest.mark.parametrize(
    "name", ["", "x" * 65, "alice smith", "<b>", "ålice", "alice/1", "a:b"], ids=repr
)
def test_a_name_against_the_rule_is_refused(accounts: OperatorAccounts, name: str) -> None:
    with pytest.raises(InvalidUserNameError, match="A-Z a-z 0-9"):
        accounts.add(name, PASSWORD, actor="cli:test")
    assert accounts.all() == []


def test_a_short_password_is_refused_and_one_of_the_minimum_length_is_kept(
    accounts: OperatorAccounts,
) -> None:
    with pytest.raises(WeakPasswordError, match=f"at least {MIN_PASSWORD_LENGTH}"):
        accounts.add("alice", "x" * (MIN_PASSWORD_LENGTH - 1), actor="cli:test")
    assert accounts.all() == []
    accounts.add("alice", "x" * MIN_PASSWORD_LENGTH, actor="cli:test")
    assert accounts.check_password("alice", "x" * MIN_PASSWORD_LENGTH) is not None


def test_names_are_unique_ignoring_case(accounts: OperatorAccounts) -> None:
    accounts.add("Alice", PASSWORD, actor="cli:test")
    with pytest.raises(UserExistsError):
        accounts.add("alice", PASSWORD, actor="cli:test")
    accounts.add("Bob", PASSWORD, actor="cli:test")
    assert [u.name for u in accounts.all()] == ["Alice", "Bob"]


def test_the_password_is_checked_and_a_wrong_one_is_not(accounts: OperatorAccounts) -> None:
    accounts.add("alice", PASSWORD, actor="cli:test")
    assert accounts.check_password("ALICE", PASSWORD) is not None
    assert accounts.check_password("alice", PASSWORD + "!") is None


@pytest.mark.parametrize("name", ["bob", "not a name"])
def test_an_unknown_name_costs_a_verification_too(
    accounts: OperatorAccounts, hasher: CountingHasher, name: str
) -> None:
    accounts.add("alice", PASSWORD, actor="cli:test")
    assert accounts.check_password(name, PASSWORD) is None
    assert len(hasher.verified) == 1  # against the dummy hash: as slow as a wrong password
    assert hasher.verified[0].startswith("$argon2id$")


def test_adding_changing_and_removing_are_audited(uow, accounts: OperatorAccounts) -> None:
    accounts.add("alice", PASSWORD, actor="cli:root")
    accounts.change_password("alice", PASSWORD + "2", actor="cli:root")
    accounts.remove("alice", actor="cli:root")
    assert audit(uow) == [
        ("user.add", "cli:root", "user 'alice'"),
        ("user.password", "cli:root", "user 'alice'"),
        ("user.remove", "cli:root", "user 'alice'"),
    ]


def test_a_missing_user_cannot_be_removed_or_changed(accounts: OperatorAccounts, uow) -> None:
    with pytest.raises(UserNotFoundError):
        accounts.remove("nobody", actor="cli:test")
    with pytest.raises(UserNotFoundError):
        accounts.change_password("nobody", PASSWORD, actor="cli:test")
    assert audit(uow) == []


def test_a_changed_password_replaces_the_old_one(accounts: OperatorAccounts) -> None:
    accounts.add("alice", PASSWORD, actor="cli:test")
    with pytest.raises(WeakPasswordError):
        accounts.change_password("alice", "short", actor="cli:test")
    assert accounts.check_password("alice", PASSWORD) is not None
    accounts.change_password("alice", PASSWORD + "2", actor="cli:test")
    assert accounts.check_password("alice", PASSWORD) is None
    assert accounts.check_password("alice", PASSWORD + "2") is not None


# --- sessions --------------------------------------------------------------------------------


def test_a_session_is_found_by_its_token_until_it_expires(
    sessions: PortalSessions, clock: Clock
) -> None:
    record, token = sessions.open("admin")
    assert record.id == token_id(token) != token
    assert record.expires_at == clock.now + LIFETIME
    assert sessions.find(token) == record
    assert sessions.find(token + "x") is None
    clock.advance(seconds=LIFETIME.total_seconds() - 1)
    assert sessions.find(token) is not None
    clock.advance(seconds=1)
    assert sessions.find(token) is None


def test_last_seen_is_kept_to_its_resolution(sessions: PortalSessions, clock: Clock) -> None:
    record, token = sessions.open("admin")
    clock.advance(seconds=LAST_SEEN_RESOLUTION.total_seconds() / 2)
    sessions.find(token)
    found = sessions.find(token)
    assert found is not None and found.last_seen_at == record.created_at
    clock.advance(seconds=LAST_SEEN_RESOLUTION.total_seconds())
    sessions.find(token)
    found = sessions.find(token)
    assert found is not None and found.last_seen_at == clock.now


def test_closing_a_session_ends_it_and_no_other(sessions: PortalSessions) -> None:
    _, first = sessions.open("admin")
    _, second = sessions.open("admin")
    sessions.close(first)
    sessions.close("not a token")
    assert sessions.find(first) is None
    assert sessions.find(second) is not None


def test_a_sign_in_prunes_expired_sessions(sessions: PortalSessions, uow, clock: Clock) -> None:
    old, _ = sessions.open("admin")
    clock.advance(seconds=LIFETIME.total_seconds() + 1)
    sessions.open("admin")
    with uow(read_only=True) as u:
        assert u.portal_sessions.get(old.id) is None


def test_a_user_signs_in_with_their_password_only(
    sessions: PortalSessions, accounts: OperatorAccounts
) -> None:
    accounts.add("Alice", PASSWORD, actor="cli:test")
    assert sessions.sign_in_user("alice", PASSWORD + "!") is None
    assert sessions.sign_in_user("bob", PASSWORD) is None
    opened = sessions.sign_in_user("alice", PASSWORD)
    assert opened is not None
    record, token = opened
    assert record.operator == "user:Alice"  # the name as added, whatever case was typed
    assert sessions.find(token) == record


def test_removing_a_user_or_changing_the_password_ends_their_sessions_only(
    uow, sessions: PortalSessions, accounts: OperatorAccounts
) -> None:
    accounts.add("alice", PASSWORD, actor="cli:test")
    accounts.add("bob", PASSWORD, actor="cli:test")
    alice = [sessions.sign_in_user("alice", PASSWORD) for _ in range(2)]
    bob = sessions.sign_in_user("bob", PASSWORD)
    _, admin = sessions.open("admin")
    assert all(alice) and bob is not None
    assert accounts.change_password("alice", PASSWORD + "2", actor="cli:test") == 2
    assert [sessions.find(opened[1]) for opened in alice if opened] == [None, None]
    assert sessions.find(bob[1]) is not None
    assert accounts.remove("bob", actor="cli:test") == 1
    assert sessions.find(bob[1]) is None
    assert sessions.find(admin) is not None
    assert ("user.remove", "cli:test", "user 'bob'; 1 portal session ended") in audit(uow)


def test_two_instances_share_one_portal_key(uow, clock: Clock, accounts) -> None:
    first, second = PortalSessions(uow, clock, accounts), PortalSessions(uow, clock, accounts)
    assert len(first.key()) == 32
    assert second.key() == first.key()


def test_a_session_made_by_one_instance_is_found_by_another(uow, clock: Clock, accounts) -> None:
    first, second = PortalSessions(uow, clock, accounts), PortalSessions(uow, clock, accounts)
    record, token = first.open("admin")
    assert second.find(token) == record
    second.close(token)
    assert first.find(token) is None
