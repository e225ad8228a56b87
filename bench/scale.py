"""X.509 registrations per second on an EMPTY store and on a FILLED one (a million registration
records, a hundred thousand individual enrollments), on SQLite and on PostgreSQL; and on
PostgreSQL, two ``devprov serve`` instances on one database beside one.

Per engine, on a fresh database (SQLite: a file in a temp dir; PostgreSQL: ``devprov_bench_<hex>``
on $DEVPROV_TEST_POSTGRESQL_URL's server, dropped at the end):

1. **empty**: ``devprov serve --database URL``, the set-up of bench/registration.py (root proven,
   hub linked, enrollment group ``bench``), then ``--rounds`` rounds of bench/registration.py's
   devprov run: ``--devices`` fresh X.509 devices per round, ``--clients`` threads, each device a
   new mutual-TLS connection, register, poll until assigned.
2. **load**: the server stopped, bench/scale_load.py writes ``--registrations`` records and
   ``--enrollments`` individual enrollments in batches (executemany / COPY) and reads a few back
   through the repositories. The load time is printed.
3. **filled**: a new server process on the filled database, the same rounds with new devices.
   Printed: filled / empty for reg/s (target: at least 0.80), p99 and server CPU per registration.
4. PostgreSQL only, **two instances**: two servers on the filled database (the same data
   directory, so the same server CA), the devices of a round dealt round-robin between them;
   reg/s and the server CPU per registration summed over both, beside one instance's (step 3).

Every server is warmed up with a few registrations before it is measured. After each run the RSS
of each instance is printed. Server CPU is utime + stime from /proc; the client threads share the
machine's cores with the servers (docs/performance.md#machine-and-method), so on a small machine
the CPU per registration is the better guide to scaling than reg/s.

Usage: .venv/bin/python bench/scale.py [--registrations 1000000] [--enrollments 100000]
           [--devices 500] [--clients 4] [--rounds 3] [--engines sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import functools
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tests.database import ADMIN_URL, postgresql_unreachable
from tests.server import ServerProcess, running_server

import registration as reg  # bench/registration.py: PKI, set-up, client threads, the client
import scale_load
from devprov.storage.database import create_database_engine, sqlite_url
from mqtt import describe, machine
from session_cache import rss_kib

ENGINES = ("sqlite", "postgresql")
TARGET_RATIO = 0.8  # the issue's target: filled within 20 % of empty
WARM_UP_DEVICES = 8
MAX_RECORDS = 10_000_000


@dataclass
class Phase:
    label: str
    runs: list[reg.Run] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)  # per instance, after the last round

    def values(self, value: str) -> list[float]:
        """One figure per round: ``rate``, ``cpu_us``, ``p50`` or ``p99`` (ms)."""
        if value in ("p50", "p99"):
            fraction = 0.5 if value == "p50" else 0.99
            return [r.latency_ms(fraction) for r in self.runs]
        return [float(getattr(r, value)) for r in self.runs]

    def figure(self, value: str, fmt: str) -> str:
        return reg._summary(self.values(value), fmt)

    def median(self, value: str) -> float:
        return statistics.median(self.values(value))

    @property
    def failures(self) -> list[str]:
        return [f for r in self.runs for f in r.failures]


# --- databases and servers ---------------------------------------------------------------------


@contextmanager
def new_database(engine: str, directory: Path) -> Iterator[str]:
    """A fresh database's URL; a PostgreSQL one is dropped afterwards, whatever happened."""
    if engine == "sqlite":
        yield sqlite_url(directory / "scale.db")
        return
    name = f"devprov_bench_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        # Byte-order collation, as docs/storage.md#choosing-the-database asks of operators.
        admin.execute(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"
            " LC_COLLATE 'C' LC_CTYPE 'C'".encode()
        )
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def rss_mib(pid: int) -> float:
    """A server's RSS with its worker processes' (``--workers``), in MiB."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [pid, *(int(p) for p in children.read_text().split())] if children.exists() else [pid]
    return sum(rss_kib(each) for each in pids) / 1024


def measure(
    label: str,
    servers: Sequence[ServerProcess],
    id_scope: str,
    pki: reg.DevicePki,
    args: argparse.Namespace,
    prefix: str,
) -> Phase:
    """``--rounds`` rounds of fresh devices, dealt round-robin over ``servers``."""
    for number, server in enumerate(servers):
        for device in pki.devices(f"{prefix}-w{number}", WARM_UP_DEVICES, server.ca_file):
            reg.register_device(server.port, id_scope, device)
    phase = Phase(label)
    for number in range(args.rounds):
        devices = pki.devices(f"{prefix}-r{number}", args.devices, servers[0].ca_file)
        port = {d.registration_id: servers[i % len(servers)].port for i, d in enumerate(devices)}

        def work(device: reg.Device, port: dict[str, int] = port) -> int:
            return reg.register_device(port[device.registration_id], id_scope, device)

        others = [s.process.pid for s in servers[1:]]
        before = sum(reg.process_tree_cpu(pid) for pid in others)
        run = reg.drive(label, work, devices, args.clients, servers[0].process.pid, args.timeout)
        run.server_cpu += sum(reg.process_tree_cpu(pid) for pid in others) - before
        phase.runs.append(run)
        print(
            f"    {label} round {number + 1}: {run.rate:6.1f} reg/s"
            f"  p50 {run.latency_ms(0.5):6.1f} ms  p99 {run.latency_ms(0.99):6.1f} ms"
            f"  server CPU/reg {run.cpu_us:5.0f} us  ok {len(run.latencies)}"
            f"  failures {len(run.failures)}",
            flush=True,
        )
    phase.rss_mib = [rss_mib(s.process.pid) for s in servers]
    return phase


# --- one engine --------------------------------------------------------------------------------


@dataclass
class EngineResult:
    engine: str
    loaded: scale_load.Loaded | None = None
    phases: dict[str, Phase] = field(default_factory=dict)


def run_engine(
    engine: str, directory: Path, pki: reg.DevicePki, args: argparse.Namespace
) -> EngineResult:
    result = EngineResult(engine)
    say = functools.partial(_progress, engine)
    with new_database(engine, directory) as url:
        data = directory / f"data-{engine}"
        say("empty store: starting devprov serve")
        with running_server(data, database=url) as server:
            id_scope = reg.set_up(server, pki)
            result.phases["empty"] = measure(
                "empty", [server], id_scope, pki, args, engine[:2] + "e"
            )
        say(f"loading {args.registrations:,} registrations, {args.enrollments:,} enrollments")
        store = create_database_engine(url)
        try:
            with store.connect() as connection:
                service = connection.execute(text("SELECT name FROM services")).scalar_one()
            result.loaded = scale_load.load(
                store,
                service=service,
                group=reg.GROUP,
                hub=reg.HUB,
                registrations=args.registrations,
                enrollments=args.enrollments,
                say=say,
            )
            say(scale_load.check(store, service, reg.GROUP, args.registrations, args.enrollments))
        finally:
            store.dispose()
        say(f"loaded in {result.loaded.seconds:.1f} s; filled store: starting devprov serve")
        with running_server(data, database=url) as server:
            result.phases["filled"] = measure(
                "filled", [server], id_scope, pki, args, engine[:2] + "f"
            )
        if engine == "postgresql":
            say("two instances on the filled database")
            with ExitStack() as stack:
                servers = [stack.enter_context(running_server(data, database=url)) for _ in "ab"]
                result.phases["two"] = measure("two", servers, id_scope, pki, args, "pg2")
    return result


def _progress(engine: str, message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {engine}: {message}", flush=True)


# --- reporting ---------------------------------------------------------------------------------


def _line(phase: Phase, what: str) -> str:
    memory = ", ".join(f"{m:.0f}" for m in phase.rss_mib)
    return (
        f"    {what:<28} {phase.figure('rate', '.1f')} reg/s   p50 / p99"
        f" {phase.figure('p50', '.1f')} / {phase.figure('p99', '.1f')} ms"
        f"   server CPU/reg {phase.figure('cpu_us', '.0f')} us   RSS {memory} MiB"
        f"   failures {len(phase.failures)}"
    )


def print_result(result: EngineResult, args: argparse.Namespace) -> None:
    print(f"\n  {result.engine}:")
    if result.loaded is not None:
        rows = result.loaded.registrations + result.loaded.enrollments
        print(
            f"    load: {result.loaded.registrations:,} registration records +"
            f" {result.loaded.enrollments:,} individual enrollments in"
            f" {result.loaded.seconds:.1f} s ({rows / result.loaded.seconds:,.0f} rows/s)"
        )
    empty, filled = result.phases["empty"], result.phases["filled"]
    print(_line(empty, "empty store"))
    print(_line(filled, f"filled ({args.registrations:,} records)"))
    ratio = filled.median("rate") / empty.median("rate")
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    print(
        f"    filled / empty: reg/s {ratio:.2f} (target >= {TARGET_RATIO:.2f}: {verdict}),"
        f" p99 {reg.ratio(filled.median('p99'), empty.median('p99')):.2f}x,"
        f" server CPU/reg {reg.ratio(filled.median('cpu_us'), empty.median('cpu_us')):.2f}x"
    )
    two = result.phases.get("two")
    if two is None:
        return
    print(_line(two, "two instances (filled)"))
    print(
        f"    two / one instance: reg/s {two.median('rate') / filled.median('rate'):.2f}x,"
        f" server CPU/reg summed over both {two.median('cpu_us') / filled.median('cpu_us'):.2f}x"
        f" ({two.median('cpu_us'):.0f} us vs {filled.median('cpu_us'):.0f} us)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registrations", type=int, default=1_000_000)
    parser.add_argument("--enrollments", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=500, help="devices per round")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per measurement")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per round, at most")
    parser.add_argument("--engines", default=",".join(ENGINES), help="sqlite,postgresql")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not engines or any(e not in ENGINES for e in engines):
        parser.error(f"--engines: a comma-separated list of {', '.join(ENGINES)}")
    if not 1 <= args.registrations <= MAX_RECORDS:
        parser.error(f"--registrations must be 1 to {MAX_RECORDS:,}")
    if not 1 <= args.enrollments <= MAX_RECORDS:
        parser.error(f"--enrollments must be 1 to {MAX_RECORDS:,}")
    if not 1 <= args.devices <= reg.MAX_DEVICES:
        parser.error(f"--devices must be 1 to {reg.MAX_DEVICES}")
    if not 1 <= args.clients <= min(reg.MAX_CLIENTS, args.devices):
        parser.error(f"--clients must be 1 to {reg.MAX_CLIENTS} and at most --devices")
    if not 1 <= args.rounds <= reg.MAX_ROUNDS:
        parser.error(f"--rounds must be 1 to {reg.MAX_ROUNDS}")
    if not 1 <= args.timeout <= 3600:
        parser.error("--timeout must be 1 to 3600 seconds")

    print(
        f"devprov {describe()}, {datetime.now(UTC):%Y-%m-%d}: {args.registrations:,} registration"
        f" records, {args.enrollments:,} individual enrollments; {args.devices} devices per"
        f" round, {args.clients} client threads, {args.rounds} round(s)"
        f"\nmachine: {machine()}",
        flush=True,
    )
    results, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="devprov-bench-scale-") as tmp:
        directory = Path(tmp)
        (directory / "pki").mkdir()
        pki = reg.DevicePki(directory / "pki")
        for engine in engines:
            if engine == "postgresql" and (reason := postgresql_unreachable()) is not None:
                skipped.append(f"  postgresql: not measured: {reason}")
                continue
            results.append(run_engine(engine, directory, pki, args))
    print("\nsummary (median [min-max] over rounds):" if args.rounds > 1 else "\nsummary:")
    for result in results:
        print_result(result, args)
    for line in skipped:
        print(line)
    failures = [f for r in results for p in r.phases.values() for f in p.failures]
    for reason in sorted(set(failures))[:5]:
        print(f"  failure: {reason}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
