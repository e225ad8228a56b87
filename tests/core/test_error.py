"""The error tree: every leaf has its own stable code and number, within its kind's status."""

from __future__ import annotations

import importlib
import pkgutil

import devprov
from devprov.core.error import DevprovError, ErrorKind
from devprov.http.error import STATUS


def _all_errors() -> list[type[DevprovError]]:
    for module in pkgutil.walk_packages(devprov.__path__, "devprov."):
        importlib.import_module(module.name)
    found: list[type[DevprovError]] = []
    pending: list[type[DevprovError]] = [DevprovError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_numbers_are_unique() -> None:
    owners: dict[int, type[DevprovError]] = {}
    for cls in _all_errors():
        if "number" not in cls.__dict__:
            continue  # inherits its parent's number on purpose
        assert cls.number not in owners, (
            f"{cls.__qualname__} reuses {cls.number} of {owners[cls.number].__qualname__}"
        )
        owners[cls.number] = cls


def test_codes_are_unique_per_leaf() -> None:
    owners: dict[str, type[DevprovError]] = {}
    for cls in _all_errors():
        if "code" not in cls.__dict__:
            continue  # inherits its parent's code on purpose
        assert cls.code not in owners, (
            f"{cls.__qualname__} reuses code {cls.code} of {owners[cls.code].__qualname__}"
        )
        owners[cls.code] = cls


def test_number_follows_the_http_status_of_its_kind() -> None:
    for cls in _all_errors():
        status = STATUS[cls.kind]
        assert cls.number // 1000 == int(status), (
            f"{cls.__qualname__}: {cls.number} is not a {int(status)}xxx number"
        )


def test_every_kind_has_a_status() -> None:
    assert set(STATUS) == set(ErrorKind)
