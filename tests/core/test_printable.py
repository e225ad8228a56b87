"""core.printable: client text escaped to one safe line, in log records and in printed output."""

from __future__ import annotations

import logging
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.printable import EscapingFormatter, is_printable, printable

ESCAPED = [
    pytest.param("a\nb", "a\\nb", id="escaped/newline"),
    pytest.param("a\rb", "a\\rb", id="escaped/carriage-return"),
    pytest.param("a\tb", "a\\tb", id="escaped/tab"),
    pytest.param("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m", id="escaped/esc-colour"),
    pytest.param("\x1b]0;title\x07", "\\x1b]0;title\\x07", id="escaped/osc-window-title"),
    pytest.param("\x9b2J", "\\x9b2J", id="escaped/c1-csi"),
    pytest.param("\x00\x7f", "\\x00\\x7f", id="escaped/nul-and-del"),
    pytest.param("a\u2028b\u2029c", "a\\u2028b\\u2029c", id="escaped/line-separators"),
    pytest.param("user\u202egnp.exe", "user\\u202egnp.exe", id="escaped/bidi-override"),
    pytest.param("\u2066x\u2069", "\\u2066x\\u2069", id="escaped/bidi-isolate"),
]

UNCHANGED = [
    pytest.param("my-device.1_a:b", id="kept/registration-id"),
    pytest.param("/0ne00000001/registrations/dev-1/register", id="kept/path"),
    pytest.param("CN=Contoso Root, O=Contoso", id="kept/distinguished-name"),
    pytest.param("Gerät é 日本 ✓", id="kept/printable-unicode"),
    pytest.param("back\\slash \\n", id="kept/backslashes"),
    pytest.param("", id="kept/empty"),
]


@pytest.mark.parametrize(("text", "expected"), ESCAPED)
def test_control_text_is_escaped_visibly(text: str, expected: str) -> None:
    assert printable(text) == expected
    assert not is_printable(text)


@pytest.mark.parametrize("text", UNCHANGED)
def test_printable_text_is_left_alone(text: str) -> None:
    assert printable(text) == text
    assert is_printable(text)


def unsafe(character: str) -> bool:
    return unicodedata.category(character) in ("Cc", "Zl", "Zp") or character in (
        "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    )


@given(st.text())
def test_nothing_unsafe_survives(text: str) -> None:
    escaped = printable(text)
    assert not any(unsafe(c) for c in escaped)
    assert is_printable(escaped)
    assert printable(escaped) == escaped  # escaping twice changes nothing more
    if not any(unsafe(c) for c in text):
        assert escaped == text


# --- the formatter ---------------------------------------------------------------------------


def record(message: str, *args: object, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("devprov.test", logging.INFO, __file__, 1, message, args, exc_info)  # type: ignore[arg-type]


FORMAT = "%(levelname)s %(name)s: %(message)s"


def test_formatter_escapes_interpolated_client_values() -> None:
    line = EscapingFormatter(FORMAT).format(
        record("device '%s' refused", "evil\n2026-01-01 CRITICAL forged\x1b[2J")
    )
    assert line == ("INFO devprov.test: device 'evil\\n2026-01-01 CRITICAL forged\\x1b[2J' refused")


def test_plain_formatter_is_the_negative_control() -> None:
    line = logging.Formatter(FORMAT).format(record("device '%s' refused", "evil\nforged"))
    assert "\n" in line


def test_formatter_keeps_a_traceback_readable_but_indented_and_escaped() -> None:
    try:
        raise ValueError("bad id 'x\n2026-01-01 CRITICAL forged\x1b[31m'")
    except ValueError:
        info = sys.exc_info()
    text = EscapingFormatter(FORMAT).format(record("request failed", exc_info=info))
    first, *rest = text.split("\n")
    assert first == "INFO devprov.test: request failed"
    assert rest and all(line.startswith("    ") for line in rest)  # none starts a record
    assert "\x1b" not in text
    assert any(
        "ValueError: bad id 'x\\n2026-01-01 CRITICAL forged\\x1b[31m'" in line for line in rest
    )
