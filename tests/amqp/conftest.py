"""Fixtures of the AMQP DPS application's tests (tests/amqp/dps_device.py has the rest): a
container on a fresh data directory, and a device PKI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.bootstrap import Container
from tests import factory as f
from tests.amqp.dps_device import demo_pki, opened


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Container]:
    with opened(tmp_path) as c:
        yield c


@pytest.fixture
def pki() -> tuple[f.Ca, f.Ca, f.Ca]:
    return demo_pki()
