"""How commands print: human text by default, JSON with ``--json``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def emit(args: argparse.Namespace, data: Mapping[str, Any] | list[Any], human: str) -> None:
    """Print ``data`` as JSON when ``--json`` was given, otherwise ``human``."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        print(human)
