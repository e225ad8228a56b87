"""The sign-in limit: counts per key in a sliding window, with the time passed in."""

from __future__ import annotations

from datetime import timedelta

import pytest

from devprov.core.sign_in_limit import SignInLimit, address_key, user_key
from tests.factory import NOW

MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        pytest.param("192.0.2.7", "address:192.0.2.7", id="ipv4"),
        pytest.param("::ffff:192.0.2.7", "address:192.0.2.7", id="ipv4-mapped"),
        pytest.param("2001:db8:1:2:3:4:5:6", "address:2001:db8:1:2::/64", id="ipv6-64"),
        pytest.param("testclient", "address:testclient", id="not-an-address"),
        pytest.param(None, "address:unknown", id="none"),
    ],
)
def test_address_keys(address: str | None, key: str) -> None:
    assert address_key(address) == key


def test_one_ipv6_host_counts_once_and_its_neighbour_apart() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1")
    assert address_key("2001:db8::1") != address_key("2001:db8:0:1::1")


def test_user_keys_ignore_case() -> None:
    assert user_key("Alice") == user_key(" alice") != user_key("bob")


def test_the_limit_refuses_until_the_oldest_failure_leaves_the_window() -> None:
    limit = SignInLimit(failures=3, window=5 * MINUTE)
    for i in range(2):
        limit.fail(["k"], now=NOW + i * MINUTE)
    assert limit.retry_after(["k"], now=NOW + 2 * MINUTE) is None
    limit.fail(["k"], now=NOW + 2 * MINUTE)
    assert limit.retry_after(["k"], now=NOW + 2 * MINUTE) == 3 * MINUTE
    assert limit.retry_after(["k"], now=NOW + 5 * MINUTE - timedelta(seconds=1)) is not None
    assert limit.retry_after(["k"], now=NOW + 5 * MINUTE) is None


def test_any_limited_key_refuses_and_the_longest_wait_is_given() -> None:
    limit = SignInLimit(failures=1, window=5 * MINUTE)
    limit.fail(["a"], now=NOW)
    limit.fail(["b"], now=NOW + MINUTE)
    assert limit.retry_after(["a", "b"], now=NOW + MINUTE) == 5 * MINUTE
    assert limit.retry_after(["c"], now=NOW + MINUTE) is None


def test_forget_clears_one_key_only() -> None:
    limit = SignInLimit(failures=1)
    limit.fail(["a", "b"], now=NOW)
    limit.forget("a")
    assert limit.retry_after(["a"], now=NOW) is None
    assert limit.retry_after(["b"], now=NOW) is not None


def test_past_max_keys_the_key_failing_longest_ago_is_forgotten() -> None:
    limit = SignInLimit(failures=1, max_keys=2)
    limit.fail(["old"], now=NOW)
    limit.fail(["mid"], now=NOW + MINUTE)
    limit.fail(["old"], now=NOW + 2 * MINUTE)  # now the newest
    limit.fail(["new"], now=NOW + 3 * MINUTE)
    at = NOW + 3 * MINUTE
    assert limit.retry_after(["mid"], now=at) is None
    assert limit.retry_after(["old"], now=at) is not None
    assert limit.retry_after(["new"], now=at) is not None


@pytest.mark.parametrize(
    "arguments", [{"failures": 0}, {"window": timedelta(0)}, {"max_keys": 0}], ids=str
)
def test_bounds_must_be_positive(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="positive"):
        SignInLimit(**arguments)  # type: ignore[arg-type]
