"""What a device waits: Microsoft's device SDKs, unchanged, timing ``register()`` to its result
against two real ``devprov serve`` runs with the same PKI set-up, one after the other.

- **before**: ``devprov serve --always-poll``, DPS's sequence: the register is answered 202
  ``assigning`` with ``Retry-After: 1`` and the device polls. The Python SDK waits a fixed 2 s
  before its first poll (docs/sdk-clients.md#python-device-statuses-polling-and-timeouts);
  Node's HTTP transport waits what ``Retry-After`` says (docs/sdk-clients.md#node-device-http-transport).
- **after**: devprov's default, the register answered with its outcome at once (200).

Devices are X.509 members of one enrollment group (bench/registration.py's PKI and set-up: EC
P-256, leaf + intermediate, a proven root), registering one after another: this measures what
one device waits, not throughput.

- **Python device SDK** (``azure-iot-device``) over MQTT, in this process: the client is built
  (tests/interop/python_device.py), then ``register()`` is timed to its return, which includes
  its TLS connection, CONNECT, SUBSCRIBE, the register, any polls and its DISCONNECT. The SDK
  connects to port 8883 and to no other (docs/sdk-clients.md#python-device-host-port-and-tls),
  so both servers listen there; when 8883 cannot be had, nothing is measured (exit 3).
- **Node device SDK** over HTTP: one ``node tests/interop/node/register.js`` per device (the
  test-only agent moves its port-443 connection to the server's port), which times its own
  ``register()`` call (``"timeRegister"``); the node process, start to exit, is timed here too.
  Without node, the Node rows say why they were not measured.

Beside them, the server-side figure: the server's CPU (utime + stime from /proc, as
bench/registration.py reads it) over each SDK's N registrations, divided by N. One device per
SDK registers first on each server, untimed (imports, caches, a check).

Usage: .venv/bin/python bench/sdk_latency.py [--devices 20] [--timeout 60]
  --timeout bounds each Python register(); the Node driver gives up by itself after 60 s.
Exit: 0; 1 when a registration failed; 3 when port 8883 cannot be had.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tests.interop import nodejs
from tests.interop.ports import port_refusal
from tests.interop.python_device import build_client
from tests.server import ServerProcess, running_server

import mqtt  # bench/mqtt.py: the machine line and the revision measured
import registration as https  # bench/registration.py: PKI, set-up, Run, the server's CPU

SDK_PORT = 8883  # the Python device SDK's MQTT port, fixed
PYTHON_SDK = "the Python device SDK"
REGISTER_JS = nodejs.NODE_DIR / "register.js"
PHASES = {"before": ("--always-poll",), "after": ()}
LABELS = {"before": "before (--always-poll)", "after": "after (answered at once)"}
NAMES = {"python": "Python SDK, MQTT", "node": "Node SDK, HTTP"}
MAX_DEVICES = 1000
EXIT_PORT_TAKEN = 3

Work = Callable[[str], Sequence[float]]  # a registration id -> its durations (s), one per Run


def _done(outcome: dict[str, Any], rid: str) -> None:
    """Raise unless the SDK reports ``rid`` assigned to the bench's hub."""
    if outcome.get("status") != "assigned" or outcome.get("assignedHub") != https.HUB:
        raise https.BenchFailure(f"{rid}: {json.dumps(outcome)[:300]}")


def python_register(server: ServerProcess, scope: str, pki: Path, timeout: float) -> Work:
    """Register with the Python SDK in this process; (the register() call's duration,)."""

    def work(rid: str) -> Sequence[float]:
        client = build_client(
            {
                "host": "localhost",  # a name of the server certificate: the SDK checks it
                "idScope": scope,
                "registrationId": rid,
                "ca": str(server.ca_file),
                "cert": str(pki / f"{rid}.pem"),
                "key": str(pki / f"{rid}.key"),
            }
        )
        box: list[Any] = []

        def call() -> None:  # in a thread: the SDK retries some failures for a long time
            start = time.perf_counter()
            try:
                result = client.register()
            except Exception as exc:  # reported by class, as tests/interop/python_device.py
                box.append(exc)
                return
            box.append((time.perf_counter() - start, result))

        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        worker.join(timeout)
        if not box:
            raise https.BenchFailure(f"{rid}: register() did not return within {timeout:g} s")
        if isinstance(box[0], Exception):
            raise https.BenchFailure(f"{rid}: {type(box[0]).__name__}: {box[0]}")
        seconds, result = box[0]
        state = result.registration_state
        _done({"status": result.status, "assignedHub": state and state.assigned_hub}, rid)
        return (seconds,)

    return work


def node_register(node: str, server: ServerProcess, scope: str, pki: Path) -> Work:
    """Register with the Node SDK over HTTP in a node process; (its register(), the process)."""

    def work(rid: str) -> Sequence[float]:
        args = {
            "transport": "http",
            "port": server.port,
            "ca": str(server.ca_file),
            "idScope": scope,
            "registrationId": rid,
            "cert": str(pki / f"{rid}.pem"),
            "key": str(pki / f"{rid}.key"),
            "timeRegister": True,
        }
        start = time.perf_counter()
        run = nodejs.run_driver(node, REGISTER_JS, args)
        process = time.perf_counter() - start
        if run.returncode != 0 or not run.line.get("ok"):
            raise https.BenchFailure(f"{rid}: exit {run.returncode} {json.dumps(run.line)[:300]}")
        _done(run.line["result"], rid)
        return run.line["registerMs"] / 1e3, process

    return work


def measure(label: str, rids: Sequence[str], work: Work, width: int, pid: int) -> list[https.Run]:
    """Register ``rids`` one after another; ``width`` runs of durations, the server's CPU and
    the failures (on the first) over all of them."""
    runs = [https.Run(label) for _ in range(width)]
    cpu_before, start = https.process_tree_cpu(pid), time.perf_counter()
    for rid in rids:
        try:
            durations = work(rid)
        except Exception as exc:  # a failed device is counted and named, the others go on
            runs[0].failures.append(f"{type(exc).__name__}: {exc}")
            continue
        for run, seconds in zip(runs, durations, strict=True):
            run.latencies.append(seconds)
    wall, cpu = time.perf_counter() - start, https.process_tree_cpu(pid) - cpu_before
    for run in runs:
        run.wall, run.server_cpu = wall, cpu
    return runs


def line(label: str, run: https.Run) -> str:
    return (
        f"  {label:<48} p50 {run.latency_ms(0.5):7.1f} ms  p99 {run.latency_ms(0.99):7.1f} ms"
        f"  server CPU {run.cpu_us / 1e3:5.2f} ms/reg  ok {len(run.latencies)}"
        f"  failures {len(run.failures)}"
    )


def ratio(label: str, before: https.Run, after: https.Run) -> str:
    """Before -> after for p50, p99 (with before/after) and the server's CPU per registration."""
    figures = []
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        was, now = before.latency_ms(q), after.latency_ms(q)
        figures.append(f"{name} {was:.1f} -> {now:.1f} ms ({was / now:.1f}x)")
    cpu = f"{before.cpu_us / 1e3:.2f} -> {after.cpu_us / 1e3:.2f}"
    return f"  {label:<17} {'  '.join(figures)}  server CPU {cpu} ms/reg"


def run_phase(
    phase: str, tmp: Path, pki: https.DevicePki, devices: int, node: str | None, timeout: float
) -> dict[str, https.Run] | None:
    """One server: set up, warm up, then each SDK's devices; their runs by name. None when
    port 8883 was taken since main() checked it, said by whom."""
    where = ("--host", "localhost", "--mqtt-port", str(SDK_PORT), *PHASES[phase])
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_server(tmp / f"data-{phase}", *where))
        except RuntimeError:
            if (refusal := port_refusal(SDK_PORT, PYTHON_SDK)) is None:
                raise
            print(f"not measured: {refusal}")
            return None
        scope, pid = https.set_up(server, pki), server.process.pid
        works = {"python": (python_register(server, scope, pki.directory, timeout), 1)}
        if node is not None:
            works["node"] = (node_register(node, server, scope, pki.directory), 2)
        runs: dict[str, https.Run] = {}
        for sdk, (work, width) in works.items():
            warm, *rids = [
                d.registration_id
                for d in pki.devices(f"{sdk}-{phase}", devices + 1, server.ca_file)
            ]
            work(warm)
            measured = measure(f"{sdk} {phase}", rids, work, width, pid)
            runs[sdk] = measured[0]
            print(line(f"{NAMES[sdk]}, {LABELS[phase]}", measured[0]), flush=True)
            if width == 2:
                runs["node-process"] = process = measured[1]
                print(
                    f"    {'its node process, start to exit':<46} p50"
                    f" {process.latency_ms(0.5):7.1f} ms  p99 {process.latency_ms(0.99):7.1f} ms"
                )
        return runs


def versions(node: str | None) -> str:
    python = importlib.metadata.version("azure-iot-device")
    if node is None:
        return f"azure-iot-device {python} (MQTT)"
    package = nodejs.NODE_DIR / "node_modules" / "azure-iot-provisioning-device" / "package.json"
    return (
        f"azure-iot-device {python} (MQTT); azure-iot-provisioning-device"
        f" {json.loads(package.read_text())['version']} (HTTP)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=20, help="devices per SDK and server")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds per Python register() (the Node driver keeps its own 60 s)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.devices <= MAX_DEVICES:
        parser.error(f"--devices must be 1 to {MAX_DEVICES}")
    if not 1 <= args.timeout <= 600:
        parser.error("--timeout must be 1 to 600 seconds")
    if (refusal := port_refusal(SDK_PORT, PYTHON_SDK)) is not None:
        print(f"not measured: {refusal}")
        return EXIT_PORT_TAKEN
    node: str | None = None
    why_not_node = ""
    try:
        node = nodejs.node_with_packages()
    except pytest.skip.Exception as skipped:  # its reason: node or its packages are missing
        why_not_node = skipped.msg or "node is unavailable"

    print(
        f"devprov {mqtt.describe()}, {time.strftime('%Y-%m-%d')}: {args.devices} devices per SDK"
        f" and server, one after another; X.509 group devices\nmachine: {mqtt.machine()}"
        f"\nSDKs: {versions(node)}; times from register() to its result"
    )
    if why_not_node:
        print(f"Node SDK not measured: {why_not_node}")
    phases: dict[str, dict[str, https.Run]] = {}
    with tempfile.TemporaryDirectory(prefix="devprov-bench-sdk-") as tmp:
        (Path(tmp) / "pki").mkdir()
        pki = https.DevicePki(Path(tmp) / "pki")
        for phase in PHASES:
            runs = run_phase(phase, Path(tmp), pki, args.devices, node, args.timeout)
            if runs is None:
                return EXIT_PORT_TAKEN
            phases[phase] = runs
    print("\nsummary, before -> after (before/after):")
    for sdk, name in NAMES.items():
        if sdk in phases["after"]:
            print(ratio(name, phases["before"][sdk], phases["after"][sdk]))
    failures = [f for runs in phases.values() for run in runs.values() for f in run.failures]
    for reason in sorted(set(failures))[:5]:
        print(f"  failure: {reason}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
