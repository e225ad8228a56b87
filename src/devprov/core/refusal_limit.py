"""Which refused requests are recorded one by one, and which are only counted.

A request without valid credentials costs a client nothing to send; it must not cost devprov
storage in proportion (docs/operations.md#refusals-retention-and-the-audit-index). Refusals are
grouped by a :class:`RefusalKey`: the provisioning service, the action, the error code and the
client's network. In each interval the first few refusals of a key are recorded in full (an audit
row and a log line with the precise reason, which an operator debugging one device needs); the
rest are counted, and when the interval ends one :class:`RefusalSummary` says how many were left
out and names the first of them.

Pure: the time is passed in as ``now``; nothing here reads a clock or writes anywhere.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

# How long a window of refusals lasts: a summary per key per minute is few enough to read and
# soon enough to notice a flood.
REFUSAL_INTERVAL = timedelta(seconds=60)

# Refusals of one key recorded in full per interval. An operator debugging a device retries it a
# few times a minute and reads each reason; a flood sends hundreds a second and needs a count.
RECORDED_PER_INTERVAL = 10

# Windows held at once, which bounds the memory a flood from many networks can take (a window is
# a few hundred bytes). A refusal of a new key past it is counted under its service, action and
# code from OTHER_NETWORKS.
MAX_WINDOWS = 1024

# A client's network: the IPv4 /24 or IPv6 /48 around its address, so that one host or one
# site, which holds many addresses, fills one window rather than thousands.
IPV4_PREFIX = 24
IPV6_PREFIX = 48
OTHER_NETWORKS = "other networks"
UNKNOWN_NETWORK = "an unknown network"


def source_network(address: str | None) -> str:
    """The network a client address is counted under: ``203.0.113.0/24``, ``2001:db8::/48``.

    An IPv4 address mapped into IPv6 counts as the IPv4 address. Anything that is not an IP
    address (a Unix socket, no address at all) is :data:`UNKNOWN_NETWORK`.
    """
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return UNKNOWN_NETWORK
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = IPV4_PREFIX if ip.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@dataclass(frozen=True)
class RefusalKey:
    """What refusals are counted together."""

    service: str | None  # the provisioning service; None when the request named none that exists
    action: str  # register, operationStatus, statusLookup, serviceApi, managementApi
    code: str  # the error code, e.g. DeviceUnauthorized
    network: str  # source_network() of the client
    audited: bool = False  # whether the refusals of this key go to the audit log too


@dataclass(frozen=True)
class RefusalSummary:
    """The refusals of a key left out of one interval."""

    key: RefusalKey
    start: datetime
    end: datetime
    recorded: int  # refusals of the window recorded in full
    omitted: int  # refusals counted only
    example: str  # what the first omitted one concerned (a registration id, shown)

    def describe(self) -> str:
        seconds = round((self.end - self.start).total_seconds())
        return (
            f"{self.omitted} more refusal{'s' if self.omitted != 1 else ''} of {self.key.code} "
            f"({self.key.action}) from {self.key.network} in the {seconds} s from "
            f"{self.start.isoformat(timespec='seconds')}, e.g. {self.example}; "
            f"the first {self.recorded} were recorded one by one"
        )


@dataclass(frozen=True)
class Admission:
    """What to do with one refusal: record it in full or only count it; and the summaries of
    windows that ended before it, to be written now."""

    record: bool
    key: RefusalKey  # the key it was counted under (OTHER_NETWORKS past MAX_WINDOWS)
    closed: tuple[RefusalSummary, ...] = ()


@dataclass
class _Window:
    start: datetime
    recorded: int = 0
    omitted: int = 0
    example: str = ""


class RefusalWindows:
    """The open windows, oldest first. Not thread-safe: its owner serialises the calls."""

    def __init__(
        self,
        *,
        interval: timedelta = REFUSAL_INTERVAL,
        recorded_per_interval: int = RECORDED_PER_INTERVAL,
        max_windows: int = MAX_WINDOWS,
    ) -> None:
        if interval <= timedelta(0) or recorded_per_interval < 0 or max_windows < 1:
            raise ValueError("a positive interval and window count, and no negative quota")
        self.interval = interval
        self.recorded_per_interval = recorded_per_interval
        self.max_windows = max_windows
        # Insertion order is start order: a key whose window ended is removed before it opens
        # another, so the oldest window is always first.
        self._windows: dict[RefusalKey, _Window] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def admit(self, key: RefusalKey, example: str, *, now: datetime) -> Admission:
        """Count one refusal of ``key`` at ``now``; ``example`` names what it concerned."""
        closed = tuple(self.close(now=now))
        if key not in self._windows and len(self._windows) >= self.max_windows:
            key = replace(key, network=OTHER_NETWORKS)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(start=now)
        if window.recorded < self.recorded_per_interval:
            window.recorded += 1
            return Admission(record=True, key=key, closed=closed)
        if window.omitted == 0:
            window.example = example
        window.omitted += 1
        return Admission(record=False, key=key, closed=closed)

    def close(self, *, now: datetime, everything: bool = False) -> list[RefusalSummary]:
        """End the windows whose interval is over at ``now`` (every window with ``everything``,
        at shutdown); a summary for each that left refusals out."""
        summaries: list[RefusalSummary] = []
        while self._windows:
            key, window = next(iter(self._windows.items()))
            end = window.start + self.interval
            if not everything and end > now:
                break
            del self._windows[key]
            if window.omitted:
                summaries.append(
                    RefusalSummary(
                        key=key,
                        start=window.start,
                        end=min(end, max(now, window.start)),
                        recorded=window.recorded,
                        omitted=window.omitted,
                        example=window.example,
                    )
                )
        return summaries
