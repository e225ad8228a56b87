"""The storage contract suite runs on both engines: every test that takes ``engine`` (built by
the migrations) or ``fresh_engine`` (empty) runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from devprov.storage.database import create_database_engine, migrate
from tests.database import ENGINES, fresh_database


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def fresh_engine(database_url: str) -> Iterator[Engine]:
    engine = create_database_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(fresh_engine: Engine) -> Engine:
    migrate(fresh_engine)
    return fresh_engine
