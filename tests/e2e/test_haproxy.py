"""A real HAProxy in TCP mode in front of two ``devprov serve`` instances on one PostgreSQL
database, with the configuration of docs/operations.md#a-ready-haproxy-configuration: devices
register through it with mutual TLS over HTTPS and MQTT, their address reaches devprov in the
PROXY header, both instances serve, and after one is killed with SIGKILL the other serves every
device. Skips, with the reason, where ``haproxy`` is not installed (``make system-deps``
installs it) or no PostgreSQL server answers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.service.model import Outcome
from tests.database import fresh_postgresql_database
from tests.instances import (
    Tally,
    device_client,
    free_port,
    register_until_assigned,
    running_pair,
)
from tests.mqtt.client import RawClient, body, status, tls_context
from tests.server import ServerProcess, running_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("haproxy") is None,
        reason="haproxy is not installed (make system-deps installs it with apt-get as root)",
    ),
]

# Devices connect to HAProxy from this address; HAProxy connects to devprov from 127.0.0.1, the
# only address devprov takes a PROXY header from. So a refusal that names 127.0.0.9 learnt it
# from the header, and the test's own direct requests (metrics) come from a third address.
DEVICE_ADDRESS = "127.0.0.9"
SCRAPER_ADDRESS = "127.0.0.3"
DEVICES_BEFORE_KILL = 12
DEVICES_AFTER_KILL = 24
DEVICES_AFTER_DETECTION = 6
CLIENTS = 3

# docs/operations.md#a-ready-haproxy-configuration, with loopback addresses and free ports; the
# stats socket is the test's, to see when HAProxy has both instances up.
CONFIG = """\
global
    stats socket {stats} level admin

defaults
    mode tcp
    timeout connect 5s
    timeout client  90s
    timeout server  90s
    retries 3
    option redispatch

frontend dps_https
    bind 127.0.0.1:{https}
    default_backend devprov_https

frontend dps_mqtt
    bind 127.0.0.1:{mqtt}
    default_backend devprov_mqtt

backend devprov_https
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host devprov
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
    server a 127.0.0.1:{a_https} send-proxy-v2 check check-ssl verify required ca-file {ca}
    server b 127.0.0.1:{b_https} send-proxy-v2 check check-ssl verify required ca-file {ca}

backend devprov_mqtt
    balance leastconn
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host devprov
    http-check expect status 200
    default-server inter 1s fall 2 rise 2
    server a 127.0.0.1:{a_mqtt} send-proxy-v2 check port {a_https} check-ssl check-send-proxy verify required ca-file {ca}
    server b 127.0.0.1:{b_mqtt} send-proxy-v2 check port {b_https} check-ssl check-send-proxy verify required ca-file {ca}
"""  # noqa: E501 - HAProxy's server lines are long


def _stat(stats: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(stats))
        sock.sendall(command.encode() + b"\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode()


def server_states(stats: Path) -> dict[tuple[str, str], str]:
    """HAProxy's view of each server: (backend, server) -> "UP", "DOWN", ..."""
    lines = _stat(stats, "show stat").splitlines()
    header = lines[0].lstrip("# ").split(",")
    states = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=False))
        if row.get("svname") not in (None, "FRONTEND", "BACKEND"):
            states[(row["pxname"], row["svname"])] = row["status"]
    return states


@contextmanager
def running_haproxy(directory: Path, a: ServerProcess, b: ServerProcess) -> Iterator[dict]:
    ports = {"https": free_port(), "mqtt": free_port()}
    assert a.mqtt_port is not None and b.mqtt_port is not None
    stats = directory / "haproxy.sock"
    config = directory / "haproxy.cfg"
    config.write_text(
        CONFIG.format(
            stats=stats,
            a_https=a.port,
            b_https=b.port,
            a_mqtt=a.mqtt_port,
            b_mqtt=b.mqtt_port,
            ca=a.ca_file,
            **ports,
        )
    )
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log = directory / "haproxy.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if stats.exists():
                with_states = server_states(stats)
                if with_states and all(s == "UP" for s in with_states.values()):
                    break
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        else:
            raise AssertionError(f"HAProxy did not see both instances up: {server_states(stats)}")
        yield {**ports, "stats": stats, "log": log}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def registrations_served(server: ServerProcess) -> float:
    """The instance's devprov_registrations_total, assigned, summed over its labels, scraped
    from the instance itself (not through HAProxy) from an address that sends no header."""
    with device_client(server.url, server.ca_file, source=SCRAPER_ADDRESS) as client:
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {server.token}"})
    assert answer.status_code == 200, answer.text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in answer.text.splitlines()
        if line.startswith("devprov_registrations_total{") and 'outcome="assigned"' in line
    )


def _prepare(data_dir: Path, database: str, pki: Path, names: list[str]) -> str:
    """Trust for the devices, set up through a server without --proxy-from: with it, the CLI's
    connections from 127.0.0.1 would need a PROXY header."""
    with running_server(data_dir, database=database) as a:
        return _trust(a, pki, names)


def _trust(a: ServerProcess, pki: Path, names: list[str]) -> str:
    args = a.cli_args()
    assert main(["hub", "add", "hub-lb.azure-devices.net", *args]) == 0
    assert main(["ca", "demo", str(pki)]) == 0
    for name in names:
        assert main(["ca", "device", name, "--issuer", "intermediate", "--dir", str(pki)]) == 0
    root = ["--cert", str(pki / "root.pem"), "--key", str(pki / "root.key")]
    assert main(["certificate", "prove", "root", *root, *args]) == 0
    assert main(["enrollment-group", "create", "fleet", "--ca-name", "root", *args]) == 0
    c = open_container(a.data_dir, database=a.database)
    try:
        return c.directory.get("default").id_scope
    finally:
        c.engine.dispose()


def test_haproxy_balances_two_instances_and_survives_a_sigkill(tmp_path: Path) -> None:
    total = DEVICES_BEFORE_KILL + DEVICES_AFTER_KILL + DEVICES_AFTER_DETECTION
    names = [f"lb-{n}" for n in range(total)]
    pki = tmp_path / "pki"
    with fresh_postgresql_database() as database:
        scope = _prepare(tmp_path / "a", database, pki, names)
        pair = running_pair(tmp_path, database, "--proxy-from", "127.0.0.1/32", mqtt=True)
        with pair as (a, b), running_haproxy(tmp_path, a, b) as haproxy:
            url = f"https://localhost:{haproxy['https']}"

            def device(name: str) -> httpx.Client:
                cert, key = pki / f"{name}-full-chain.pem", pki / f"{name}.key"
                return device_client(url, a.ca_file, cert=cert, key=key, source=DEVICE_ADDRESS)

            # A device whose certificate no CA vouches for is refused, and the audit row names
            # the address HAProxy saw, which only the PROXY header carried to devprov.
            assert main(["ca", "device", "stranger", "--self-signed", "--dir", str(pki)]) == 0
            with device_client(
                url,
                a.ca_file,
                cert=pki / "stranger.pem",
                key=pki / "stranger.key",
                source=DEVICE_ADDRESS,
            ) as stranger:
                refused = stranger.put(
                    f"/{scope}/registrations/stranger/register?api-version=2019-03-31",
                    json={"registrationId": "stranger"},
                )
            assert refused.status_code == 401, refused.text

            # One device over MQTT through the MQTT frontend, with its certificate.
            mqtt_device = ["ca", "device", "lb-mqtt", "--issuer", "intermediate"]
            assert main([*mqtt_device, "--dir", str(pki)]) == 0
            context = tls_context(a.ca_file, pki / "lb-mqtt-full-chain.pem", pki / "lb-mqtt.key")
            with RawClient(haproxy["mqtt"], context, source=DEVICE_ADDRESS) as client:
                assert client.connect(scope, "lb-mqtt").return_code == 0
                client.subscribe()
                answer = client.register("lb-mqtt")  # decided during the call: the outcome
                assert status(answer) == 200, body(answer)
                assert body(answer)["status"] == "assigned", body(answer)
                polled = client.poll(body(answer)["operationId"])
                assert body(polled) == body(answer)

            # Sequential registrations before the kill: round robin gives each instance some.
            tally = Tally()
            before = names[:DEVICES_BEFORE_KILL]
            for name in before:
                with device(name) as client:
                    result = register_until_assigned(client, scope, name, tally)
                assert result["status"] == "assigned", result
            served = (registrations_served(a), registrations_served(b))
            assert all(n > 0 for n in served), served
            assert sum(served) == DEVICES_BEFORE_KILL + 1  # and the MQTT device

            # Now a load from several clients, and instance b killed in its midst.
            after = names[DEVICES_BEFORE_KILL : DEVICES_BEFORE_KILL + DEVICES_AFTER_KILL]
            results: dict[str, dict[str, object]] = {}
            started = threading.Event()

            def load(mine: list[str]) -> None:
                for name in mine:
                    with device(name) as client:
                        results[name] = register_until_assigned(client, scope, name, tally)
                    started.set()

            threads = [
                threading.Thread(target=load, args=(after[i::CLIENTS],)) for i in range(CLIENTS)
            ]
            for thread in threads:
                thread.start()
            assert started.wait(60)
            b.process.kill()
            b.process.wait()
            killed_at = time.monotonic()
            for thread in threads:
                thread.join(180)
            finished = time.monotonic() - killed_at
            assert tally.other == []
            assert sorted(results) == sorted(after)
            assert all(r["status"] == "assigned" for r in results.values()), results

            # HAProxy's checks (every second, two failures) take b out of rotation; from then
            # on no device sees a failed connection at all.
            while not server_states(haproxy["stats"])[("devprov_https", "b")].startswith("DOWN"):
                assert time.monotonic() - killed_at < 30, server_states(haproxy["stats"])
                time.sleep(0.1)
            detected = time.monotonic() - killed_at
            quiet = Tally()
            for name in names[DEVICES_BEFORE_KILL + DEVICES_AFTER_KILL :]:
                with device(name) as client:
                    result = register_until_assigned(client, scope, name, quiet)
                assert result["status"] == "assigned", result
            assert quiet == Tally()
            print(
                f"SIGKILL of b under load: {len(after)} devices assigned "
                f"{finished:.1f} s after the kill, after {tally.refused_connections} broken or "
                f"refused connections and {tally.unavailable} 503s; HAProxy marked b down "
                f"{detected:.1f} s after the kill"
            )

        c = open_container(a.data_dir, database=database)
        try:
            stored = {n for n in [*names, "lb-mqtt"] if c.registration_states.find("default", n)}
            refusals = [
                e.actor
                for e in c.audit.events(registration_id="stranger")
                if e.outcome is Outcome.FAILED
            ]
        finally:
            c.engine.dispose()
        assert stored == {*names, "lb-mqtt"}
        assert refusals == [f"device:stranger from {DEVICE_ADDRESS}"]
