"""Two ``devprov serve`` instances on one database, and devices that register with them the way a
device SDK does: retrying a failed connection or a 503, then polling until assigned.

A second instance needs the first one's data directory, not a new one: the database keeps only
the hash of the admin token, whose file is in the data directory, and a fresh directory on a
database that has a hash would write a new token and replace the hash, locking the first instance
out. The server TLS files (the CA devices trust) live there too. So the second directory is a
copy of the first, as an operator would copy it to a second host.
"""

from __future__ import annotations

import random
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devprov.bootstrap import open_container
from devprov.core.enrollment import EnrollmentKind
from devprov.core.sas import build_sas_token, derive_device_key
from tests.server import ServerProcess, running_server

API = "api-version=2019-03-31"
# Files a server writes for itself; the copy leaves them out.
_OWN_FILES = ("endpoint.json", "init.lock")


def copy_data_dir(first: Path, second: Path) -> Path:
    """``second``: the files of ``first`` (TLS material, admin token) with their modes."""
    shutil.copytree(first, second, ignore=shutil.ignore_patterns(*_OWN_FILES))
    return second


@contextmanager
def running_pair(
    directory: Path, database: str, *extra: str, mqtt: bool = False
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers on ``database``, each with ``extra`` options (and with ``mqtt``, MQTT over TLS
    on a free port of its own), data directories in ``directory``: "a" is made by its server
    unless it exists, "b" is a copy of it."""
    with ExitStack() as stack:
        servers = []
        for name in ("a", "b"):
            if name == "b":
                copy_data_dir(servers[0].data_dir, directory / "b")
            port = ["--mqtt-port", str(free_port())] if mqtt else []
            servers.append(
                stack.enter_context(
                    running_server(directory / name, *port, *extra, database=database)
                )
            )
        yield servers[0], servers[1]


# Ports handed to servers that must be told theirs in advance. They come from below Linux's
# ephemeral range (32768 and up by default): a port the kernel picked for ``bind(0)`` is also one
# it may hand to the next outgoing connection or ``--port 0`` listener before the server binds it.
_PORTS = range(20000, 32768)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing holds now, outside the kernel's ephemeral range."""
    for _ in range(200):
        port = random.choice(_PORTS)  # spreading, not secrecy
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS.start}-{_PORTS.stop - 1} after 200 tries")


@dataclass
class Tally:
    """What the devices went through: answers other than success, by kind."""

    refused_connections: int = 0  # no connection, or it broke before an answer
    unavailable: int = 0  # 503 answers (storage unavailable or busy)
    retry_after: set[str] = field(default_factory=set)  # the Retry-After values of those
    other: list[str] = field(default_factory=list)  # anything else: a failure of the test

    def note(self, response: httpx.Response) -> None:
        if response.status_code == 503:
            self.unavailable += 1
            self.retry_after.add(response.headers.get("retry-after", ""))
        else:
            self.other.append(f"{response.status_code} {response.text[:200]}")


class GroupDevices:
    """Symmetric-key devices of the enrollment group ``group_id`` of the default service."""

    def __init__(self, server: ServerProcess, group_id: str) -> None:
        c = open_container(server.data_dir, database=server.database)
        try:
            self.scope = c.directory.get("default").id_scope
            group = c.enrollments.get("default", EnrollmentKind.GROUP, group_id)
            assert group.attestation.primary_key is not None
            self.group_key = group.attestation.primary_key
        finally:
            c.engine.dispose()

    def headers(self, registration_id: str) -> dict[str, str]:
        key = derive_device_key(self.group_key, registration_id)
        resource = f"{self.scope}/registrations/{registration_id}"
        return {"Authorization": build_sas_token(key, resource, int(time.time()) + 600)}


def device_client(
    url: str,
    ca_file: Path,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    source: str | None = None,
    timeout: float = 30,
) -> httpx.Client:
    """An HTTPS client to ``url`` trusting ``ca_file``, presenting ``cert`` when given, and
    connecting from the local address ``source`` when given."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    transport = httpx.HTTPTransport(verify=context, local_address=source)
    return httpx.Client(base_url=url, transport=transport, timeout=timeout)


def register_until_assigned(
    client: httpx.Client,
    scope: str,
    registration_id: str,
    tally: Tally,
    *,
    headers: dict[str, str] | None = None,
    deadline_seconds: float = 120,
    pause: float = 0.2,
) -> dict[str, object]:
    """Register, then poll until the operation is assigned, retrying what a device SDK retries
    (a connection that fails or breaks, a 503); the final operation status. Every other answer
    is recorded in ``tally.other`` and ends the attempt."""
    deadline = time.monotonic() + deadline_seconds
    operation: str | None = None
    while time.monotonic() < deadline:
        try:
            if operation is None:
                response = client.put(
                    f"/{scope}/registrations/{registration_id}/register?{API}",
                    json={"registrationId": registration_id},
                    headers=headers,
                )
                if response.status_code == 202:
                    operation = str(response.json()["operationId"])
                    continue
                if response.status_code == 200:  # decided during the call: the outcome
                    status = response.json()
                    if status["status"] != "assigned":
                        tally.other.append(f"{registration_id}: {status}")
                    return dict(status)
            else:
                response = client.get(
                    f"/{scope}/registrations/{registration_id}/operations/{operation}?{API}",
                    headers=headers,
                )
                if response.status_code == 200:
                    status = response.json()
                    if status["status"] == "assigned":
                        return dict(status)
                    if status["status"] != "assigning":
                        tally.other.append(f"{registration_id}: {status}")
                        return dict(status)
                    time.sleep(pause)
                    continue
        except httpx.TransportError:
            tally.refused_connections += 1
            time.sleep(pause)
            continue
        tally.note(response)
        if response.status_code != 503:
            return {"status": f"answered {response.status_code}"}
        time.sleep(pause)
    tally.other.append(f"{registration_id}: not assigned within {deadline_seconds} s")
    return {"status": "timed out"}
