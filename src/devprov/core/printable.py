"""Text from clients made safe to print: one line, no terminal control sequences.

Registration ids, request paths, user agents and names from certificates reach the server log
and ``devprov audit``. Printed raw, a newline in one forges a log line of its own, and an ESC or
a C1 control (CSI is 0x9B) lets the client drive the operator's terminal (colours, cursor moves,
window titles, on some terminals worse). :func:`printable` escapes them visibly, the way Python
writes them in a string literal (``\\n``, ``\\x1b``, ``\\u2028``), so that what was sent stays
readable and one value stays on one line.

:class:`EscapingFormatter` applies it to every log record a handler writes; the audit printer
calls :func:`printable` on each field. Why a formatter rather than a call at each log call:
docs/operations.md#escaping-client-values.
"""

from __future__ import annotations

import logging
import re
import traceback

# What is escaped: the C0 controls, DEL and the C1 controls (Unicode's category Cc), the line
# and paragraph separators some viewers break lines at (Zl, Zp), and the bidirectional marks,
# overrides and isolates that reorder how a line reads ("Trojan Source", CVE-2021-42574).
# Printable non-ASCII text (accents, other scripts) is left alone.
_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI_CONTROLS}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    named = _NAMED.get(character)
    if named is not None:
        return named
    code = ord(character)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character, line separator and bidi control escaped."""
    return _UNSAFE.sub(_escape, text)


def is_printable(text: str) -> bool:
    """True if :func:`printable` would leave ``text`` as it is."""
    return _UNSAFE.search(text) is None


class EscapingFormatter(logging.Formatter):
    """A formatter whose records are each one line of safe text, tracebacks apart.

    The message is escaped after its arguments are interpolated, so no call site can forget a
    value. A traceback (``exc_info``, ``stack_info``) keeps its own line breaks, which the
    formatter itself adds, but every line of it is indented and escaped, so that a client value
    in an exception's message can neither start a line of its own nor reach the terminal raw.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        text = super().formatException(ei)
        # An exception's message is one line of the traceback even when it holds line breaks.
        for message in _messages(ei[1]):
            if "\n" in message:
                text = text.replace(message, printable(message))
        return _indent(text)

    def formatStack(self, stack_info: str) -> str:
        return _indent(super().formatStack(stack_info))


def _messages(exc: BaseException | None) -> list[str]:
    """``Type: message`` of ``exc`` and of the exceptions chained to it, as tracebacks print."""
    found: list[str] = []
    pending = [traceback.TracebackException.from_exception(exc)] if exc is not None else []
    while pending:
        current = pending.pop()
        found.append("".join(current.format_exception_only()).rstrip("\n"))
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return found


def _indent(block: str) -> str:
    return "\n".join("    " + printable(line) for line in block.splitlines())
