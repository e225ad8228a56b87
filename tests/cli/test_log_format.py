"""--log-format: JSON lines that parse, one per record whatever a client sent, with the request
id while a request is served and without it outside."""

from __future__ import annotations

import json
import logging
import sys

from devprov.cli.log_format import JsonFormatter, build_formatter
from devprov.core.printable import EscapingFormatter
from devprov.service.request_context import request_id

HOSTILE = "evil\n2026-01-01 fake line\x1b[2J\x9b\u2028end"


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError(HOSTILE)
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("devprov.refusal", logging.INFO, __file__, 1, message, args, info)


def test_a_record_is_one_json_line_with_the_fields() -> None:
    line = JsonFormatter().format(record("device '%s' refused", HOSTILE))
    assert "\n" not in line and line.isascii() and line.isprintable()
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message"}
    assert entry["message"] == f"device '{HOSTILE}' refused"
    assert (entry["level"], entry["logger"]) == ("INFO", "devprov.refusal")
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_the_request_id_is_there_while_a_request_is_served() -> None:
    token = request_id.set("2f6d-tracking")
    try:
        entry = json.loads(JsonFormatter().format(record("served")))
    finally:
        request_id.reset(token)
    assert entry["request_id"] == "2f6d-tracking"
    assert "request_id" not in json.loads(JsonFormatter().format(record("idle")))


def test_an_exception_stays_inside_the_one_line() -> None:
    line = JsonFormatter().format(record("failed", exc=True))
    assert "\n" not in line
    assert "ValueError" in json.loads(line)["exception"]


def test_text_is_the_default_and_escapes() -> None:
    formatter = build_formatter("text")
    assert isinstance(formatter, EscapingFormatter)
    assert "\n" not in formatter.format(record("device '%s'", HOSTILE))
    assert isinstance(build_formatter("json"), JsonFormatter)
