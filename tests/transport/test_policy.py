"""transport.policy: the connection cap's default and the policy's own checks."""

from __future__ import annotations

import resource

import pytest

from devprov.transport.policy import FD_RESERVE, ConnectionPolicy, default_max_connections


@pytest.mark.parametrize(
    ("descriptors", "cap"),
    [
        (20_000, 20_000 - FD_RESERVE),
        (1024, 1024 - FD_RESERVE),
        (512, 256),
        (200, 50),  # small limits keep three quarters for the rest of the process
        (3, 1),
    ],
    ids=["large", "linux-default", "512", "200", "three"],
)
def test_default_cap_follows_the_descriptor_limit(descriptors: int, cap: int) -> None:
    assert default_max_connections(descriptors) == cap


def test_default_cap_reads_this_process_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert ConnectionPolicy().max_connections == default_max_connections(soft)
    assert ConnectionPolicy().max_connections < soft  # accept() never meets EMFILE first


@pytest.mark.parametrize(
    "change",
    [{"max_connections": 0}, {"handshake_timeout": 0}, {"body_timeout": -1.0}, {"evict_after": 0}],
    ids=["fail/cap-zero", "fail/handshake-zero", "fail/body-negative", "fail/evict-zero"],
)
def test_policy_refuses_values_that_are_not_positive(change: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ConnectionPolicy(**change)  # type: ignore[arg-type]


def test_policy_defaults_are_documented_values() -> None:
    policy = ConnectionPolicy(max_connections=10)
    assert (policy.handshake_timeout, policy.head_timeout, policy.body_timeout) == (10, 10, 30)
    assert (policy.keep_alive_timeout, policy.handler_timeout) == (60, 30)
    assert (policy.evict_after, policy.report_interval) == (2, 10)
