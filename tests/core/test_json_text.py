"""core.json_text: JSON from clients, nesting bounded before it is parsed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.error import DevprovError, JsonTooDeepError, MalformedRequestError
from devprov.core.json_text import MAX_JSON_DEPTH, nesting_depth, parse_json


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def objects(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def twin(levels: int) -> str:
    """An enrollment whose initial twin's desired properties nest ``levels`` objects deep."""
    return '{"initialTwin":{"properties":{"desired":' + objects(levels) + "}}}"


ACCEPTED = [
    pytest.param("{}", {}, id="ok/empty-object"),
    pytest.param('"text"', "text", id="ok/scalar"),
    pytest.param(nested(MAX_JSON_DEPTH), None, id="ok/arrays-at-the-limit"),
    pytest.param(objects(MAX_JSON_DEPTH), None, id="ok/objects-at-the-limit"),
    pytest.param(twin(10), None, id="ok/iot-hub-twin-depth-10"),
    pytest.param('{"s": "' + "[" * 100 + '"}', {"s": "[" * 100}, id="ok/brackets-inside-a-string"),
    pytest.param('{"s": "\\"[[[[", "t": [1]}', {"s": '"[[[[', "t": [1]}, id="ok/escaped-quote"),
]

REFUSED = [
    pytest.param(nested(MAX_JSON_DEPTH + 1), JsonTooDeepError, id="fail/arrays-one-past-the-limit"),
    pytest.param(objects(MAX_JSON_DEPTH + 1), JsonTooDeepError, id="fail/objects-past-the-limit"),
    pytest.param("[" * 100_000, JsonTooDeepError, id="fail/recursion-bomb-unclosed"),
    pytest.param(nested(50_000), JsonTooDeepError, id="fail/recursion-bomb-closed"),
    pytest.param("{", MalformedRequestError, id="fail/truncated"),
    pytest.param("not json", MalformedRequestError, id="fail/not-json"),
    pytest.param(b"\xff\xfe{}", MalformedRequestError, id="fail/not-utf8"),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted(text: str, expected: object) -> None:
    value = parse_json(text)
    if expected is not None:
        assert value == expected
    assert parse_json(text.encode()) == value


@pytest.mark.parametrize(("text", "error"), REFUSED)
def test_refused(text: str | bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        parse_json(text)
    assert type(caught.value) is error  # not a RecursionError, not a bare ValueError
    if error is JsonTooDeepError:
        assert f"at most {MAX_JSON_DEPTH} are accepted" in caught.value.message


def test_depth_counts_brackets_outside_strings_only() -> None:
    assert nesting_depth('[{"a": "]]]]"}, [[]]]') == 3
    assert nesting_depth("[]" * 100) == 1


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_input_errors(data: bytes) -> None:
    try:
        parse_json(data)
    except DevprovError as exc:
        assert isinstance(exc, MalformedRequestError)


@given(st.text(alphabet='[]{}":,a1 \\', max_size=300))
def test_arbitrary_bracket_soup_raises_only_input_errors(text: str) -> None:
    try:
        parse_json(text)
    except DevprovError as exc:
        assert isinstance(exc, MalformedRequestError)
