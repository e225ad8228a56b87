"""The MQTT device endpoint against one real ``devprov serve``, beside the HTTPS device API on
the same server, PKI and client threads, in the same run.

1. **Registrations over MQTT**: X.509 devices (``bench/registration.py``'s PKI and group) each
   open a NEW TLS connection: CONNECT, SUBSCRIBE ``$dps/registrations/res/#``, register at QoS 1,
   poll at once until assigned (not after ``retry-after=1``: devprov decides during the
   register), answers acknowledged as the SDKs do, DISCONNECT. **Baseline**: registration.py's
   HTTPS round on the same server, in alternating order. Every run gets fresh devices.
2. **Idle devices**: ``--idle`` connections, CONNECTed (keep-alive 1740 s: no pings needed) and
   SUBSCRIBEd, from symmetric-key group devices (the cheapest for the client) or, with
   ``--idle-x509``, X.509 devices (dearer for the server: the chain is validated at CONNECT and
   kept). The server's VmRSS before and after gives memory per connection, its utime + stime
   the CPU to open them; at the end each gets PINGREQ, and those answering stayed connected.
3. **Registrations beside the idle fleet**: the load of (1) again, beside (1) without it.

RLIMIT_NOFILE goes to the hard limit for this process and the server, whose
``--max-connections`` is that limit less its reserve; ``--idle`` is lowered, saying why, when
the limit cannot hold it. Clients are threads with blocking ``ssl`` sockets and devprov's MQTT
codec in the client role, on the server's cores (docs/performance.md#machine-and-method).

Usage: .venv/bin/python bench/mqtt.py [--devices 500] [--clients 4] [--idle 10000]
                                      [--idle-x509] [--rounds 1] [--timeout 300]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import io
import json
import os
import platform
import resource
import secrets
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tests.instances import free_port
from tests.server import ServerProcess, running_server

import registration as https  # bench/registration.py: PKI, set-up, client threads, HTTPS client
from devprov.cli.main import main as devprov
from devprov.core.sas import build_sas_token, derive_device_key
from devprov.mqtt import codec
from devprov.transport.policy import FD_RESERVE
from session_cache import rss_kib

API = "api-version=2019-03-31"  # what Microsoft's Python device SDK sends
RESPONSES = "$dps/registrations/res/#"
REGISTER = "$dps/registrations/PUT/iotdps-register/?$rid={rid}"
POLL = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}"
KEEP_ALIVE_SECONDS = 1740  # the longest devprov honours: an idle device needs no PINGREQ
KEY_GROUP = "bench-keys"
MAX_IDLE = 200_000
CLIENT_FD_MARGIN = 64  # this process's own descriptors; connections the server has yet to close
WARM_UP_DEVICES = 8

P = TypeVar("P", bound=codec.Packet)


# --- an MQTT client over one blocking TLS socket ----------------------------------------------


class Link:
    """One device's MQTT connection: devprov's codec in the client role over a TLS socket."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self.tls = tls
        self.decoder = codec.Decoder(max_packet_bytes=1 << 20, role="client")
        self._packet_id = 0

    def send(self, packet: codec.Packet) -> None:
        self.tls.sendall(codec.encode(packet))

    def next_id(self) -> int:
        self._packet_id = self._packet_id % 65535 + 1
        return self._packet_id

    def read(self) -> codec.Packet:
        while (packet := self.decoder.next_packet()) is None:
            data = self.tls.recv(65536)
            if not data:
                raise https.BenchFailure("the server closed the connection")
            self.decoder.feed(data)
        return packet

    def expect(self, kind: type[P]) -> P:
        packet = self.read()
        if not isinstance(packet, kind):
            raise https.BenchFailure(f"expected {kind.__name__}, got {packet!r:.200}")
        return packet

    def request(self, topic: str, payload: bytes) -> tuple[int, dict[str, Any]]:
        """PUBLISH at QoS 1; the answer's status and body, the answer acknowledged."""
        packet_id = self.next_id()
        self.send(codec.Publish(topic, payload, qos=1, packet_id=packet_id))
        while isinstance(answer := self.read(), codec.PubAck):
            if answer.packet_id != packet_id:
                raise https.BenchFailure(f"PUBACK {answer.packet_id}, not {packet_id}")
        if not isinstance(answer, codec.Publish):
            raise https.BenchFailure(f"expected an answer, got {answer!r:.200}")
        if answer.qos == 1 and answer.packet_id is not None:
            self.send(codec.PubAck(answer.packet_id))
        status = int(answer.topic.split("/")[3])  # $dps/registrations/res/{status}/?$rid=...
        return status, json.loads(answer.payload)


def open_link(
    port: int, context: ssl.SSLContext, scope: str, rid: str, password: str | None = None
) -> Link:
    """A new TLS connection (full handshake), CONNECT accepted, SUBSCRIBE granted at QoS 1."""
    link = Link(https._connect(port, context))
    try:
        _hello(link, scope, rid, password)
    except BaseException:
        link.tls.close()
        raise
    return link


def _hello(link: Link, scope: str, rid: str, password: str | None) -> None:
    link.send(
        codec.Connect(
            protocol_name="MQTT",
            protocol_level=4,
            clean_session=True,
            keep_alive=KEEP_ALIVE_SECONDS,
            client_id=rid,
            username=f"{scope}/registrations/{rid}/{API}",
            password=password.encode() if password is not None else None,
        )
    )
    if (code := link.expect(codec.ConnAck).return_code) != 0:
        raise https.BenchFailure(f"{rid}: CONNACK {code}")
    link.send(codec.Subscribe(link.next_id(), ((RESPONSES, 1),)))
    if (granted := link.expect(codec.SubAck).return_codes) != (1,):
        raise https.BenchFailure(f"{rid}: SUBACK {granted}")


def register_mqtt(port: int, scope: str, device: https.Device) -> int:
    """Register over a new MQTT connection, poll at once until assigned; the polls made."""
    rid = device.registration_id
    link = open_link(port, device.context, scope, rid)
    with link.tls:
        body = json.dumps({"registrationId": rid}).encode()
        first = link.request(REGISTER.format(rid=1), body)

        def poll(operation: str) -> https.Answer:
            # one space as the body, as the SDKs send
            return link.request(POLL.format(rid=2, op=operation), b" ")

        polls = https.until_assigned(rid, first, poll)
        link.send(codec.Disconnect())
        return polls


def open_idle(
    port: int, scope: str, key: str | None, links: list[Link], device: https.Device
) -> int:
    """Connect one device and leave it connected, in ``links``: a symmetric-key group device
    (its key derived from the group's ``key``), or with ``key`` None an X.509 device."""
    rid, expiry = device.registration_id, int(time.time()) + 7200
    resource_uri = f"{scope}/registrations/{rid}"
    token = build_sas_token(derive_device_key(key, rid), resource_uri, expiry) if key else None
    links.append(open_link(port, device.context, scope, rid, token))
    return 0


def still_connected(links: Sequence[Link], timeout: float) -> int:
    """PINGREQ on every idle connection, then count the PINGRESPs (within ``timeout`` in all)."""
    sent = []
    for link in links:
        with contextlib.suppress(OSError):
            link.send(codec.PingReq())
            sent.append(link)
    answered, deadline = 0, time.monotonic() + timeout
    for link in sent:
        with contextlib.suppress(OSError, https.BenchFailure):
            link.tls.settimeout(max(0.01, deadline - time.monotonic()))
            answered += isinstance(link.read(), codec.PingResp)
    return answered


@dataclass
class Fleet:
    """Part 2: idle connections, what opening them cost the server, how many stayed."""

    wanted: int
    kind: str  # "symmetric-key" or "X.509"
    why_fewer: str  # why --idle was lowered, if it was
    links: list[Link] = field(default_factory=list)
    opened: https.Run = field(default_factory=lambda: https.Run("idle"))
    rss_before: int = 0
    rss_after: int = 0
    alive: int = 0


# --- set-up -----------------------------------------------------------------------------------


def raise_open_files() -> int:
    """Raise this process's descriptor limit to the hard limit; returns it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    return limit


def add_key_group(server: ServerProcess) -> str:
    """A symmetric-key enrollment group for the idle fleet; returns its primary key."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    with contextlib.redirect_stdout(io.StringIO()):
        made = devprov(
            [
                *("enrollment-group", "create", KEY_GROUP, "--symmetric-key"),
                *("--primary-key", key, "--data-dir", str(server.data_dir)),
            ]
        )
    if made != 0:
        raise RuntimeError(f"enrollment-group create {KEY_GROUP} failed ({made})")
    return key


# --- reporting --------------------------------------------------------------------------------


def machine() -> str:
    cpu = next(
        (
            row.split(":", 1)[1].strip()
            for row in Path("/proc/cpuinfo").read_text().splitlines()
            if row.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} x {cpu}, {memory:.0f} GiB RAM, Linux {platform.release()};"
        f" Python {platform.python_version()}, client {ssl.OPENSSL_VERSION}"
    )


def describe() -> str:
    """``git describe`` of the code measured, marked ``-dirty`` with uncommitted changes."""
    git = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
    try:
        done = subprocess.run(git, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown revision"
    return done.stdout.strip() or "unknown revision"


def line(label: str, run: https.Run) -> str:
    return (
        f"  {label:<30} {run.rate:7.1f} reg/s  p50 {run.latency_ms(0.5):6.1f} ms"
        f"  p99 {run.latency_ms(0.99):6.1f} ms  server CPU {run.cpu_us / 1e3:5.2f} ms/reg"
        f"  client CPU {run.client_cpu_us / 1e3:5.2f} ms/reg  ok {len(run.latencies)}"
        f"  failures {len(run.failures)}"
    )


def figures(runs: Sequence[https.Run]) -> dict[str, str]:
    s = https._summary
    return {
        "rate": s([r.rate for r in runs], ".1f"),
        "p50": s([r.latency_ms(0.5) for r in runs], ".1f"),
        "p99": s([r.latency_ms(0.99) for r in runs], ".1f"),
        "cpu": s([r.cpu_us / 1e3 for r in runs], ".2f"),
    }


def print_summary(
    mqtt: list[https.Run], http: list[https.Run], loaded: list[https.Run], fleet: Fleet
) -> None:
    m, h, f = figures(mqtt), figures(http), figures(loaded)
    ratio = https._summary([a.rate / b.rate for a, b in zip(mqtt, http, strict=True)], ".2f")
    how = "single figures" if len(mqtt) == 1 else f"median [min-max] over {len(mqtt)} rounds"
    opened, count = fleet.opened, len(fleet.links)
    per_connection = (fleet.rss_after - fleet.rss_before) / max(1, count)
    print(
        f"\nsummary ({how}):"
        f"\n1. registrations/s         MQTT {m['rate']} vs HTTPS {h['rate']} (MQTT/HTTPS {ratio})"
        f"\n   latency p50 / p99 (ms)  MQTT {m['p50']} / {m['p99']} vs HTTPS {h['p50']} / {h['p99']}"
        f"\n   server CPU/registration MQTT {m['cpu']} ms vs HTTPS {h['cpu']} ms"
        f"\n2. idle devices            {fleet.alive} of {fleet.wanted} {fleet.kind} devices stayed"
        " connected"
        f" ({count} opened, {len(opened.failures)} failed to open{fleet.why_fewer})"
        f"\n   server RSS              {fleet.rss_before / 1024:.1f} MiB before,"
        f" {fleet.rss_after / 1024:.1f} MiB after: {per_connection:.1f} KiB per connection"
        f"\n   server CPU to open      {opened.server_cpu:.1f} s, {opened.cpu_us / 1e3:.2f} ms"
        f" per connection ({opened.rate:.0f} connections/s, p50 {opened.latency_ms(0.5):.1f} ms,"
        f" p99 {opened.latency_ms(0.99):.1f} ms)"
        f"\n3. with {count} idle connected: MQTT p50 / p99 {f['p50']} / {f['p99']} ms"
        f" vs {m['p50']} / {m['p99']} ms without; {f['rate']} vs {m['rate']} reg/s;"
        f" server CPU {f['cpu']} vs {m['cpu']} ms/reg"
    )
    if len(mqtt) == 1:
        print("   (one round; a single run here can be 30 % off: use --rounds 3 or more)")


# --- the run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def serving(directory: Path, open_files: int) -> Iterator[ServerProcess]:
    """``devprov serve`` with MQTT on a free port and as many connections as descriptors."""
    port = free_port()  # outside the ephemeral range: --port 0 cannot take it first
    cap = str(open_files - FD_RESERVE)
    extra = ("--mqtt-port", str(port), "--max-connections", cap)
    with running_server(directory, *extra, open_files=open_files) as server:
        if server.mqtt_port != port:
            raise RuntimeError(f"devprov serve did not report MQTT on port {port}")
        yield server


def bench(args: argparse.Namespace, fleet: Fleet, open_files: int) -> int:
    runs: dict[str, list[https.Run]] = {"mqtt": [], "https": [], "loaded": []}
    with tempfile.TemporaryDirectory(prefix="devprov-bench-mqtt-") as tmp:
        (Path(tmp) / "pki").mkdir()
        pki = https.DevicePki(Path(tmp) / "pki")
        with serving(Path(tmp) / "data", open_files) as server:
            scope, key = https.set_up(server, pki), add_key_group(server)
            port, pid = server.mqtt_port or 0, server.process.pid
            for device in pki.devices("warm-https", WARM_UP_DEVICES, server.ca_file):
                https.register_device(server.port, scope, device)  # imports, caches, a check
            for device in pki.devices("warm-mqtt", WARM_UP_DEVICES, server.ca_file):
                register_mqtt(port, scope, device)

            def load(prefix: str, kind: str) -> https.Run:
                devices = pki.devices(prefix, args.devices, server.ca_file)
                work = (
                    functools.partial(register_mqtt, port, scope)
                    if kind == "mqtt"
                    else functools.partial(https.register_device, server.port, scope)
                )
                return https.drive(kind, work, devices, args.clients, pid, args.timeout)

            for number in range(args.rounds):  # 1. MQTT and HTTPS, in alternating order
                for kind in ("mqtt", "https")[:: 1 if number % 2 == 0 else -1]:
                    runs[kind].append(load(f"{kind}-r{number}", kind))
                print(
                    f"round {number + 1}:\n{line('MQTT: register (+ polls while assigning)', runs['mqtt'][-1])}"
                )
                print(line("HTTPS: register (+ polls while assigning)", runs["https"][-1]))

            if args.idle_x509:
                members = pki.devices("idle", fleet.wanted, server.ca_file)
            else:
                context = ssl.create_default_context(cafile=str(server.ca_file))  # no client cert
                members = [https.Device(f"idle-{i:06d}", context) for i in range(fleet.wanted)]
            idle_key = None if args.idle_x509 else key
            work = functools.partial(open_idle, port, scope, idle_key, fleet.links)
            fleet.rss_before = rss_kib(pid)  # 2. the idle fleet
            fleet.opened = https.drive("idle", work, members, args.clients, pid, args.timeout)
            fleet.rss_after = rss_kib(pid)
            print(
                f"idle: {len(fleet.links)} of {fleet.wanted} connected in"
                f" {fleet.opened.wall:.1f} s, server RSS {fleet.rss_before / 1024:.1f}"
                f" -> {fleet.rss_after / 1024:.1f} MiB"
            )
            for number in range(args.rounds):  # 3. registrations beside the fleet
                runs["loaded"].append(load(f"loaded-r{number}", "mqtt"))
                print(line(f"MQTT, {len(fleet.links)} idle connected", runs["loaded"][-1]))
            fleet.alive = still_connected(fleet.links, args.timeout)
            for link in fleet.links:
                link.tls.close()
    print_summary(runs["mqtt"], runs["https"], runs["loaded"], fleet)
    failures = [f for each in runs.values() for r in each for f in r.failures]
    for reason in sorted({*failures, *fleet.opened.failures})[:5]:
        print(f"  failure: {reason}")
    return 1 if failures or fleet.opened.failures or fleet.alive < fleet.wanted else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    https.add_load_options(parser, devices=500, rounds=1)  # rounds of (1) and (3)
    parser.add_argument("--idle", type=int, default=10_000, help="idle MQTT connections")
    parser.add_argument(
        "--idle-x509", action="store_true", help="idle devices are X.509, not symmetric-key"
    )
    args = parser.parse_args(argv)
    https.check_load_options(parser, args, ("idle", MAX_IDLE))

    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    open_files = raise_open_files()
    try:
        # Each idle connection takes a descriptor here and one in the server, which keeps
        # FD_RESERVE for itself. The margin keeps the server short of its cap: there, a new
        # registration would evict the idle connection that has waited longest.
        room = open_files - FD_RESERVE - CLIENT_FD_MARGIN - args.clients
        fleet = Fleet(min(args.idle, room), "X.509" if args.idle_x509 else "symmetric-key", "")
        if args.idle > room:
            fleet.why_fewer = f"; --idle {args.idle} lowered: RLIMIT_NOFILE hard limit {open_files}"
            print(f"idle connections limited to {room}: the hard RLIMIT_NOFILE is {open_files}")
        print(
            f"devprov {describe()}, {time.strftime('%Y-%m-%d')}: {args.devices} devices per"
            f" registration run, {args.clients} client threads, {fleet.wanted} idle,"
            f" {args.rounds} round(s); RLIMIT_NOFILE {open_files}\nmachine: {machine()}"
        )
        return bench(args, fleet, open_files)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


if __name__ == "__main__":
    sys.exit(main())
