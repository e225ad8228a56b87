"""``devprov serve`` and ``devprov info``: run the server, and print how to reach it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import signal
import socket
from dataclasses import dataclass
from ipaddress import ip_network
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from devprov.bootstrap import DEFAULT_HOST, DEFAULT_PORT, Container, open_container, public_host
from devprov.cli import event_loop
from devprov.cli.common import add_data_dir, container, data_dir, upgrade_command
from devprov.cli.config import add_config_option
from devprov.cli.endpoints import bind_endpoints, build_endpoints
from devprov.cli.housekeeping import add_retention_options, keep_house, retention_policy
from devprov.cli.log_format import LOG_FORMATS, configure_logging
from devprov.cli.output import add_json_flag, emit
from devprov.cli.worker import (
    end_with_parent,
    parent_gone,
    start_worker,
    stop_workers,
    wait_for_workers,
)
from devprov.core.error import InvalidInputError
from devprov.core.outbound import Network
from devprov.core.retention import RetentionPolicy
from devprov.core.sas import build_connection_string
from devprov.service.device_pending import REGISTER_WAIT_SECONDS
from devprov.service.model import OWNER_POLICY
from devprov.storage.file import PRIVATE_UMASK
from devprov.transport.policy import ConnectionPolicy, default_max_connections

MAX_PORT = 65535

# DPS's MQTT port: Microsoft's Python device SDK connects to no other
# (docs/sdk-clients.md#python-device-host-port-and-tls).
DEFAULT_MQTT_PORT = 8883

# DPS's AMQP port, AMQP 1.0's port for AMQP over TLS: Microsoft's SDKs name no port in their
# amqps:// address, so they connect to it (docs/amqp.md#ports).
DEFAULT_AMQP_PORT = 5671

# The longest --register-wait: below the 30 s the device SDKs wait for an answer
# (docs/sdk-clients.md#python-device-statuses-polling-and-timeouts).
MAX_REGISTER_WAIT_SECONDS = 20.0

# How long a stopping server waits for each worker to finish its requests in flight.
WORKER_STOP_SECONDS = 15


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="start the server (creates the data directory)")
    add_config_option(serve)
    add_data_dir(serve)
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"HTTPS port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    serve.add_argument(
        "--mqtt-port",
        type=_port,
        default=DEFAULT_MQTT_PORT,
        help=f"MQTT over TLS port (default {DEFAULT_MQTT_PORT}, the port DPS's device SDKs use; "
        "0 turns MQTT over TLS off; MQTT over WebSocket is always on the HTTPS port)",
    )
    serve.add_argument(
        "--amqp-port",
        type=_port,
        default=DEFAULT_AMQP_PORT,
        help=f"AMQP over TLS port (default {DEFAULT_AMQP_PORT}, the port DPS's device SDKs use; "
        "0 turns AMQP over TLS off; AMQP over WebSocket is always on the HTTPS port)",
    )
    serve.add_argument(
        "--san",
        action="append",
        default=[],
        help="extra host name or IP for the server certificate",
    )
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text (default), or json: one JSON object per line with time, level, logger, "
        "message and, during a request, its request_id",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (default 1; one per core uses every core)",
    )
    add_retention_options(serve)
    serve.add_argument(
        "--webhook-allow",
        type=_network,
        action="append",
        default=[],
        metavar="NETWORK",
        help="let custom allocation webhooks reach this address or network (CIDR), which the "
        "destination policy refuses (link-local, cloud metadata); repeatable; default none",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive,
        default=None,
        metavar="N",
        help="open connections per server process; past it new ones are closed at once "
        "(default: the file-descriptor limit, 'ulimit -n', less 256; here "
        f"{default_max_connections()})",
    )
    serve.add_argument(
        "--always-poll",
        action="store_true",
        help="answer every register 'assigning' and let the device poll, as DPS does; by "
        "default a register is answered with its outcome at once (docs/dps-wire.md#one-round-trip)",
    )
    serve.add_argument(
        "--register-wait",
        type=_seconds,
        default=REGISTER_WAIT_SECONDS,
        metavar="SECONDS",
        help="how long a register waits for its custom allocation webhook (and hub) before it "
        f"is answered 'assigning' for the device to poll (default {REGISTER_WAIT_SECONDS:g}; "
        "docs/dps-wire.md#one-round-trip)",
    )
    serve.add_argument(
        "--proxy-from",
        type=_network,
        action="append",
        default=[],
        metavar="NETWORK",
        help="a load balancer's address or network (CIDR) that opens every connection with a "
        "PROXY protocol header (v1 or v2), on the HTTPS, MQTT and AMQP ports; from there the header "
        "is required and its client address is the one logged and audited; repeatable; "
        "default none",
    )
    serve.set_defaults(func=_serve)

    info = subparsers.add_parser("info", help="print URLs, ID scopes, keys and the server CA path")
    add_data_dir(info)
    add_json_flag(info)
    info.set_defaults(func=_info)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_REGISTER_WAIT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text} is not a number of seconds from 0 to {MAX_REGISTER_WAIT_SECONDS:g}"
        )
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{text} is not a port number (0 to {MAX_PORT})")
    return value


def _network(text: str) -> Network:
    try:
        return ip_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text} is not an address or a network in CIDR notation (169.254.10.0/24): {exc}"
        ) from exc


def describe(c: Container, url: str) -> dict[str, Any]:
    """The facts a user or a script needs to reach this installation."""
    services: list[dict[str, Any]] = []
    for service in c.directory.all():
        policies = c.directory.policies(service.name)
        # The owner policy, or, where an operator removed it, the policy with the most rights.
        owner = next((p for p in policies if p.name == OWNER_POLICY), None) or max(
            policies, key=lambda p: len(p.rights), default=None
        )
        if owner is None:
            services.append({"name": service.name, "idScope": service.id_scope, "policy": None})
            continue
        services.append(
            {
                "name": service.name,
                "idScope": service.id_scope,
                "policy": owner.name,
                "primaryKey": owner.primary_key,
                "secondaryKey": owner.secondary_key,
                "connectionString": build_connection_string(url, owner.name, owner.primary_key),
                "managementUrl": (
                    f"{url}/subscriptions/local/resourceGroups/devprov/providers/Microsoft.Devices"
                    f"/provisioningServices/{service.name}"
                ),
                "maxCertificates": service.max_certificates,
                "verificationCodeLifetimeSeconds": int(service.code_lifetime.total_seconds()),
            }
        )
    return {
        "dataDir": str(c.data.root.resolve()),
        "url": url,
        "portalUrl": f"{url}/portal/",
        "serverCaFile": str(c.data.ca_file.resolve()),
        "adminToken": c.data.admin_token(),
        "adminTokenFile": str(c.data.admin_token_file.resolve()),
        "database": c.data.shown_database_url(),
        "services": services,
    }


def render(facts: dict[str, Any]) -> str:
    lines = [
        f"URL:             {facts['url']}",
        f"web portal:      {facts['portalUrl']}   (sign in with the admin token)",
        f"data directory:  {facts['dataDir']}",
        f"server CA:       {facts['serverCaFile']}   (clients must trust this file)",
        f"admin token:     {facts['adminToken']}",
        "                 (management API: 'Authorization: Bearer <admin token>')",
    ]
    for service in facts["services"]:
        lines += [
            "",
            f"provisioning service '{service['name']}'",
            f"  ID scope:          {service['idScope']}",
        ]
        if service["policy"] is None:
            lines.append("  no shared access policy: add one with 'devprov policy add'")
            continue
        lines += [
            f"  management URL:    {service['managementUrl']}",
            f"  policy:            {service['policy']}",
            f"  primary key:       {service['primaryKey']}",
            f"  secondary key:     {service['secondaryKey']}",
            f"  connection string: {service['connectionString']}",
        ]
    return "\n".join(lines)


def render_restart(facts: dict[str, Any], info_command: str) -> str:
    """What a start that created no secrets prints: where things are, not the secrets."""
    return "\n".join(
        [
            f"URL:             {facts['url']}",
            f"web portal:      {facts['portalUrl']}",
            f"data directory:  {facts['dataDir']}",
            f"server CA:       {facts['serverCaFile']}   (clients must trust this file)",
            f"run '{info_command}' to see the admin token, keys and connection strings",
        ]
    )


def _info(args: argparse.Namespace) -> int:
    c = container(args)
    endpoint = data_dir(args).endpoint() or {}
    url = str(endpoint.get("url") or f"https://localhost:{DEFAULT_PORT}")
    facts = describe(c, url)
    emit(args, facts, render(facts))
    return 0


def _serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    if args.workers < 1:
        raise InvalidInputError("--workers must be at least 1")
    retention = retention_policy(args)
    data = data_dir(args)
    root = data.root
    extra_hosts = [*args.san]
    if args.host not in ("0.0.0.0", "::", "127.0.0.1", "localhost"):  # noqa: S104
        extra_hosts.append(args.host)
    allow = tuple(args.webhook_allow)
    info = "devprov info" + (f" --data-dir {shlex.quote(str(root))}" if args.data_dir else "")
    settings = WorkerSettings(
        root=root,
        host=args.host,
        log_level=args.log_level,
        log_format=args.log_format,
        webhook_allow=allow,
        max_connections=args.max_connections,
        mqtt=args.mqtt_port != 0,
        amqp=args.amqp_port != 0,
        database=data.url,
        proxy_from=tuple(args.proxy_from),
        always_poll=args.always_poll,
        register_wait=args.register_wait,
    )
    # Whatever the server or a library it uses creates is the owner's alone (the data
    # directory's files are made 0600 explicitly too; this covers what devprov does not name).
    previous_umask = os.umask(PRIVATE_UMASK)
    try:
        c = open_container(
            root,
            database=data.url,
            initialize=True,
            hosts=extra_hosts,
            webhook_allow=allow,
            upgrade_command=upgrade_command(args),
        )
        c.always_poll = settings.always_poll
        c.register_wait = settings.register_wait
        ports = (args.port, args.mqtt_port, args.amqp_port)
        return event_loop.run(_run(c, settings, ports, args.workers, info, retention))
    finally:
        os.umask(previous_umask)


def _policy(settings: WorkerSettings) -> ConnectionPolicy:
    proxy_from = settings.proxy_from
    if settings.max_connections is None:
        return ConnectionPolicy(proxy_from=proxy_from)
    return ConnectionPolicy(max_connections=settings.max_connections, proxy_from=proxy_from)


@dataclass(frozen=True)
class WorkerSettings:
    """What every server process of one ``devprov serve`` starts with (picklable: workers are
    spawned)."""

    root: Path
    host: str
    log_level: str
    webhook_allow: tuple[Network, ...]
    max_connections: int | None
    mqtt: bool = True
    amqp: bool = True
    database: str | None = None  # --database; None: $DEVPROV_DATABASE_URL or the SQLite file
    proxy_from: tuple[Network, ...] = ()  # --proxy-from
    always_poll: bool = False  # --always-poll
    log_format: str = "text"  # --log-format
    register_wait: float = REGISTER_WAIT_SECONDS  # --register-wait


async def _run(
    c: Container,
    settings: WorkerSettings,
    ports: tuple[int, int, int],
    workers: int,
    info_command: str,
    retention: RetentionPolicy,
) -> int:
    host = settings.host
    server = build_endpoints(c, _policy(settings), mqtt=settings.mqtt, amqp=settings.amqp)
    # With several workers, all accept on the sockets bound here (devprov.http.listener says
    # why not SO_REUSEPORT); one Python process uses at most one core.
    listeners = bind_endpoints(
        host,
        ports[0],
        mqtt=ports[1] if settings.mqtt else None,
        amqp=ports[2] if settings.amqp else None,
    )
    try:
        bound = int(listeners.https[0].getsockname()[1])
        url = c.data.write_endpoint(host, bound)
    except BaseException:
        listeners.close()
        raise
    await server.serve_on(listeners.https, listeners.mqtt, listeners.amqp)
    children = [
        start_worker(_worker, settings, listeners.https, listeners.mqtt, listeners.amqp)
        for _ in range(workers - 1)
    ]
    facts = describe(c, url)
    if c.created_secrets:
        # The one time the secrets are printed: the start that created them.
        print(render(facts), flush=True)
        print(f"\n(printed once; '{info_command}' shows them again)", flush=True)
    else:
        print(render_restart(facts, info_command), flush=True)
    suffix = f", {workers} worker processes" if workers > 1 else ""
    others = listeners.also_listening(host)
    print(
        f"\ndevprov is listening on {url} ({host}:{bound}{suffix}){others}; press Ctrl+C to stop",
        flush=True,
    )
    stopping = asyncio.Event()
    housekeeping = asyncio.create_task(keep_house(c, stopping, retention=retention))
    await _wait_for_signal()
    stop_workers(children)
    await server.close()
    stopping.set()
    await housekeeping
    await asyncio.to_thread(wait_for_workers, children, WORKER_STOP_SECONDS)
    c.storage.shutdown()
    c.engine.dispose()
    print("devprov stopped", flush=True)
    return 0


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def _worker(
    settings: WorkerSettings,
    listeners: list[socket.socket],
    mqtt_listeners: list[socket.socket],
    amqp_listeners: list[socket.socket],
    lifeline: Connection,
    parent: int,
) -> None:
    """A further server process on the same data directory and the same listening sockets; it
    ends with the server process (devprov.cli.worker)."""
    end_with_parent(parent)
    configure_logging(settings.log_level, settings.log_format)
    c = open_container(
        settings.root, database=settings.database, webhook_allow=settings.webhook_allow
    )
    c.always_poll = settings.always_poll
    c.register_wait = settings.register_wait

    async def serve() -> None:
        server = build_endpoints(c, _policy(settings), mqtt=settings.mqtt, amqp=settings.amqp)
        await server.serve_on(listeners, mqtt_listeners, amqp_listeners)
        stopping = asyncio.Event()
        housekeeping = asyncio.create_task(keep_house(c, stopping, retention=None))
        stop = asyncio.ensure_future(_wait_for_signal())
        gone = asyncio.ensure_future(parent_gone(lifeline))
        await asyncio.wait([stop, gone], return_when=asyncio.FIRST_COMPLETED)
        for waiter in (stop, gone):
            waiter.cancel()
        await server.close()
        stopping.set()
        await housekeeping

    try:
        event_loop.run(serve())
    finally:
        c.storage.shutdown()
        c.engine.dispose()


__all__ = ["describe", "public_host", "register", "render"]
