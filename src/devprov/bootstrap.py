"""The only place that builds concrete objects and wires them together.

A data directory holds everything one devprov installation needs:

    DIR/devprov.db         the SQLite database (unless a database URL is given)
    DIR/tls/ca.pem         the local server CA that clients must trust
    DIR/tls/ca.key         its key (0600)
    DIR/tls/server.pem     the server certificate followed by the CA
    DIR/tls/server.key     its key (0600)
    DIR/admin-token        the bearer token of the management API (0600)
    DIR/endpoint.json      where the server last listened, for the CLI's defaults
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from devprov.core.error import (
    AlreadyExistsError,
    InvalidInputError,
    NotFoundError,
    NotPermittedError,
    StorageUnavailableError,
)
from devprov.core.issuance import Issuer, build_root_certificate, build_server_certificate
from devprov.core.outbound import Network
from devprov.core.refusal_limit import RefusalWindows
from devprov.core.sas import build_host_name
from devprov.http.webhook import HttpAllocationWebhook
from devprov.service.access import ServiceAccess
from devprov.service.audit import AuditTrail
from devprov.service.device import AllocationWebhook, DeviceRegistration
from devprov.service.enrollment import EnrollmentService
from devprov.service.hub import HubDirectory
from devprov.service.port import UnitOfWork
from devprov.service.provisioning import ServiceDirectory
from devprov.service.refusal_log import RefusalLog
from devprov.service.registration import RegistrationStates
from devprov.service.registry import CertificateRegistry
from devprov.service.retention import Retention
from devprov.storage.database import create_database_engine, migrate, sqlite_url
from devprov.storage.repository import SqlUnitOfWork

DATA_DIR_ENV = "DEVPROV_DATA_DIR"
DATABASE_URL_ENV = "DEVPROV_DATABASE_URL"
DEFAULT_DATA_DIR = Path("devprov-data")
DEFAULT_SERVICE = "default"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443

# The server certificate is renewed at start-up when less than this is left of it.
SERVER_CERT_DAYS = 397  # the CA/B Forum's ceiling for TLS server certificates
SERVER_CERT_RENEW_BEFORE = timedelta(days=30)
SERVER_CA_DAYS = 3650
ADMIN_TOKEN_SETTING = "admin_token_sha256"  # noqa: S105 - a settings key, not a secret


class DataDirMissingError(NotFoundError):
    """The data directory (or its admin token) does not exist yet; run `devprov serve` once."""

    code = "DataDirectoryNotFound"
    number = 404150


class NotADataDirectoryError(InvalidInputError):
    """--data-dir names a file, or a directory that cannot be one (a parent is a file)."""

    code = "NotADataDirectory"
    number = 400250


class DataDirectoryAccessError(NotPermittedError):
    """The data directory cannot be created or written (permissions, a read-only file system)."""

    code = "DataDirectoryNotWritable"
    number = 403250


def utc_now() -> datetime:
    return datetime.now(UTC)


def resolve_data_dir(value: str | Path | None) -> Path:
    if value is not None:
        return Path(value)
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class DataDir:
    root: Path

    @property
    def database(self) -> Path:
        return self.root / "devprov.db"

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def ca_file(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.tls / "ca.key"

    @property
    def server_cert_file(self) -> Path:
        return self.tls / "server.pem"

    @property
    def server_key_file(self) -> Path:
        return self.tls / "server.key"

    @property
    def admin_token_file(self) -> Path:
        return self.root / "admin-token"

    @property
    def endpoint_file(self) -> Path:
        return self.root / "endpoint.json"

    def check(self) -> None:
        """Raise :class:`NotADataDirectoryError` when the root exists and is not a directory."""
        if self.root.exists() and not self.root.is_dir():
            raise NotADataDirectoryError(
                f"{self.root} is a file, not a data directory; point --data-dir (or "
                f"${DATA_DIR_ENV}) at a directory, or at a path where 'devprov serve' may "
                "create one"
            )

    def database_url(self) -> str:
        return os.environ.get(DATABASE_URL_ENV) or sqlite_url(self.database.resolve())

    def admin_token(self) -> str | None:
        try:
            return self.admin_token_file.read_text().strip()
        except FileNotFoundError:
            return None

    def endpoint(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.endpoint_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_endpoint(self, host: str, port: int) -> str:
        # https://localhost on 443, as connection strings print it (build_host_name).
        name = public_host(host)
        name = f"[{name}]" if ":" in name else name  # an IPv6 address, RFC 3986 3.2.2
        url = f"https://{build_host_name(f'{name}:{port}')}"
        _write_private(self.endpoint_file, json.dumps({"host": host, "port": port, "url": url}))
        return url


def public_host(host: str) -> str:
    """The name clients should use: the server certificate names localhost, not 0.0.0.0."""
    return "localhost" if host in ("", "0.0.0.0", "::", "127.0.0.1", "::1") else host  # noqa: S104


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _cert_pem(*certificates: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates)


def ensure_tls_material(data: DataDir, hosts: list[str], now: datetime) -> bool:
    """Create the local server CA and a server certificate; renew the latter near expiry."""
    data.tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data.ca_file.exists() and data.ca_key_file.exists():
        ca_cert = x509.load_pem_x509_certificate(data.ca_file.read_bytes())
        loaded = serialization.load_pem_private_key(data.ca_key_file.read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{data.ca_key_file} is not an EC key")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = build_root_certificate(
            ca_key,
            f"devprov local server CA ({socket.gethostname()})",
            serial=secrets.randbits(127) + 1,
            now=now,
            days=SERVER_CA_DAYS,
            path_length=0,
        )
        _write_private(data.ca_key_file, _key_pem(ca_key))
        data.ca_file.write_text(_cert_pem(ca_cert))
    if data.server_cert_file.exists() and data.server_key_file.exists():
        current = x509.load_pem_x509_certificates(data.server_cert_file.read_bytes())[0]
        if current.not_valid_after_utc - now > SERVER_CERT_RENEW_BEFORE:
            return False
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = build_server_certificate(
        server_key.public_key(),
        hosts,
        Issuer(ca_cert, ca_key),
        serial=secrets.randbits(127) + 1,
        now=now,
        days=SERVER_CERT_DAYS,
    )
    _write_private(data.server_key_file, _key_pem(server_key))
    data.server_cert_file.write_text(_cert_pem(server_cert, ca_cert))
    return True


def server_hosts(extra: list[str] | None = None) -> list[str]:
    hosts = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    return list(dict.fromkeys([*hosts, *(extra or [])]))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class Container:
    """Everything an adapter needs, built once per process."""

    data: DataDir
    engine: Engine
    registry: CertificateRegistry
    directory: ServiceDirectory
    audit: AuditTrail
    admin_token_sha256: str
    enrollments: EnrollmentService
    registration_states: RegistrationStates
    devices: DeviceRegistration
    webhook: AllocationWebhook
    hubs: HubDirectory
    access: ServiceAccess
    server_names: frozenset[str]
    refusals: RefusalLog
    retention: Retention
    # True when this opening created the admin token or the default service's keys: the one
    # time `devprov serve` prints them (later starts point to `devprov info`).
    created_secrets: bool = False

    def is_admin_token(self, token: str) -> bool:
        return hmac.compare_digest(hash_token(token), self.admin_token_sha256)


def open_container(
    data_dir: Path,
    *,
    initialize: bool = False,
    hosts: list[str] | None = None,
    webhook_allow: Sequence[Network] = (),
) -> Container:
    """Open (and with ``initialize``, create) the data directory and wire the use cases.
    ``webhook_allow``: networks the allocation webhook may reach although the destination policy
    refuses them (core.outbound)."""
    data = DataDir(data_dir)
    data.check()
    if initialize:
        _create(data, hosts)
    elif not data.root.exists():
        raise DataDirMissingError(
            f"data directory {data.root} does not exist; start the server once with "
            f"'devprov serve --data-dir {data.root}' to create it"
        )
    elif not os.environ.get(DATABASE_URL_ENV) and not data.database.exists():
        raise DataDirMissingError(
            f"{data.root} is not a devprov data directory (it has no {data.database.name}); "
            f"start the server once with 'devprov serve --data-dir {data.root}' to create one"
        )
    engine = create_database_engine(data.database_url())
    try:
        migrate(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise StorageUnavailableError(
            f"cannot open the database of {data.root}: {exc.orig}; is it a devprov data directory?"
        ) from exc

    def uow(*, read_only: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(engine, read_only=read_only)

    registry = CertificateRegistry(uow, utc_now, secrets.token_bytes)
    directory = ServiceDirectory(uow, utc_now, secrets.token_bytes)
    refusals = RefusalLog(uow, utc_now, RefusalWindows())
    created_secrets = False
    with uow() as unit:
        token_hash = unit.settings.get(ADMIN_TOKEN_SETTING)
        if token_hash is None or (initialize and data.admin_token() is None):
            if not initialize:
                raise DataDirMissingError(
                    f"{data.root} has no admin token; run 'devprov serve --data-dir {data.root}' "
                    "once"
                )
            token = secrets.token_urlsafe(32)
            _write_private(data.admin_token_file, token + "\n")
            token_hash = hash_token(token)
            unit.settings.put(ADMIN_TOKEN_SETTING, token_hash)
            unit.commit()
            created_secrets = True
    if initialize and not directory.all():
        # Another process initialising the same directory may have created it first.
        with contextlib.suppress(AlreadyExistsError):
            directory.create(DEFAULT_SERVICE)
            created_secrets = True
    return Container(
        data=data,
        engine=engine,
        registry=registry,
        directory=directory,
        audit=AuditTrail(uow),
        admin_token_sha256=token_hash,
        enrollments=EnrollmentService(uow, utc_now, secrets.token_bytes),
        registration_states=RegistrationStates(uow, utc_now),
        devices=DeviceRegistration(uow, utc_now, secrets.token_bytes, refusals),
        webhook=HttpAllocationWebhook(allowed=webhook_allow),
        hubs=HubDirectory(uow, utc_now),
        access=ServiceAccess(uow, utc_now),
        server_names=frozenset(_server_names(data)),
        refusals=refusals,
        retention=Retention(uow, utc_now),
        created_secrets=created_secrets,
    )


def _create(data: DataDir, hosts: list[str] | None) -> None:
    """Create the data directory and its TLS material; file system refusals become errors that
    say which path and what to do."""
    try:
        data.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        ensure_tls_material(data, server_hosts(hosts), utc_now())
    except (NotADirectoryError, FileExistsError) as exc:
        blocking = next(
            (p for p in (data.root, *data.root.parents) if p.exists() and not p.is_dir()),
            Path(str(exc.filename)),
        )
        raise NotADataDirectoryError(
            f"cannot create the data directory {data.root}: {blocking} is a file, not a "
            "directory; choose another --data-dir"
        ) from exc
    except OSError as exc:
        raise DataDirectoryAccessError(
            f"cannot create or write the data directory {data.root} ({exc.filename}: "
            f"{exc.strerror}); choose a --data-dir you may write to"
        ) from exc


def _server_names(data: DataDir) -> list[str]:
    """The DNS names and IP addresses in the server certificate's SAN."""
    try:
        certificate = x509.load_pem_x509_certificates(data.server_cert_file.read_bytes())[0]
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (FileNotFoundError, ValueError, x509.ExtensionNotFound):
        return ["localhost", "127.0.0.1"]
    names: list[str] = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names
