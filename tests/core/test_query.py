"""The query specifications devprov answers, and the precise refusal of every other one."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.error import InvalidInputError
from devprov.core.query import (
    QUOTED_QUERY_CHARACTERS,
    QueryCollection,
    UnsupportedQueryError,
    parse_query,
)

ENROLLMENTS = QueryCollection.ENROLLMENTS
GROUPS = QueryCollection.ENROLLMENT_GROUPS
REGISTRATIONS = QueryCollection.DEVICE_REGISTRATIONS


@pytest.mark.parametrize(
    ("text", "collection"),
    [
        pytest.param("*", ENROLLMENTS, id="ok/star"),
        pytest.param("  *\t", GROUPS, id="ok/star-with-whitespace"),
        pytest.param("SELECT *", GROUPS, id="ok/select-star-as-python-sdk"),
        pytest.param("select *", ENROLLMENTS, id="ok/lower-case"),
        pytest.param("SeLeCt\n\t  *", REGISTRATIONS, id="ok/mixed-case-tabs-newlines"),
        pytest.param("SELECT*", ENROLLMENTS, id="ok/no-space-before-star"),
        pytest.param("SELECT * FROM enrollments", ENROLLMENTS, id="ok/from-enrollments"),
        pytest.param("select * from enrollments", ENROLLMENTS, id="ok/from-as-java-sdk"),
        pytest.param("SELECT * FROM ENROLLMENTS", ENROLLMENTS, id="ok/collection-any-case"),
        pytest.param("SELECT  *  FROM\tenrollmentGroups ", GROUPS, id="ok/from-groups-spaced"),
        pytest.param("select *from enrollmentgroups", GROUPS, id="ok/no-space-after-star"),
        pytest.param(
            "select * from deviceRegistrations", REGISTRATIONS, id="ok/from-registrations"
        ),
        pytest.param("\nSELECT *\nFROM\ndeviceregistrations\n", REGISTRATIONS, id="ok/newlines"),
    ],
)
def test_accepted_queries(text: str, collection: QueryCollection) -> None:
    assert parse_query({"query": text}, collection) is collection
    assert parse_query(text, collection) is collection  # the handler's default is the text


@pytest.mark.parametrize(
    ("text", "collection", "message"),
    [
        pytest.param("", ENROLLMENTS, "the query is empty", id="fail/empty"),
        pytest.param(" \t\n", GROUPS, "the query is empty", id="fail/blank"),
        pytest.param("**", ENROLLMENTS, "unsupported query '**'", id="fail/two-stars"),
        pytest.param("SELECT", GROUPS, "unsupported query 'SELECT'", id="fail/select-alone"),
        pytest.param("SELECT id", GROUPS, "unsupported query 'SELECT id'", id="fail/projection"),
        pytest.param(
            "SELECTX *", ENROLLMENTS, "unsupported query 'SELECTX *'", id="fail/select-misspelt"
        ),
        pytest.param(
            "* FROM enrollments", ENROLLMENTS, "unsupported query", id="fail/from-without-select"
        ),
        pytest.param(
            "SELECT * FROM enrollmentGroups",
            ENROLLMENTS,
            "selects from 'enrollmentGroups', but this endpoint lists enrollments",
            id="fail/groups-on-enrollments",
        ),
        pytest.param(
            "SELECT * FROM enrollments",
            GROUPS,
            "selects from 'enrollments', but this endpoint lists enrollmentGroups",
            id="fail/enrollments-on-groups",
        ),
        pytest.param(
            "SELECT * FROM enrollments",
            REGISTRATIONS,
            "but this endpoint lists deviceRegistrations",
            id="fail/enrollments-on-registrations",
        ),
        pytest.param(
            "SELECT * FROM devices", ENROLLMENTS, "selects from 'devices'", id="fail/unknown-name"
        ),
        pytest.param(
            "SELECT * FROM enrollments;", ENROLLMENTS, "'enrollments;'", id="fail/semicolon"
        ),
        pytest.param(
            "SELECT * FROM enrollments WHERE iotHubHostName = 'hub'",
            ENROLLMENTS,
            "(\"WHERE iotHubHostName = 'hub'\" is not supported)",
            id="fail/where",
        ),
        pytest.param(
            "select * from enrollmentGroups group by x",
            GROUPS,
            "('group by x' is not supported)",
            id="fail/group-by",
        ),
        pytest.param("SELECT * FROM", ENROLLMENTS, "unsupported query", id="fail/from-no-name"),
        pytest.param(
            "SELECT * FROMenrollments",
            ENROLLMENTS,
            "('FROMenrollments' is not supported)",
            id="fail/from-glued-to-name",
        ),
        pytest.param(
            "SELECT\u00a0*", ENROLLMENTS, "unsupported query", id="fail/non-ascii-whitespace"
        ),
        pytest.param(
            "\u017fELECT *", ENROLLMENTS, "unsupported query", id="fail/long-s-is-not-an-s"
        ),
    ],
)
def test_refused_queries(text: str, collection: QueryCollection, message: str) -> None:
    with pytest.raises(UnsupportedQueryError) as caught:
        parse_query({"query": text}, collection)
    assert message in caught.value.message
    assert isinstance(caught.value, InvalidInputError) and caught.value.number == 400402


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({}, "'query' is missing", id="fail/no-query-member"),
        pytest.param({"query": None}, "'query' is missing", id="fail/query-null"),
        pytest.param({"query": 1}, "'query' is not a string", id="fail/query-number"),
        pytest.param({"query": ["*"]}, "'query' is not a string", id="fail/query-array"),
        pytest.param(["*"], "got an array", id="fail/body-array"),
        pytest.param(7, "got a number", id="fail/body-number"),
        pytest.param(True, "got a boolean", id="fail/body-boolean"),
        pytest.param(None, "got null", id="fail/body-null"),
    ],
)
def test_refused_specifications(spec: object, message: str) -> None:
    with pytest.raises(UnsupportedQueryError, match=message):
        parse_query(spec, ENROLLMENTS)


def test_other_members_of_the_specification_are_ignored() -> None:
    assert parse_query({"query": "*", "pageSize": 3}, GROUPS) is GROUPS


def test_a_long_query_is_quoted_only_in_part() -> None:
    text = "SELECT * FROM enrollments WHERE " + "x" * 10_000
    with pytest.raises(UnsupportedQueryError) as caught:
        parse_query({"query": text}, ENROLLMENTS)
    assert "more characters" in caught.value.message
    assert len(caught.value.message) < 4 * QUOTED_QUERY_CHARACTERS + 200


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.text(max_size=200), st.sampled_from(list(QueryCollection)))
def test_arbitrary_text_raises_only_the_query_error(text: str, collection) -> None:
    with contextlib.suppress(UnsupportedQueryError):
        assert parse_query({"query": text}, collection) is collection


@given(
    st.one_of(_JSON, st.fixed_dictionaries({"query": _JSON})),
    st.sampled_from(list(QueryCollection)),
)
def test_arbitrary_specifications_raise_only_input_errors(spec, collection) -> None:
    try:
        parse_query(spec, collection)
    except InvalidInputError as exc:
        assert isinstance(exc, UnsupportedQueryError)


@given(
    st.sampled_from(["select", "SELECT", "Select"]),
    st.text(alphabet=" \t\r\n\f\v", max_size=4),
    st.text(alphabet=" \t\r\n\f\v", min_size=1, max_size=4),
    st.sampled_from(list(QueryCollection)),
)
def test_any_whitespace_between_the_words_is_accepted(select, gap, wide, collection) -> None:
    text = f"{gap}{select}{gap}*{wide}FROM{wide}{collection.value.upper()}{gap}"
    assert parse_query({"query": text}, collection) is collection
