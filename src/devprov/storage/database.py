"""Opening the database, and keeping its schema in step with the code (the Alembic migrations).

Two engines (docs/storage.md#engines). SQLite is the embedded default. Several processes may
share one file (two servers, a server and the CLI): WAL lets readers proceed beside a writer, a
busy timeout makes writers wait for each other instead of failing, and ``BEGIN IMMEDIATE`` takes
the write lock at the start of a transaction so that a read-then-write cannot deadlock on lock
upgrade. PostgreSQL runs READ COMMITTED; what keeps concurrent writers correct there are the
repositories' conditional updates (``WHERE etag = :expected``), which PostgreSQL re-checks
against the newest row version after waiting for a concurrent writer, and the unique keys.

A server creates the schema of an empty database, and refuses a database whose schema is older
or newer than its code (``check_schema``): upgrading is an operator's decision, taken with
``devprov db upgrade`` (docs/storage.md#migrations-and-upgrades).
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from devprov.core.error import ConflictError, InvalidInputError

MIGRATIONS = Path(__file__).parent / "migrations"

# The execution option that marks a connection's transactions as read-only.
READ_ONLY_OPTION = "devprov_read_only"

# How long a writer waits for another process's write lock before giving up: well inside the
# handler's 30 s (transport.policy.HANDLER_TIMEOUT_SECONDS) and a device's own patience, so the
# device gets 503 with a retry hint rather than a cut connection
# (docs/storage.md#storage-and-the-event-loop).
LOCK_TIMEOUT_SECONDS = 5.0
SQLITE_BUSY_TIMEOUT_MS = int(LOCK_TIMEOUT_SECONDS * 1000)

# PostgreSQL's SQLSTATE for a lock not granted within lock_timeout (PostgreSQL manual, appendix A).
POSTGRESQL_LOCK_NOT_AVAILABLE = "55P03"

# PostgreSQL's SQLSTATEs for a transaction it rolled back to resolve a conflict between concurrent
# transactions: serialization_failure and deadlock_detected (PostgreSQL manual, appendix A). The
# transaction is gone as a whole, so running the unit of work again is safe
# (docs/storage.md#instances-sharing-one-database).
POSTGRESQL_TRANSACTION_CONFLICTS = ("40001", "40P01")

# How long opening a connection to PostgreSQL may take before the call fails as unavailable.
POSTGRESQL_CONNECT_TIMEOUT_SECONDS = 5

# SQLite's result codes for a lock it could not get in time (https://sqlite.org/rescode.html).
_SQLITE_LOCK_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

# The driver a plain postgresql:// URL means (docs/storage.md#why-psycopg-3).
POSTGRESQL_DRIVER = "postgresql+psycopg"

# The key of the PostgreSQL advisory lock held while migrating, so that servers started together
# on one empty database create its schema once (any constant; "devprov" in ASCII).
MIGRATION_LOCK_KEY = 0x646576_70726F76


class InvalidDatabaseUrlError(InvalidInputError):
    """--database (or $DEVPROV_DATABASE_URL) is not a database URL devprov can open."""

    code = "InvalidDatabaseUrl"
    number = 400280


class SchemaMismatchError(ConflictError):
    """The database schema is older than this devprov (run `devprov db upgrade`) or newer."""

    code = "DatabaseSchemaMismatch"
    number = 409250


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL of what an operator wrote: ``postgresql://`` (and ``postgres://``, as
    Heroku-style settings spell it) means psycopg 3, the driver devprov ships."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise InvalidDatabaseUrlError(
            f"'{redact_url(url)}' is not a database URL (sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DATABASE)"
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername=POSTGRESQL_DRIVER)
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise InvalidDatabaseUrlError(
            f"'{redact_url(url)}' names the {parsed.get_backend_name()} engine; devprov runs on "
            "sqlite and postgresql"
        )
    return parsed


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``: what logs and ``devprov info`` show."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # Not a URL SQLAlchemy reads: keep the scheme, hide the rest (it may hold a password).
        scheme, separator, _ = url.partition("://")
        return f"{scheme}://***" if separator else "***"


def create_database_engine(url: str) -> Engine:
    parsed = engine_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        _configure_sqlite(engine)
        return engine
    # READ COMMITTED is PostgreSQL's default; named here because the repositories rely on it
    # (a conditional update waits for a concurrent writer and re-checks, it does not fail).
    # The same bound on lock waits as SQLite's busy timeout (docs/storage.md).
    return create_engine(
        parsed,
        pool_pre_ping=True,
        isolation_level="READ COMMITTED",
        connect_args={
            "options": f"-c lock_timeout={int(LOCK_TIMEOUT_SECONDS * 1000)}",
            "connect_timeout": POSTGRESQL_CONNECT_TIMEOUT_SECONDS,
        },
    )


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
    """True when ``exc`` is the database giving up waiting for another writer's lock: SQLite's
    busy timeout, or PostgreSQL's lock_timeout (SQLSTATE 55P03, lock_not_available)."""
    if getattr(exc.orig, "sqlstate", None) == POSTGRESQL_LOCK_NOT_AVAILABLE:
        return True
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_LOCK_CODES  # extended codes keep the primary in the low byte
    return "database is locked" in str(exc.orig)


def is_transaction_conflict(exc: DBAPIError) -> bool:
    """True when the database rolled the transaction back because it conflicted with another
    (PostgreSQL's serialization failure or deadlock). SQLite has no such failure: BEGIN
    IMMEDIATE serialises writers before they read."""
    return getattr(exc.orig, "sqlstate", None) in POSTGRESQL_TRANSACTION_CONFLICTS


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def head_revision() -> str:
    """The newest migration this code has (read once: it cannot change while running)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "devprov ships at least one migration"
    return head


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _is_known(revision: str | None) -> bool:
    scripts = ScriptDirectory.from_config(_config())
    return revision is None or any(s.revision == revision for s in scripts.walk_revisions())


def _newer_than_code(current: str | None, head: str) -> SchemaMismatchError:
    return SchemaMismatchError(
        f"the database schema is at revision {current}, newer than this devprov knows (it needs "
        f"{head}): run the devprov release that upgraded the database, or a later one"
    )


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """(the database's revision, None for an empty database; the code's newest revision).
    The schema is current when the two are equal (the readiness check asks this)."""
    with engine.connect() as connection:
        return _current_revision(connection), head_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every migration not yet applied, in one transaction; (from, to) revisions."""
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held to the end of this transaction: a second server waits, then finds the schema
            # made. (SQLite's BEGIN IMMEDIATE already serialises writers.)
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        before = _current_revision(connection)
        if not _is_known(before):
            raise _newer_than_code(before, head_revision())
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        after = _current_revision(connection)
    assert after is not None
    return before, after


def migrate(engine: Engine) -> None:
    """Apply every migration not yet applied."""
    upgrade(engine)


def check_schema(engine: Engine, upgrade_command: str) -> None:
    """Raise :class:`SchemaMismatchError` unless the database's schema is the code's.
    ``upgrade_command`` is the exact command that upgrades this database, for the message."""
    current, head = schema_status(engine)
    if current == head:
        return
    if current is None:
        raise SchemaMismatchError(
            f"the database has no devprov schema (this devprov needs revision {head}): start "
            f"'devprov serve' on it once, or run '{upgrade_command}'"
        )
    if not _is_known(current):
        raise _newer_than_code(current, head)
    raise SchemaMismatchError(
        f"the database schema is at revision {current}, this devprov needs {head}: "
        f"run '{upgrade_command}'"
    )


def prepare_schema(engine: Engine, upgrade_command: str) -> bool:
    """What a starting server does: create the schema of an empty database (True), accept a
    current one (False), refuse any other (:class:`SchemaMismatchError`)."""
    current, _ = schema_status(engine)
    if current is None:
        before, _ = upgrade(engine)
        # Another server may have created it meanwhile (PostgreSQL's advisory lock let it go
        # first); that is as good.
        return before is None
    check_schema(engine, upgrade_command)
    return False
