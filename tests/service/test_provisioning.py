from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest

from devprov.core import error as e
from devprov.service.model import ALL_RIGHTS, OWNER_POLICY


def test_create_gives_scope_and_owner_keys(directory) -> None:
    service = directory.create("fleet-1")
    assert re.fullmatch(r"0ne[0-9A-F]{8}", service.id_scope)
    (owner,) = directory.policies("fleet-1")
    assert owner.name == OWNER_POLICY and owner.rights == ALL_RIGHTS
    for key in (owner.primary_key, owner.secondary_key):
        assert len(base64.b64decode(key)) == 32
    assert owner.primary_key != owner.secondary_key
    assert directory.get("fleet-1") == service


def test_services_are_separate(directory) -> None:
    a, b = directory.create("aaa"), directory.create("bbb")
    assert a.id_scope != b.id_scope
    assert [s.name for s in directory.all()] == ["aaa", "bbb"]


@pytest.mark.parametrize("name", ["ab", "-abc", "abc-", "a b c", "x" * 65, "ünï"])
def test_create_rejects_bad_names(directory, name: str) -> None:
    with pytest.raises(e.InvalidNameError):
        directory.create(name)


def test_create_rejects_duplicates_and_bad_settings(directory) -> None:
    directory.create("dup")
    with pytest.raises(e.AlreadyExistsError):
        directory.create("dup")
    with pytest.raises(e.InvalidInputError):
        directory.create("zero", max_certificates=0)
    with pytest.raises(e.InvalidInputError):
        directory.create("neg", code_lifetime=timedelta(seconds=0))


def test_unknown_service(directory) -> None:
    with pytest.raises(e.ServiceNotFoundError):
        directory.get("nope")
    with pytest.raises(e.ServiceNotFoundError):
        directory.policies("nope")
