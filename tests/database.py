"""A fresh database per test on either engine: a SQLite file in the test's directory, or a
PostgreSQL database ``devprov_test_<random>`` on the server at $DEVPROV_TEST_POSTGRESQL_URL
(default 127.0.0.1:5432, user postgres), dropped afterwards. Where no PostgreSQL server answers,
the PostgreSQL side skips with the reason (docs/storage.md#how-the-tests-pick-their-database)."""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from devprov.storage.database import sqlite_url

ENGINES = ("sqlite", "postgresql")

# The server's maintenance database, through which test databases are created and dropped.
ADMIN_URL = os.environ.get(
    "DEVPROV_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@functools.cache
def postgresql_unreachable() -> str | None:
    """Why the PostgreSQL server cannot be used, or None when it answers (asked once a run)."""
    url = make_url(ADMIN_URL)
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        where = f"{url.host or 'localhost'}:{url.port or 5432}"
        return f"PostgreSQL at {where} is not reachable: {str(exc).strip()}"
    return None


def _admin(statement: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as connection:
        connection.execute(statement.encode())


@contextmanager
def fresh_postgresql_database() -> Iterator[str]:
    """The URL (postgresql://, as an operator writes it) of a new, empty database."""
    reason = postgresql_unreachable()
    if reason is not None:
        pytest.skip(reason)
    name = f"devprov_test_{secrets.token_hex(6)}"
    # Byte order ("C"), as SQLite compares text: listings page in the same order on both.
    _admin(
        f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(engine: str, directory: Path) -> Iterator[str]:
    """The URL of a new, empty database on ``engine`` ("sqlite" or "postgresql")."""
    if engine == "sqlite":
        yield sqlite_url(directory / "test.db")
        return
    with fresh_postgresql_database() as url:
        yield url
