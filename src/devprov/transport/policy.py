"""The limits and timeouts every connection of every endpoint lives under, with their defaults.

One frozen :class:`ConnectionPolicy` is built at start-up (``devprov serve`` options) and handed
to each server; a later transport (MQTT, AMQP) takes the same object and the same
:class:`devprov.transport.gate.ConnectionGate`, so its connections are counted, timed and evicted
the same way. The defaults and the reasons for them are documented in
docs/operations.md#connections-timeouts-and-hostile-clients.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field, fields

from devprov.transport.proxy import Network

# File descriptors kept back from the connection cap for everything else a server process opens:
# up to 100 sockets asyncio accepts in one batch before any of them can be refused and closed
# (its listen backlog), SQLite's database, journal and shared-memory files for each pooled
# connection (3 each, 15 connections), the allocation webhook's sockets (one per worker thread,
# 40 at most), the listening sockets, the event loop's own, log files and standard streams. Past
# the descriptor limit accept() fails with EMFILE, which asyncio reports with a traceback per
# attempt; the cap keeps the server short of it.
FD_RESERVE = 256

# A TLS handshake is two round trips and a few milliseconds of CPU; ten seconds covers slow
# cellular links and still frees the slot of a client that stopped half-way.
HANDSHAKE_TIMEOUT_SECONDS = 10.0

# A request head (request line and headers, at most 16 KiB) arrives whole within this, counted
# from the handshake's end for the first request and from its first byte for the next ones.
# Devices send it in one write; a head that trickles in is the slow-loris attack.
HEAD_TIMEOUT_SECONDS = 10.0

# A whole request body must arrive within this, counted from the end of the head. Bodies are at
# most 96 KB (DPS's limit): even at 4 KB/s the largest arrives in 24 s. A total, not a gap
# between reads, so that a body dripping one byte a minute cannot hold a slot for ever.
BODY_TIMEOUT_SECONDS = 30.0

# How long a connection may wait for its next request. Devices that poll an operation come back
# within seconds (Retry-After, or the SDKs' own 2 s wait); 60 s is what common servers use.
KEEP_ALIVE_TIMEOUT_SECONDS = 60.0

# How long the application may take to answer a request once its head arrived. It must exceed
# the slowest legitimate call: a custom allocation webhook (10 s) plus a wait on SQLite's lock
# (5 s); a device gives up after 30 s anyway (docs/operations.md#handler-timeout).
HANDLER_TIMEOUT_SECONDS = 30.0

# At the cap, a new connection takes the slot of the connection that has waited longest without
# a request being handled (in its handshake, between requests, or sending a head or a body),
# provided it has waited at least this long: a healthy handshake or request phase takes
# milliseconds, so a connection idle for 2 s is waiting on its client, not on devprov.
EVICT_AFTER_SECONDS = 2.0

# Refusals and evictions are logged as one line per interval, with their counts.
REPORT_INTERVAL_SECONDS = 10.0


def default_max_connections(descriptor_limit: int | None = None) -> int:
    """The connection cap derived from the process's file-descriptor limit (``ulimit -n``).

    The soft limit minus :data:`FD_RESERVE`, or a quarter of it when that is more (small
    limits); an unlimited descriptor limit is taken as 65,536.
    """
    if descriptor_limit is None:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        descriptor_limit = soft if soft != resource.RLIM_INFINITY else 65_536
    return max(1, descriptor_limit // 4, descriptor_limit - FD_RESERVE)


@dataclass(frozen=True)
class ConnectionPolicy:
    """Connection cap and per-phase timeouts (seconds) for one server process."""

    max_connections: int = field(default_factory=default_max_connections)
    handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS
    head_timeout: float = HEAD_TIMEOUT_SECONDS
    body_timeout: float = BODY_TIMEOUT_SECONDS
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT_SECONDS
    handler_timeout: float = HANDLER_TIMEOUT_SECONDS
    evict_after: float = EVICT_AFTER_SECONDS
    report_interval: float = REPORT_INTERVAL_SECONDS
    # Peers that must open with a PROXY protocol header (``--proxy-from``): the load balancers
    # in front (docs/operations.md#the-proxy-protocol). Empty: no header is looked for.
    proxy_from: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        for item in fields(self):
            if item.name == "proxy_from":
                continue
            value = getattr(self, item.name)
            if not value > 0:
                raise ValueError(f"ConnectionPolicy.{item.name} must be positive, not {value!r}")
