"""A real Mosquitto 2 broker with the dynamic-security plugin, and paho clients as its devices.

The broker runs as a child process with a configuration generated in a temporary directory
(docs/hubs-mosquitto.md#broker-configuration, with loopback addresses and free ports):

- ``admin``: TLS, the dynamic-security admin logs in with a password (what devprov uses);
- ``x509``: TLS with ``require_certificate`` and ``use_identity_as_username``, trusting the
  test's device CA (and any CA a test adds, such as a credential policy's): an X.509 device is
  the client named by its certificate's CN;
- ``password``: plain MQTT, where a symmetric-key device logs in with its device ID and key.

Its dynamic-security file is made by ``mosquitto_ctrl dynsec init``, as an operator would.
"""

from __future__ import annotations

import getpass
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization

from devprov.core.issuance import build_server_certificate
from devprov.service.hub_identity import HubConnection, HubKind
from tests import factory
from tests.instances import free_port

PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
MOSQUITTO_CTRL = shutil.which("mosquitto_ctrl")
MISSING = [
    what
    for what, there in [
        ("mosquitto", MOSQUITTO is not None),
        ("mosquitto_ctrl", MOSQUITTO_CTRL is not None),
        (str(PLUGIN), PLUGIN.exists()),
    ]
    if not there
]
SKIP_REASON = f"{', '.join(MISSING)} not installed (make system-deps installs mosquitto as root)"
needs_mosquitto = pytest.mark.skipif(bool(MISSING), reason=SKIP_REASON)

ADMIN = "admin"
RELOADED = "Reloading config."  # what Mosquitto 2.0 logs on SIGHUP (src/loop.c)
# Bounds on waiting for the broker and for a device's answers: failures, never measurements.
WAIT = 15.0

CONFIG = """\
per_listener_settings false
allow_anonymous false
persistence false
user {user}
log_dest file {log}
log_type all
plugin {plugin}
plugin_opt_config_file {dynsec}

listener {admin} 127.0.0.1
certfile {server_cert}
keyfile {server_key}

listener {x509} 127.0.0.1
certfile {server_cert}
keyfile {server_key}
cafile {device_ca}
require_certificate true
use_identity_as_username true

listener {password} 127.0.0.1
"""


@dataclass(frozen=True)
class Broker:
    directory: Path
    admin_port: int
    x509_port: int
    password_port: int
    admin_password: str
    server_ca: Path  # what the admin and the X.509 devices trust the broker's certificate by
    pid: int = 0

    @property
    def device_cas(self) -> Path:
        """The X.509 listener's ``cafile``."""
        return self.directory / "device-ca.pem"

    def hub(self, **settings: str) -> HubConnection:
        """The hub devprov links for this broker, ``settings`` over the defaults."""
        base = {
            "broker": f"127.0.0.1:{self.admin_port}",
            "tls": "true",
            "ca_file": str(self.server_ca),
            "username": ADMIN,
            "password": self.admin_password,
        }
        return HubConnection(HubKind.MOSQUITTO, "broker.test", {**base, **settings})

    @property
    def log(self) -> str:
        return (self.directory / "mosquitto.log").read_text(errors="replace")

    def reload(self) -> None:
        """SIGHUP, what ``systemctl reload mosquitto`` sends; returns once the broker has logged
        that it reloaded (it handles the signal in its main loop, before the next connection)."""
        before = self.log.count(RELOADED)
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while self.log.count(RELOADED) == before:
            if time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not reload: {self.log}")
            time.sleep(0.05)


def _write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@contextmanager
def running_broker(
    directory: Path, device_ca: factory.Ca, *, also_trusted: bytes = b""
) -> Iterator[Broker]:
    """The broker, its X.509 listener trusting ``device_ca`` and the PEM ``also_trusted``."""
    assert MOSQUITTO is not None and MOSQUITTO_CTRL is not None
    server_root = factory.root("Broker Test Root")
    server_key = factory.ec_key()
    server_cert = build_server_certificate(
        server_key.public_key(),
        ["127.0.0.1"],
        server_root.issuer,
        serial=factory.serial(),
        now=factory.NOW,
        days=30,
    )
    server_ca = _write_pem(directory / "server-ca.pem", server_root.pem)
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    password = os.urandom(12).hex()
    dynsec = directory / "dynsec.json"
    subprocess.run(
        [MOSQUITTO_CTRL, "dynsec", "init", str(dynsec), ADMIN, password],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )
    broker = Broker(directory, free_port(), free_port(), free_port(), password, server_ca)
    config = directory / "mosquitto.conf"
    config.write_text(
        CONFIG.format(
            user=getpass.getuser(),
            log=directory / "mosquitto.log",
            plugin=PLUGIN,
            dynsec=dynsec,
            admin=broker.admin_port,
            x509=broker.x509_port,
            password=broker.password_port,
            server_cert=_write_pem(directory / "server.pem", factory.pem(server_cert)),
            server_key=_write_pem(directory / "server.key", key_pem),
            device_ca=_write_pem(broker.device_cas, device_ca.pem + also_trusted),
        )
    )
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    broker = replace(broker, pid=process.pid)
    try:
        _wait_for_ports(process, broker)
        yield broker
    finally:
        process.terminate()
        try:
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _wait_for_ports(process: subprocess.Popen[bytes], broker: Broker) -> None:
    deadline = time.monotonic() + WAIT
    for port in (broker.admin_port, broker.x509_port, broker.password_port):
        while True:
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"mosquitto exited with {process.returncode}: {stderr}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mosquitto does not listen on {port}: {broker.log}")
                time.sleep(0.05)


class Device:
    """A paho client standing in for a device: connect, subscribe, publish, receive."""

    def __init__(self, client_id: str) -> None:
        self.client = mqtt.Client(client_id=client_id, clean_session=True)
        self.connack: queue.Queue[int] = queue.Queue()
        self.subacks: queue.Queue[tuple[int, ...]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, rc: self.connack.put(rc)
        self.client.on_subscribe = lambda _c, _u, _m, granted: self.subacks.put(tuple(granted))
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))

    def connect(self, port: int) -> int:
        """The CONNACK's return code (0: accepted)."""
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        return self.connack.get(timeout=WAIT)

    def subscribe(self, topic: str) -> int:
        """The granted QoS, or 128 when the broker refused the subscription."""
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=WAIT)[0]

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and wait for the PUBACK: by then the broker has delivered it to
        every subscriber it was allowed to reach (or dropped it)."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published(), topic

    def received_until(self, marker: bytes) -> list[bytes]:
        """Every payload received up to and including ``marker``, in order."""
        seen: list[bytes] = []
        while not seen or seen[-1] != marker:
            seen.append(self.messages.get(timeout=WAIT)[1])
        return seen

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def x509_device(ca: factory.Ca, cn: str, directory: Path, server_ca: Path) -> Device:
    """A device that logs in with a certificate for ``cn`` issued by ``ca``."""
    issued = factory.device(ca, cn)
    cert = _write_pem(directory / f"{cn}.pem", issued.pem)
    key = _write_pem(directory / f"{cn}.key", issued.key_pem())
    return certificate_device(cn, cert, key, server_ca)


def certificate_device(client_id: str, cert: Path, key: Path, server_ca: Path) -> Device:
    """A device that logs in with the certificate (and the chain after it) in ``cert``."""
    device = Device(client_id)
    context = ssl.create_default_context(cafile=str(server_ca))
    context.load_cert_chain(str(cert), str(key))
    device.client.tls_set_context(context)
    return device


def password_device(device_id: str, password: str) -> Device:
    device = Device(device_id)
    device.client.username_pw_set(device_id, password)
    return device


def certificate_login(
    port: int, cert: Path, key: Path, server_ca: Path, client_id: str
) -> int | str:
    """One MQTT 3.1.1 CONNECT over TLS presenting ``cert``, on a raw socket: the CONNACK's return
    code when the broker accepts the certificate, else the TLS error that ended the connection.

    A paho client cannot tell the two apart in one place: under TLS 1.3 the broker's verdict on
    a client certificate arrives after the client's handshake is done, on paho's network thread.
    """
    context = ssl.create_default_context(cafile=str(server_ca))
    context.load_cert_chain(str(cert), str(key))
    name = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x1e"  # MQTT 3.1.1, clean session, keep-alive 30 s
    payload = len(name).to_bytes(2, "big") + name
    connect = bytes([0x10, len(variable) + len(payload)]) + variable + payload
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(connect)
                connack = tls.recv(4)
        except (ssl.SSLError, ConnectionError) as exc:
            return str(exc)
    if len(connack) < 4:
        return f"connection closed after {connack!r}"
    assert connack[:2] == b"\x20\x02", connack
    return connack[3]
