"""Fixtures shared by the interop tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.interop.node_dps import Dps, on_443, on_free_ports
from tests.interop.nodejs import node_with_packages


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary with the SDKs' packages, or a skip saying what is missing."""
    return node_with_packages()


@pytest.fixture(scope="module")
def dps(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dps]:
    """A devprov server for a Node device module: HTTPS, MQTT and AMQP on free ports."""
    with on_free_ports(node, tmp_path_factory) as dps:
        yield dps


@pytest.fixture(scope="module")
def dps_on_443(
    node: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Dps]:
    """A devprov server on 443 for the module's WebSocket transport, which its WEBSOCKET_CLIENT
    names in the skip when 443 cannot be had."""
    with on_443(node, tmp_path_factory, request.module.WEBSOCKET_CLIENT) as dps:
        yield dps


@pytest.fixture
def over(request: pytest.FixtureRequest) -> tuple[Dps, str]:
    """A server and the Node transport ``request.param`` names (parametrized indirectly): a
    WebSocket one ("mqttws", "amqpws") on 443, the only port it connects to, else on free ports."""
    transport = str(request.param)
    server = "dps_on_443" if transport.endswith("ws") else "dps"
    return request.getfixturevalue(server), transport
