"""core.refusal_limit: which refusals are recorded one by one and which are counted, with a
clock the tests move by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devprov.core.refusal_limit import (
    OTHER_NETWORKS,
    UNKNOWN_NETWORK,
    RefusalKey,
    RefusalWindows,
    source_network,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KEY = RefusalKey("default", "register", "DeviceUnauthorized", "203.0.113.0/24", audited=True)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("address", "network"),
    [
        pytest.param("203.0.113.7", "203.0.113.0/24", id="ipv4/24"),
        pytest.param("203.0.113.250", "203.0.113.0/24", id="ipv4/same-network"),
        pytest.param("203.0.114.7", "203.0.114.0/24", id="ipv4/next-network"),
        pytest.param("2001:db8:1:2:3::4", "2001:db8:1::/48", id="ipv6/48"),
        pytest.param("::ffff:203.0.113.9", "203.0.113.0/24", id="ipv6/mapped-ipv4"),
        pytest.param("127.0.0.1", "127.0.0.0/24", id="ipv4/loopback"),
        pytest.param(None, UNKNOWN_NETWORK, id="fail/no-address"),
        pytest.param("", UNKNOWN_NETWORK, id="fail/empty"),
        pytest.param("testclient", UNKNOWN_NETWORK, id="fail/a-name"),
        pytest.param("203.0.113.7/24", UNKNOWN_NETWORK, id="fail/a-network"),
    ],
)
def test_source_network(address: str | None, network: str) -> None:
    assert source_network(address) == network


def test_the_first_of_each_interval_are_recorded_the_rest_counted() -> None:
    windows = RefusalWindows(recorded_per_interval=3)
    admitted = [windows.admit(KEY, f"'dev-{i}'", now=at(i)).record for i in range(10)]
    assert admitted == [True] * 3 + [False] * 7
    assert windows.close(now=at(59)) == []  # the window is not over yet
    (summary,) = windows.close(now=at(60))
    assert (summary.key, summary.recorded, summary.omitted) == (KEY, 3, 7)
    assert (summary.start, summary.end, summary.example) == (T0, at(60), "'dev-3'")
    assert summary.describe() == (
        "7 more refusals of DeviceUnauthorized (register) from 203.0.113.0/24 in the 60 s from "
        "2026-11-27T12:00:00+00:00, e.g. 'dev-3'; the first 3 were recorded one by one"
    )
    assert len(windows) == 0


def test_a_window_that_left_nothing_out_ends_without_a_summary() -> None:
    windows = RefusalWindows(recorded_per_interval=3)
    assert all(windows.admit(KEY, "'dev'", now=at(i)).record for i in range(3))
    assert windows.close(now=at(61)) == []
    assert len(windows) == 0


def test_the_next_refusal_after_the_interval_opens_a_new_window_and_closes_the_old() -> None:
    windows = RefusalWindows(recorded_per_interval=1)
    assert windows.admit(KEY, "'a'", now=at(0)).record
    assert not windows.admit(KEY, "'b'", now=at(30)).record
    later = windows.admit(KEY, "'c'", now=at(61))
    assert later.record  # a new window: recorded in full again
    (summary,) = later.closed
    assert (summary.omitted, summary.example, summary.end) == (1, "'b'", at(60))


def test_keys_are_counted_apart() -> None:
    windows = RefusalWindows(recorded_per_interval=1)
    other_code = RefusalKey("default", "register", "DeviceAttestationFailed", KEY.network)
    other_network = RefusalKey("default", "register", KEY.code, "198.51.100.0/24")
    other_service = RefusalKey("second", "register", KEY.code, KEY.network)
    other_action = RefusalKey("default", "statusLookup", KEY.code, KEY.network)
    for key in (KEY, other_code, other_network, other_service, other_action):
        assert windows.admit(key, "'x'", now=at(0)).record, key
    assert not windows.admit(KEY, "'x'", now=at(1)).record  # the twin: the same key again


def test_past_the_window_bound_new_keys_share_one_other_networks_window() -> None:
    windows = RefusalWindows(recorded_per_interval=1, max_windows=2)
    first = RefusalKey("default", "register", KEY.code, "10.0.1.0/24")
    second = RefusalKey("default", "register", KEY.code, "10.0.2.0/24")
    assert windows.admit(first, "'a'", now=at(0)).key == first
    assert windows.admit(second, "'b'", now=at(0)).key == second
    third = windows.admit(
        RefusalKey("default", "register", KEY.code, "10.0.3.0/24"), "'c'", now=at(0)
    )
    assert third.record and third.key.network == OTHER_NETWORKS
    fourth = windows.admit(
        RefusalKey("default", "register", KEY.code, "10.0.4.0/24"), "'d'", now=at(1)
    )
    assert not fourth.record and fourth.key == third.key
    assert len(windows) == 3  # the bound, plus the one window that collects the rest
    assert windows.admit(first, "'a'", now=at(2)).key == first  # known keys keep their window


def test_a_flood_of_new_keys_takes_bounded_memory_and_rows() -> None:
    windows = RefusalWindows(recorded_per_interval=2, max_windows=16)
    recorded = sum(
        windows.admit(RefusalKey("default", "register", KEY.code, f"n{i}"), "'x'", now=at(0)).record
        for i in range(10_000)
    )
    assert len(windows) == 17
    assert recorded == 16 + 2
    (summary,) = windows.close(now=at(60))
    assert summary.key.network == OTHER_NETWORKS and summary.omitted == 10_000 - 16 - 2


def test_closing_everything_at_shutdown_ends_open_windows_at_now() -> None:
    windows = RefusalWindows(recorded_per_interval=0)
    windows.admit(KEY, "'a'", now=at(0))
    windows.admit(KEY, "'b'", now=at(5))
    assert windows.close(now=at(10)) == []
    (summary,) = windows.close(now=at(10), everything=True)
    assert (summary.omitted, summary.recorded, summary.end) == (2, 0, at(10))
    assert "1 more refusal of" not in summary.describe() and "2 more refusals" in summary.describe()


def test_one_omitted_refusal_is_singular() -> None:
    windows = RefusalWindows(recorded_per_interval=0)
    windows.admit(KEY, "'a'", now=at(0))
    (summary,) = windows.close(now=at(60))
    assert summary.describe().startswith("1 more refusal of DeviceUnauthorized")


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"interval": timedelta(0)}, id="fail/no-interval"),
        pytest.param({"recorded_per_interval": -1}, id="fail/negative-quota"),
        pytest.param({"max_windows": 0}, id="fail/no-window"),
    ],
)
def test_limits_must_make_sense(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RefusalWindows(**options)  # type: ignore[arg-type]
