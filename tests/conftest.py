"""Shared fixtures: a real SQLite database built by the migrations, a settable clock, and a
wired container over a temporary data directory."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from devprov.service.port import UnitOfWork
from devprov.service.provisioning import ServiceDirectory
from devprov.service.registry import CertificateRegistry
from devprov.storage.database import create_database_engine, migrate, sqlite_url
from devprov.storage.repository import SqlUnitOfWork
from tests.factory import NOW


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_database_engine(sqlite_url(tmp_path / "test.db"))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def uow(engine: Engine):
    def factory(*, read_only: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(engine, read_only=read_only)

    return factory


@pytest.fixture
def directory(uow, clock: Clock) -> ServiceDirectory:
    return ServiceDirectory(uow, clock, secrets.token_bytes)


@pytest.fixture
def registry(uow, clock: Clock, directory: ServiceDirectory) -> CertificateRegistry:
    directory.create("default")
    return CertificateRegistry(uow, clock, secrets.token_bytes)
