"""Fixtures of the use case tests: a wired provisioning service and a small PKI."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests import factory as f
from tests.service.world import World


@pytest.fixture
def world(uow, clock, directory, tmp_path) -> World:
    directory.create("default")
    clock.now = f.NOW + timedelta(hours=1)
    return World(uow, clock, directory, tmp_path / "data")


@pytest.fixture
def pki():
    root = f.root("Dev Root")
    inter = f.intermediate(root, "Dev Intermediate")
    leaf = f.device(inter, "dev-1")
    return root, inter, leaf
