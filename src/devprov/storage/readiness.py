"""Is the database ready to serve: does it answer, and is its schema the one this code needs?

``schema_status`` reads the revision the database is at and the newest revision of the
migrations shipped with the code; ``readiness_problem`` turns that and a trivial query into the
one sentence ``/readyz`` answers with (docs/operations.md#health-and-readiness).
"""

from __future__ import annotations

import functools

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from devprov.storage.database import MIGRATIONS


@functools.cache
def head_revision() -> str | None:
    """The newest migration shipped with this code (read once: it cannot change while running)."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def schema_status(engine: Engine) -> tuple[str | None, str | None]:
    """(the database's revision, the code's head revision); None for a database never migrated."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, head_revision()


def readiness_problem(engine: Engine) -> str | None:
    """None when the database answers and is at head, else why not, in one sentence with no
    driver text (the answer is unauthenticated)."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        current, head = schema_status(engine)
    except SQLAlchemyError:
        return "the database does not answer"
    if current != head:
        return (
            f"the database schema is at revision {current or 'none'}, the code needs {head}; "
            "run 'devprov db upgrade'"
        )
    return None
