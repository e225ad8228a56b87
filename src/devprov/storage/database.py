"""Opening the database and bringing its schema up to date with the Alembic migrations.

SQLite is the embedded default. Several processes may share one file (two servers, a server and
the CLI): WAL lets readers proceed beside a writer, a busy timeout makes writers wait for each
other instead of failing, and ``BEGIN IMMEDIATE`` takes the write lock at the start of a
transaction so that a read-then-write cannot deadlock on lock upgrade.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError

MIGRATIONS = Path(__file__).parent / "migrations"

# The execution option that marks a connection's transactions as read-only.
READ_ONLY_OPTION = "devprov_read_only"

# How long a writer waits for another process's write lock before giving up: well inside the
# handler's 30 s (transport.policy.HANDLER_TIMEOUT_SECONDS) and a device's own patience, so the
# device gets 503 with a retry hint rather than a cut connection
# (docs/storage.md#storage-and-the-event-loop).
LOCK_TIMEOUT_SECONDS = 5.0
SQLITE_BUSY_TIMEOUT_MS = int(LOCK_TIMEOUT_SECONDS * 1000)

# SQLite's result codes for a lock it could not get in time (https://sqlite.org/rescode.html).
_SQLITE_LOCK_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def create_database_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin (SQLAlchemy docs,
        # "Serializable isolation / Savepoints / Transactional DDL" for pysqlite).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Reads take no write lock, so they run beside a writer (WAL); writes take it up front.
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def is_lock_timeout(exc: DBAPIError) -> bool:
    """True when ``exc`` is the database giving up waiting for another writer's lock."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_LOCK_CODES  # extended codes keep the primary in the low byte
    return "database is locked" in str(exc.orig)


def migrate(engine: Engine) -> None:
    """Apply every migration not yet applied."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
