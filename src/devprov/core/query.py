"""The query specifications of the DPS service API: which queries devprov answers, and the
precise refusal of the others.

A query is the ``query`` member of a ``QuerySpecification`` body (``{"query": "<text>"}``,
docs/dps-wire.md#query-forms). DPS documents no grammar; the forms its clients send are:

- ``*``: the Node service SDK and its samples, the C SDK's samples;
- ``SELECT *``: what azure-iot-deviceprovisioning's own recorded tests send to
  ``/enrollmentGroups/query``, answered by Azure with 200 and the items;
- ``select * from <collection>``: the Java SDK's ``QuerySpecificationBuilder``, whose
  collections are ``enrollments``, ``enrollmentGroups`` and ``deviceRegistrations``.

Each of them asks for every record of the collection, which is what devprov answers. The
collection a ``FROM`` names must be the one of the endpoint: ``enrollments`` on
``/enrollments/query``, ``enrollmentGroups`` on ``/enrollmentGroups/query`` and
``deviceRegistrations`` (the Java SDK's name for registration states) on
``/registrations/{enrollmentGroupId}/query``, where the group is the path's and no query can
widen it. Keywords and names compare in any case, with any whitespace between the words.
Anything else (a WHERE or GROUP BY clause, a projection, another collection) is refused with
:class:`UnsupportedQueryError` rather than answered with records it did not ask for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

from devprov.core.error import InvalidInputError

# How much of a refused query its error message quotes: enough to recognise it, bounded so a
# megabyte of query text does not come back in the error body and the log line.
QUOTED_QUERY_CHARACTERS = 80

# "*" or "SELECT *", optionally followed by "FROM <name>"; \s covers spaces, tabs and newlines.
_SELECT_ALL = re.compile(
    r"\s*(?:\*|select\s*\*(?:\s*\bfrom\s+(?P<name>[^\s]+))?)\s*", re.IGNORECASE | re.ASCII
)
# The same start followed by anything: to name what follows in the refusal.
_SELECT_ALL_PREFIX = re.compile(r"\s*select\s*\*\s*(?:from\s+[^\s]+)?", re.IGNORECASE | re.ASCII)


_JSON_TYPES = {list: "an array", bool: "a boolean", int: "a number", float: "a number"}
_JSON_TYPES[type(None)] = "null"


class UnsupportedQueryError(InvalidInputError):
    """The query is not one devprov answers: '*', 'SELECT *', or 'SELECT * FROM' the endpoint's
    own collection, in any case and spacing.

    No public source shows DPS's own errorCode for a query it cannot run (the one 400 seen on a
    query, azure-iot-sdk-node issue 502, is the generic 400000 "Bad Request" for a malformed
    continuation), so this is devprov's own number, in DPS's error body.
    """

    code = "UnsupportedQuery"
    number = 400402


class QueryCollection(Enum):
    """What a query endpoint lists, by the name a ``FROM`` clause gives it."""

    ENROLLMENTS = "enrollments"
    ENROLLMENT_GROUPS = "enrollmentGroups"
    DEVICE_REGISTRATIONS = "deviceRegistrations"


def _quoted(text: str) -> str:
    if len(text) <= QUOTED_QUERY_CHARACTERS:
        return repr(text)
    more = len(text) - QUOTED_QUERY_CHARACTERS
    return f"{text[:QUOTED_QUERY_CHARACTERS]!r} (and {more} more characters)"


def _query_text(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    if not isinstance(spec, Mapping):
        raise UnsupportedQueryError(
            'the query specification must be a JSON object {"query": "<text>"}; '
            f"got {_JSON_TYPES.get(type(spec), type(spec).__name__)}"
        )
    text = spec.get("query")
    if not isinstance(text, str):
        raise UnsupportedQueryError(
            "the query specification needs a string member 'query' (such as \"*\"); "
            f"'query' is {'missing' if text is None else 'not a string'}"
        )
    return text


def _clause(text: str) -> str:
    """Names what follows a well-formed start, such as a WHERE clause, for the refusal."""
    prefix = _SELECT_ALL_PREFIX.match(text)
    rest = text[prefix.end() :].strip() if prefix else ""
    return f" ({_quoted(rest)} is not supported)" if rest else ""


def parse_query(spec: Any, collection: QueryCollection) -> QueryCollection:
    """Check a query specification (the request body, or its ``query`` text) for ``collection``
    and return the collection it lists. Raises :class:`UnsupportedQueryError` only."""
    text = _query_text(spec)
    if not text.strip():
        raise UnsupportedQueryError("the query is empty; send '*' to list every record")
    match = _SELECT_ALL.fullmatch(text)
    if match is None:
        raise UnsupportedQueryError(
            f"unsupported query {_quoted(text)}{_clause(text)}: devprov answers '*', "  # noqa: S608 (a message, not SQL)
            f"'SELECT *' and 'SELECT * FROM {collection.value}' (any case), which list every record"
        )
    name = match.group("name")
    if name is not None and name.lower() != collection.value.lower():
        raise UnsupportedQueryError(
            f"the query selects from {_quoted(name)}, but this endpoint lists "  # noqa: S608 (a message)
            f"{collection.value}: send 'SELECT * FROM {collection.value}' or '*'"
        )
    return collection
