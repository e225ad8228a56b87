"""X.509 registrations over AMQP 1.0 against one real ``devprov serve``, beside HTTPS and MQTT
registrations on the same server, PKI and client threads, in the same run.

Each device registers on a NEW TLS connection, as a device SDK does:

- **AMQP**, as Microsoft's Node SDK does (docs/sdk-clients.md#node-device-amqp-and-amqp-over-websocket,
  docs/amqp.md): TLS with the device's chain, no SASL layer (the AMQP header straight away),
  open, begin, attach a receiver then a sender at ``{idScope}/registrations/{registrationId}``
  with ``com.microsoft:api-version``, a register message, the answer, then operation-status
  messages at once until assigned (not after ``retry-after: 1``: devprov decides during the
  register), close. The client is devprov's AMQP codec in the client role over a blocking
  ``ssl`` socket (tests/amqp/client.py).
- **HTTPS**: ``bench/registration.py``'s register (+ polls while assigning) on one keep-alive connection.
- **MQTT**: ``bench/mqtt.py``'s CONNECT, SUBSCRIBE, register, poll, DISCONNECT.

Every run gets fresh devices from ``bench/registration.py``'s PKI and enrollment group; each
round runs the three protocols in a rotating order. Server CPU is the server process's utime +
stime from /proc before and after each run; the client threads share the server's cores
(docs/performance.md#machine-and-method), so CPU per registration is the better guide to the
server's ceiling. With ``--rounds`` > 1 the summary gives median and min-max over rounds,
ratios paired within each round.

Usage: .venv/bin/python bench/amqp.py [--devices 200] [--clients 4] [--rounds 3]
                                      [--timeout 300]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tests.amqp.client import AmqpClient
from tests.instances import free_port
from tests.server import ServerProcess, running_server

import mqtt  # bench/mqtt.py: the MQTT device, the machine line, the per-run line
import registration as https  # bench/registration.py: PKI, set-up, client threads, HTTPS client
from devprov.amqp.application import Message
from devprov.amqp.frames import Accepted, Flow

LINK_PROPERTIES = {"com.microsoft:api-version": "2019-03-31"}  # what Node's SDK attaches with
KINDS = ("amqp", "https", "mqtt")
LABELS = {"amqp": "AMQP", "https": "HTTPS", "mqtt": "MQTT"}


# --- an AMQP device -------------------------------------------------------------------------


def _request(client: AmqpClient, rid: str, properties: dict[str, Any], body: bytes) -> Message:
    """Send one request message, unsettled; it must be accepted, and its answer (matched by
    correlation id) is returned (docs/amqp.md#messages, docs/amqp.md#answers)."""
    correlation = str(uuid.uuid4())
    message = Message(body=body, application_properties=properties, correlation_id=correlation)
    if (outcome := client.send(message)) != Accepted():
        raise https.BenchFailure(f"{rid}: {properties['iotdps-operation-type']} -> {outcome}")
    answer = client.receive(timeout=https.SOCKET_TIMEOUT_SECONDS)
    if answer.correlation_id != correlation:
        raise https.BenchFailure(f"{rid}: answer to {answer.correlation_id}, not {correlation}")
    return answer


def register_amqp(port: int, scope: str, device: https.Device) -> int:
    """Register over a new AMQP connection, poll at once until assigned; the polls made."""
    rid = device.registration_id
    address = f"{scope}/registrations/{rid}"
    with AmqpClient(https._connect(port, device.context)) as client:
        client.handshake(None)  # no SASL layer: rhea sends none for an X.509 device
        client.open()
        client.begin()
        client.attach_receiver(address, LINK_PROPERTIES)
        client.attach_sender(address, LINK_PROPERTIES)
        client.expect(Flow)  # the server's credit to send
        register = {"iotdps-operation-type": "iotdps-register", "iotdps-forceRegistration": False}
        first = _answer(
            _request(client, rid, register, json.dumps({"registrationId": rid}).encode())
        )

        def poll(operation: str) -> https.Answer:
            properties = {
                "iotdps-operation-type": "iotdps-get-operationstatus",
                "iotdps-operation-id": operation,
            }
            return _answer(_request(client, rid, properties, b""))

        polls = https.until_assigned(rid, first, poll)
        client.close()
        return polls


def _answer(reply: Message) -> https.Answer:
    """An AMQP reply as DPS's status and body: 202 while its iotdps-status is assigning."""
    status = 202 if reply.application_properties.get("iotdps-status") == "assigning" else 200
    return status, dict(json.loads(reply.body))


# --- the run --------------------------------------------------------------------------------


def registrations(server: ServerProcess, scope: str) -> dict[str, Callable[[https.Device], int]]:
    """Each protocol's registration of one device against ``server``."""
    return {
        "amqp": functools.partial(register_amqp, server.amqp_port or 0, scope),
        "https": functools.partial(https.register_device, server.port, scope),
        "mqtt": functools.partial(mqtt.register_mqtt, server.mqtt_port or 0, scope),
    }


def bench(args: argparse.Namespace) -> dict[str, list[https.Run]]:
    runs: dict[str, list[https.Run]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="devprov-bench-amqp-") as tmp:
        (Path(tmp) / "pki").mkdir()
        pki = https.DevicePki(Path(tmp) / "pki")
        # Ports outside the ephemeral range: --port 0 cannot take them first.
        amqp_port, mqtt_port = free_port(), free_port()
        while mqtt_port == amqp_port:
            mqtt_port = free_port()
        extra = ("--amqp-port", str(amqp_port), "--mqtt-port", str(mqtt_port))
        with running_server(Path(tmp) / "data", *extra) as server:
            if (server.amqp_port, server.mqtt_port) != (amqp_port, mqtt_port):
                raise RuntimeError(f"devprov serve did not report AMQP and MQTT on {extra}")
            scope = https.set_up(server, pki)
            work = registrations(server, scope)
            for kind in KINDS:  # imports, caches, and a check of each protocol
                for device in pki.devices(f"warm-{kind}", https.WARM_UP_DEVICES, server.ca_file):
                    work[kind](device)
            for number in range(args.rounds):
                shift = number % len(KINDS)
                for kind in KINDS[shift:] + KINDS[:shift]:
                    devices = pki.devices(f"{kind}-r{number}", args.devices, server.ca_file)
                    runs[kind].append(
                        https.drive(
                            kind,
                            work[kind],
                            devices,
                            args.clients,
                            server.process.pid,
                            args.timeout,
                        )
                    )
                print(f"round {number + 1}:")
                for kind in KINDS:
                    print(
                        mqtt.line(
                            f"{LABELS[kind]}: register (+ polls while assigning)", runs[kind][-1]
                        )
                    )
    return runs


# --- reporting ------------------------------------------------------------------------------


def ratios(ours: Sequence[https.Run], base: Sequence[https.Run]) -> str:
    """Rate and server CPU per registration of ``ours`` over ``base``, paired by round."""
    pairs = list(zip(ours, base, strict=True))
    rate = https._summary([https.ratio(a.rate, b.rate) for a, b in pairs], ".2f")
    cpu = https._summary([https.ratio(a.cpu_us, b.cpu_us) for a, b in pairs], ".2f")
    return f"registrations/s {rate}, server CPU per registration {cpu}"


def print_summary(runs: dict[str, list[https.Run]]) -> None:
    count = len(runs["amqp"])
    how = "single figures" if count == 1 else f"median [min-max] over {count} rounds"
    f = {kind: mqtt.figures(runs[kind]) for kind in KINDS}
    print(f"\nsummary ({how}):")
    print("  registrations/s         " + " vs ".join(f"{LABELS[k]} {f[k]['rate']}" for k in KINDS))
    print(
        "  latency p50 / p99 (ms)  "
        + " vs ".join(f"{LABELS[k]} {f[k]['p50']} / {f[k]['p99']}" for k in KINDS)
    )
    print(
        "  server CPU/registration " + " vs ".join(f"{LABELS[k]} {f[k]['cpu']} ms" for k in KINDS)
    )
    print(f"  AMQP/HTTPS              {ratios(runs['amqp'], runs['https'])}")
    print(f"  AMQP/MQTT               {ratios(runs['amqp'], runs['mqtt'])}")
    failures = {k: sum(len(r.failures) for r in runs[k]) for k in KINDS}
    print("  failures                " + ", ".join(f"{LABELS[k]} {failures[k]}" for k in KINDS))
    if count == 1:
        print("  (one round; a single run here can be 30 % off: use --rounds 3 or more)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    https.add_load_options(parser, devices=200, rounds=3)
    args = parser.parse_args(argv)
    https.check_load_options(parser, args)

    print(
        f"devprov {mqtt.describe()}, {time.strftime('%Y-%m-%d')}: {args.devices} devices per"
        f" protocol and round, {args.clients} client threads, {args.rounds} round(s);"
        f" X.509 (EC P-256, leaf + intermediate), a new TLS connection per device"
        f"\nmachine: {mqtt.machine()}"
    )
    runs = bench(args)
    print_summary(runs)
    failures = [f for each in runs.values() for r in each for f in r.failures]
    for reason in sorted(set(failures))[:5]:
        print(f"  failure: {reason}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
