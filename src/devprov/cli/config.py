"""``devprov serve --config FILE``: the server's options from a TOML file.

The file's keys are ``serve``'s long option names without the dashes (``port``, ``mqtt-port``,
``database``...), its values what the option takes: a string, a whole number, true or false for
a flag, a list for an option that may be repeated. What wins: the command line, then the
environment ($DEVPROV_DATA_DIR, $DEVPROV_DATABASE_URL), then the file, then the defaults
(docs/storage.md#the-config-file). A key serve does not have, or a value of the wrong type or
out of range, is refused with the key's name: a typo must not start a server on a default.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from devprov.bootstrap import DATA_DIR_ENV, DATABASE_URL_ENV
from devprov.core.error import InvalidInputError

# Options whose environment variable beats the file (the command line beats both).
ENVIRONMENT = {"data_dir": DATA_DIR_ENV, "database": DATABASE_URL_ENV}

# Options that make no sense in the file itself.
NOT_IN_FILE = {"help", "config"}


class InvalidConfigError(InvalidInputError):
    """The --config file cannot be read, is not TOML, or has a key or value serve refuses."""

    code = "InvalidConfigFile"
    number = 400281


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="read options from this TOML file: keys are this command's long option names "
        '(port = 8443, database = "postgresql://..."); the command line and the environment '
        "win over it",
    )
    parser.set_defaults(with_config=partial(_with_config, parser))


def _with_config(
    parser: argparse.ArgumentParser,
    root: argparse.ArgumentParser,
    argv: Sequence[str],
    args: argparse.Namespace,
) -> argparse.Namespace:
    """``args`` again, parsed with the file's values as the defaults (main calls this)."""
    if args.config is None:
        return args
    parser.set_defaults(**read_config(Path(args.config), parser))
    return root.parse_args(argv)


def read_config(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The file's values by option destination, converted and checked as the command line's."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f"the config file {path} is not TOML: {exc}") from exc
    options = _options(parser)
    values: dict[str, Any] = {}
    for key, value in document.items():
        action = options.get(key)
        if action is None:
            raise InvalidConfigError(
                f"the config file {path} has the key '{key}', which is not an option of this "
                f"command; the keys are: {', '.join(sorted(options))}"
            )
        if os.environ.get(ENVIRONMENT.get(action.dest, "")):
            continue  # the environment wins over the file
        values[action.dest] = _convert(f"'{key}' in {path}", action, value)
    return values


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    options: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse has no public list of a parser's options
        long = [o for o in action.option_strings if o.startswith("--")]
        if long and action.dest not in NOT_IN_FILE:
            options[long[0].removeprefix("--")] = action
    return options


def _convert(where: str, action: argparse.Action, value: object) -> Any:
    if action.nargs == 0:  # a flag: store_true and its kin
        if not isinstance(value, bool):
            raise InvalidConfigError(f"{where} must be true or false, not {_shown(value)}")
        return action.const if value else action.default
    if isinstance(action, argparse._AppendAction):  # a repeatable option: a list in the file
        if not isinstance(value, list):
            raise InvalidConfigError(f"{where} must be a list ([...]), not {_shown(value)}")
        return [_scalar(where, action, item) for item in value]
    return _scalar(where, action, value)


def _scalar(where: str, action: argparse.Action, value: object) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidConfigError(f"{where} must be a string or a whole number, not {_shown(value)}")
    convert = action.type if callable(action.type) else str
    try:
        result = convert(str(value))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise InvalidConfigError(f"{where}: {exc}") from exc
    if isinstance(result, int) and not isinstance(value, int):
        raise InvalidConfigError(f"{where} must be a whole number, not {_shown(value)}")
    if not isinstance(result, int) and not isinstance(value, str):
        raise InvalidConfigError(f"{where} must be a string, not {_shown(value)}")
    if action.choices is not None and result not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise InvalidConfigError(f"{where} must be one of {choices}, not {_shown(value)}")
    return result


def _shown(value: object) -> str:
    kind = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    kind |= {list: "a list", dict: "a table"}
    return f"{kind.get(type(value), type(value).__name__)} ({value!r})"
