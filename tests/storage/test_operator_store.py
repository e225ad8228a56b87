"""The portal's stores (users, sessions) and the settings' setdefault, on SQLite and PostgreSQL,
on databases built by the migrations (0004)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, inspect

from devprov.core.error import AlreadyExistsError
from devprov.service.model import PortalSession, PortalUser
from devprov.storage.database import create_database_engine, migrate
from devprov.storage.repository import SqlUnitOfWork
from tests import factory as f
from tests.storage.test_repository import run_alembic


def user(name: str = "Alice", password_hash: str = "$argon2id$v=19$m=8,t=1,p=1$x$y") -> PortalUser:
    return PortalUser(name, password_hash, f.NOW, f.NOW)


def session(id: str, operator: str = "user:Alice", *, expires_in: int = 3600) -> PortalSession:
    return PortalSession(id, operator, f.NOW, f.NOW + timedelta(seconds=expires_in), f.NOW)


def test_a_user_round_trips_and_is_found_ignoring_case(uow) -> None:
    with uow() as u:
        u.users.add(user())
        u.commit()
    with uow(read_only=True) as u:
        assert u.users.get("alice") == user()
        assert u.users.get("ALICE") == user()
        assert u.users.get("bob") is None
        assert u.users.all() == [user()]


def test_user_names_are_unique_ignoring_case(uow) -> None:
    with uow() as u:
        u.users.add(user("Alice"))
        with pytest.raises(AlreadyExistsError):
            u.users.add(user("ALICE"))
        u.users.add(user("Bob"))  # the unit goes on after the refused insert
        u.commit()
    with uow(read_only=True) as u:
        assert [x.name for x in u.users.all()] == ["Alice", "Bob"]


def test_a_password_change_and_a_removal_are_kept(uow) -> None:
    with uow() as u:
        u.users.add(user())
        u.commit()
    later = f.NOW + timedelta(days=1)
    with uow() as u:
        locked = u.users.lock("alice")
        assert locked == user()
        u.users.set_password("alice", "new-hash", later)
        u.commit()
    with uow() as u:
        changed = u.users.get("Alice")
        assert changed is not None
        assert (changed.password_hash, changed.password_changed_at) == ("new-hash", later)
        assert changed.created_at == f.NOW
        u.users.remove("ALICE")
        u.commit()
    with uow(read_only=True) as u:
        assert u.users.get("alice") is None
        assert u.users.lock("alice") is None


def test_a_session_round_trips_and_is_touched(uow) -> None:
    with uow() as u:
        u.portal_sessions.add(session("a" * 64))
        u.commit()
    with uow() as u:
        assert u.portal_sessions.get("a" * 64) == session("a" * 64)
        assert u.portal_sessions.get("b" * 64) is None
        u.portal_sessions.touch("a" * 64, f.NOW + timedelta(minutes=5))
        u.commit()
    with uow(read_only=True) as u:
        found = u.portal_sessions.get("a" * 64)
        assert found is not None and found.last_seen_at == f.NOW + timedelta(minutes=5)


def test_an_operators_sessions_end_together_and_no_others(uow) -> None:
    with uow() as u:
        u.portal_sessions.add(session("1", "user:Alice"))
        u.portal_sessions.add(session("2", "user:Alice"))
        u.portal_sessions.add(session("3", "user:Bob"))
        u.portal_sessions.add(session("4", "admin"))
        u.commit()
    with uow() as u:
        assert u.portal_sessions.remove_operator("user:Alice") == 2
        assert u.portal_sessions.remove_operator("user:Nobody") == 0
        u.portal_sessions.remove("4")
        u.commit()
    with uow(read_only=True) as u:
        assert [u.portal_sessions.get(i) is not None for i in "1234"] == [
            False,
            False,
            True,
            False,
        ]


def test_prune_deletes_expired_sessions_oldest_first_within_its_limit(uow) -> None:
    with uow() as u:
        for i, expires_in in enumerate([-30, -10, -20, 60]):
            u.portal_sessions.add(session(str(i), expires_in=expires_in))
        u.commit()
    with uow() as u:
        assert u.portal_sessions.prune(before=f.NOW, limit=2) == 2
        u.commit()
    with uow(read_only=True) as u:
        kept = [i for i in "0123" if u.portal_sessions.get(i) is not None]
    assert kept == ["1", "3"]  # the latest expired one, and the live one


def test_setdefault_keeps_the_first_value(uow) -> None:
    with uow() as u:
        assert u.settings.setdefault("k", "first") == "first"
        assert u.settings.setdefault("k", "second") == "first"
        u.commit()
    with uow(read_only=True) as u:
        assert u.settings.get("k") == "first"


def test_setdefault_of_two_engines_agrees_on_one_value(database_url: str) -> None:
    """Two instances on one database making the portal key: both read the one stored first."""
    first, second = create_database_engine(database_url), create_database_engine(database_url)
    migrate(first)
    try:
        with SqlUnitOfWork(first) as a:
            assert a.settings.setdefault("k", "from-first") == "from-first"
            a.commit()
        with SqlUnitOfWork(second) as b:
            assert b.settings.setdefault("k", "from-second") == "from-first"
            b.commit()
    finally:
        first.dispose()
        second.dispose()


def test_0004_downgrades_to_0003_and_upgrades_again(fresh_engine: Engine) -> None:
    migrate(fresh_engine)
    with SqlUnitOfWork(fresh_engine) as u:
        u.users.add(user())
        u.settings.put("portal_key", "k")
        u.commit()
    run_alembic(fresh_engine, "downgrade", "0003")
    tables = set(inspect(fresh_engine).get_table_names())
    assert not {"portal_users", "portal_sessions"} & tables
    with SqlUnitOfWork(fresh_engine) as u:
        assert u.settings.get("portal_key") is None  # sessions made with it are gone too
    migrate(fresh_engine)
    with SqlUnitOfWork(fresh_engine) as u:
        assert u.users.all() == []
        u.users.add(user())
        u.commit()
