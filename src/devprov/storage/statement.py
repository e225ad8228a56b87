"""Write statements built once and run with bound parameters.

``update(t).values(**row)`` makes SQLAlchemy coerce every value and compute a cache key over the
literal values on each call; on the registration and verification paths that cost more than the
SQLite write itself (about 0.4 ms of a 0.85 ms verify, measured with cProfile). Statements built
from ``bindparam``s are compiled once per column set and reused.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Table,
    Update,
    and_,
    bindparam,
    insert,
    update,
)

_WHERE = "w_"  # prefix of the WHERE parameters, apart from the SET parameters


@functools.cache
def _update(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> Update:
    return (
        update(table)
        .where(*(table.c[key] == bindparam(_WHERE + key) for key in keys))
        .values({column: bindparam(column) for column in columns})
    )


@functools.cache
def _insert(table: Table) -> Insert:
    return insert(table)


def run_update(
    connection: Connection, table: Table, where: Mapping[str, Any], values: Mapping[str, Any]
) -> int:
    """UPDATE table SET values WHERE every ``where`` column equals its value; the row count."""
    statement = _update(table, tuple(where), tuple(values))
    parameters = {**values, **{_WHERE + key: value for key, value in where.items()}}
    return connection.execute(statement, parameters).rowcount


def run_insert(connection: Connection, table: Table, values: Mapping[str, Any]) -> None:
    connection.execute(_insert(table), dict(values))


def starts_with(column: Any, prefix: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, by LIKE with its wildcards escaped. The ``>=`` bound
    lets an index on ``column`` start its scan at the prefix (LIKE alone would not use it on
    PostgreSQL without a pattern operator class); every string with the prefix sorts at or after
    it, in byte order and in the collations we know of."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return and_(column >= prefix, column.like(escaped + "%", escape="\\"))
