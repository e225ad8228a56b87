"""Is the database ready to serve: does it answer, and is its schema the one this code needs?

``readiness_problem`` turns a trivial query and ``storage.database.schema_status`` (the revision
the database is at, and the newest migration shipped with the code) into the one sentence
``/readyz`` answers with (docs/operations.md#health-and-readiness).
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from devprov.storage.database import schema_status


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
