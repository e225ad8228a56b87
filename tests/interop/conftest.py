"""Fixtures shared by the interop tests."""

from __future__ import annotations

import pytest

from tests.interop.nodejs import node_with_packages


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary with the SDKs' packages, or a skip saying what is missing."""
    return node_with_packages()
