"""JSON from clients: parsed with a bound on how deep arrays and objects nest.

Python's parser recurses once per level, so a body of 50,000 ``[`` raises ``RecursionError``,
which is no input error: it reached devprov's handlers as a 500. The nesting depth is therefore
measured first, without recursion, and a body nested deeper than :data:`MAX_JSON_DEPTH` is
refused as malformed input before it is parsed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from devprov.core.error import JsonTooDeepError, MalformedRequestError

# The deepest documents devprov reads are enrollments whose initialTwin carries twin properties;
# IoT Hub allows those 10 levels (docs/operations.md#json-nesting-depth), under 4 levels of
# enrollment (body, initialTwin, properties, desired). 32 leaves room for any DPS document and
# keeps the parser far from Python's recursion limit (1,000 frames).
MAX_JSON_DEPTH = 32

# A string literal (skipped whole, escapes included) or one bracket.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def parse_json(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value in ``data`` (UTF-8 when bytes).

    Raises :class:`JsonTooDeepError` when arrays and objects nest deeper than ``max_depth``, and
    :class:`MalformedRequestError` when ``data`` is not JSON at all.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise MalformedRequestError(f"the request body is not valid JSON: {exc}") from exc
    # Fewer opening brackets than the limit cannot nest past it: most bodies skip the scan.
    depth = 0 if text.count("[") + text.count("{") <= max_depth else nesting_depth(text)
    if depth > max_depth:
        raise JsonTooDeepError(
            f"the request body nests JSON arrays and objects {depth} levels deep; "
            f"at most {max_depth} are accepted"
        )
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedRequestError(f"the request body is not valid JSON: {exc}") from exc


def nesting_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest in ``text``, brackets inside strings aside.

    Text that is not JSON gets a number too; :func:`parse_json` refuses it afterwards.
    """
    depth = deepest = 0
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in ("]", "}"):
            depth -= 1
    return deepest
