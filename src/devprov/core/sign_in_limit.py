"""How many failed sign-ins the portal takes before it makes a client wait.

Guessing a password costs an attacker one form post; the limit makes it cost time. Failures are
counted per key, in a sliding window: the portal counts each failure under the client's address
and, for a user name and password, under the user name too, so neither many names from one
address nor one name from many addresses goes unlimited (OWASP Authentication Cheat Sheet,
"Protect Against Automated Attacks"). A key that reached the limit is refused until its oldest
counted failure leaves the window. Success forgets nothing but what the caller names: a client
that signs in as one user keeps its address's count of failures for others.

Pure: the time is passed in as ``now``; nothing here reads a clock or writes anywhere. The
counts live in memory, so each server process keeps its own (docs/portal.md#signing-in).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime, timedelta

# Five tries in five minutes: enough for an operator who mistypes, too few for guessing (a
# 12-character password is not found in 60 tries an hour).
FAILURES_PER_WINDOW = 5
WINDOW = timedelta(minutes=5)

# Keys held at once, which bounds the memory a flood of names or addresses can take (a key is a
# few hundred bytes). Past it the key whose last failure is oldest is forgotten first.
MAX_KEYS = 10_000

# An IPv6 client may hold a whole /64 (RFC 4291 2.5.1); counting each address apart would let it
# try from 2**64 of them.
IPV6_PREFIX = 64


def address_key(address: str | None) -> str:
    """The key a client address counts under: the IPv4 address, the IPv6 /64 around it."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return f"address:{address or 'unknown'}"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return f"address:{ipaddress.ip_network(f'{ip}/{IPV6_PREFIX}', strict=False)}"
    return f"address:{ip}"


def user_key(name: str) -> str:
    """The key a user name counts under (names compare ignoring case)."""
    return f"user:{name.strip().lower()}"


class SignInLimit:
    """Failed sign-ins per key in a sliding window."""

    def __init__(
        self,
        *,
        failures: int = FAILURES_PER_WINDOW,
        window: timedelta = WINDOW,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if failures < 1 or window <= timedelta(0) or max_keys < 1:
            raise ValueError("failures, window and max_keys must be positive")
        self._failures = failures
        self._window = window
        self._max_keys = max_keys
        self._seen: dict[str, list[datetime]] = {}

    def retry_after(self, keys: Iterable[str], *, now: datetime) -> timedelta | None:
        """How long until any of ``keys`` may try again, or None when all of them may now."""
        waits = []
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self._failures:
                waits.append(times[-self._failures] + self._window - now)
        return max(waits) if waits else None

    def fail(self, keys: Iterable[str], *, now: datetime) -> None:
        """Count one failure under each of ``keys``."""
        for key in keys:
            times = self._recent(key, now)
            self._seen.pop(key, None)  # re-inserted last: the dict's order is the eviction order
            self._seen[key] = (
                [*times[-(self._failures - 1) :], now] if self._failures > 1 else [now]
            )
        while len(self._seen) > self._max_keys:
            del self._seen[next(iter(self._seen))]

    def forget(self, key: str) -> None:
        """Drop the count of ``key`` (its owner proved who they are)."""
        self._seen.pop(key, None)

    def _recent(self, key: str, now: datetime) -> list[datetime]:
        times = [t for t in self._seen.get(key, ()) if t > now - self._window]
        if not times:
            self._seen.pop(key, None)
        return times
