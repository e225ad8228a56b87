"""How ``devprov serve`` writes its log: text for a terminal, or one JSON object per line for a
log collector (``--log-format json``; docs/operations.md#log-format).

Both are safe with client values in them. Text escapes every unprintable character
(docs/operations.md#escaping-client-values); JSON gets the same from ``json.dumps``, which
escapes control characters and, with ``ensure_ascii``, everything outside ASCII, so one record
is always one line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from devprov.core.printable import EscapingFormatter
from devprov.service.request_context import request_id

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601, milliseconds), ``level``,
    ``logger``, ``message``, ``request_id`` while a request is served, ``exception`` when one
    is attached."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True)


def build_formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``--log-format``: ``text`` or ``json``."""
    if log_format == "json":
        return JsonFormatter()
    return EscapingFormatter(TEXT_FORMAT)


def configure_logging(level: str, log_format: str = "text") -> None:
    """The root logger's one handler, on standard error, in ``log_format``, at ``level``."""
    # Every line escaped: no client value reaches the terminal raw
    # (docs/operations.md#escaping-client-values); JSON escapes by itself.
    handler = logging.StreamHandler()
    handler.setFormatter(build_formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])
    # httpx (the allocation webhook's client) logs every request at INFO; devprov logs the
    # outcome that matters, the registration, itself.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Alembic's INFO lines (the dialect found, at every start; each migration step) are no news
    # to an operator; its warnings stay.
    logging.getLogger("alembic.runtime.migration").setLevel(
        max(logging.WARNING, logging.getLevelName(level))
    )
