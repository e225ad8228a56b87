"""The only place that builds concrete objects and wires them together.

A data directory holds everything one devprov installation needs:

    DIR/devprov.db         the SQLite database (unless a database URL is given)
    DIR/tls/ca.pem         the local server CA that clients must trust
    DIR/tls/ca.key         its key (0600)
    DIR/tls/server.pem     the server certificate followed by the CA
    DIR/tls/server.key     its key (0600)
    DIR/admin-token        the bearer token of the management API (0600)
    DIR/endpoint.json      where the server last listened, for the CLI's defaults
    DIR/init.lock          held (flock) while a server initialises the directory
    DIR/issuing-keys/S/P.key  the issuing key of credential policy P of service S (0600)

Every file is 0600 and both directories 0700, whatever the umask and whatever the modes were
before: each start makes them so, after a warning naming what others could reach. Every file
devprov writes here is written atomically (``devprov.storage.file``), and a start initialises
under an exclusive lock, so servers started together agree on one CA and one admin token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from devprov.core.error import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    StorageOverloadedError,
    StorageUnavailableError,
)
from devprov.core.outbound import Network
from devprov.core.refusal_limit import RefusalWindows
from devprov.core.sas import build_host_name
from devprov.http.metrics import PrometheusMetrics
from devprov.http.webhook import HttpAllocationWebhook
from devprov.hub import HubClients
from devprov.hub.azure_iothub import AzureIotHubRegistry
from devprov.hub.mosquitto import MosquittoDynamicSecurity
from devprov.service.access import ServiceAccess
from devprov.service.audit import AuditTrail
from devprov.service.credential_policy import CredentialPolicies
from devprov.service.device import (
    AllocationWebhook,
    DeviceRegistration,
    HubCall,
    RegistrationOutcome,
    WebhookCall,
)
from devprov.service.device_pending import REGISTER_WAIT_SECONDS, PendingRegistrations
from devprov.service.enrollment import EnrollmentService
from devprov.service.hub import HubDirectory
from devprov.service.hub_identity import HubIdentities, HubKind
from devprov.service.hub_sync import HubChanges, IdentitySync, run_hub_changes
from devprov.service.operator import OperatorAccounts
from devprov.service.port import IssuingKeyStore, Metrics, UnitOfWork
from devprov.service.portal_session import PortalSessions
from devprov.service.provisioning import ServiceDirectory
from devprov.service.refusal_log import Refusal, RefusalLog
from devprov.service.registration import RegistrationStates
from devprov.service.registry import CertificateRegistry
from devprov.service.retention import Retention
from devprov.storage import server_tls
from devprov.storage.data_dir import (
    NotADataDirectoryError,
    file_system_refusals,
    full_disk_error,
    is_nearly_full,
    make_private_with_warning,
    refuse_foreign_directory,
    remove_leftovers,
)
from devprov.storage.database import (
    check_schema,
    create_database_engine,
    prepare_schema,
    redact_url,
    sqlite_url,
    upgrade,
)
from devprov.storage.executor import StorageExecutor
from devprov.storage.file import (
    create_private_file,
    exclusive_lock,
    find_exposed,
    make_private_directory,
    write_atomically,
)
from devprov.storage.issuing_key import FileIssuingKeyStore
from devprov.storage.password import Argon2idHasher
from devprov.storage.repository import SqlUnitOfWork

refusal_log = logging.getLogger("devprov.refusal")

DATA_DIR_ENV = "DEVPROV_DATA_DIR"
DATABASE_URL_ENV = "DEVPROV_DATABASE_URL"
DEFAULT_DATA_DIR = Path("devprov-data")
DEFAULT_SERVICE = "default"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443

ADMIN_TOKEN_SETTING = "admin_token_sha256"  # noqa: S105 - a settings key, not a secret

# SQLite's own files beside the database: the write-ahead log, its shared-memory index, and the
# rollback journal of a database not yet in WAL mode (https://sqlite.org/tempfiles.html).
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


class AdminTokenElsewhereError(ConflictError):
    """A shared database already has an admin token, made by another data directory; this one
    has no copy of it, and making a new one would lock the other instances' operators out."""

    code = "AdminTokenElsewhere"
    number = 409170


# Set to 1 for one start to replace a shared database's admin token when every copy of it is lost
# (docs/storage.md#instances-sharing-one-database).
NEW_ADMIN_TOKEN_ENV = "DEVPROV_NEW_ADMIN_TOKEN"  # noqa: S105 - a variable name, not a secret


class DataDirMissingError(NotFoundError):
    """The data directory (or its admin token) does not exist yet; run `devprov serve` once."""

    code = "DataDirectoryNotFound"
    number = 404150


def utc_now() -> datetime:
    return datetime.now(UTC)


def resolve_data_dir(value: str | Path | None) -> Path:
    if value is not None:
        return Path(value)
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


@dataclass(frozen=True)
class DataDir:
    root: Path
    # The database URL given on the command line or in the config file (--database); without
    # one, $DEVPROV_DATABASE_URL, and without that the SQLite file below.
    url: str | None = None

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
    def tls_files(self) -> server_tls.TlsFiles:
        return server_tls.TlsFiles(
            self.ca_file, self.ca_key_file, self.server_cert_file, self.server_key_file
        )

    @property
    def admin_token_file(self) -> Path:
        return self.root / "admin-token"

    @property
    def endpoint_file(self) -> Path:
        return self.root / "endpoint.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "init.lock"

    def private_files(self) -> list[Path]:
        """Every file devprov keeps here (those that exist or may)."""
        database = [self.root / f"{self.database.name}{s}" for s in SQLITE_SUFFIXES]
        tls = [self.ca_file, self.ca_key_file, self.server_cert_file, self.server_key_file]
        return [*database, self.admin_token_file, self.endpoint_file, self.lock_file, *tls]

    def is_initialised(self) -> bool:
        """True when the directory holds any of devprov's own files."""
        return self.tls.exists() or any(p.exists() for p in self.private_files())

    def check(self) -> None:
        """Raise :class:`NotADataDirectoryError` when the root exists and is not a directory."""
        if self.root.exists() and not self.root.is_dir():
            raise NotADataDirectoryError(
                f"{self.root} is a file, not a data directory; point --data-dir (or "
                f"${DATA_DIR_ENV}) at a directory, or at a path where 'devprov serve' may "
                "create one"
            )

    @property
    def has_database_file(self) -> bool:
        """True when the database is the SQLite file in this directory, not a URL given."""
        return not (self.url or os.environ.get(DATABASE_URL_ENV))

    def database_url(self) -> str:
        return self.url or os.environ.get(DATABASE_URL_ENV) or sqlite_url(self.database.resolve())

    def shown_database_url(self) -> str:
        """The database URL without its password, for output and logs."""
        return redact_url(self.database_url())

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
        document = json.dumps({"host": host, "port": port, "url": url})
        with file_system_refusals(self.root):
            write_atomically(self.endpoint_file, document.encode("utf-8"))
        return url


def public_host(host: str) -> str:
    """The name clients should use: the server certificate names localhost, not 0.0.0.0."""
    return "localhost" if host in ("", "0.0.0.0", "::", "127.0.0.1", "::1") else host  # noqa: S104


def ensure_tls_material(data: DataDir, hosts: list[str], now: datetime) -> bool:
    """Create the local server CA and a server certificate; renew the latter near expiry."""
    return server_tls.ensure_tls_material(data.tls_files, hosts, now)


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
    # Where adapters on the event loop run every call above that touches the database.
    storage: StorageExecutor
    metrics: Metrics  # what the use cases count; exported at /metrics (devprov.http.metrics)
    operators: OperatorAccounts  # portal users (devprov user)
    portal_sessions: PortalSessions
    # Creates, disables and removes device identities in linked hubs, by the hub's kind.
    hub_identities: HubIdentities
    hub_sync: IdentitySync  # what a disabled or deleted enrollment or registration asks of hubs
    # Credential policies, their issuing CAs and what they issued (devprov credential-policy).
    credential_policies: CredentialPolicies
    # The policies' issuing keys: files under DIR/issuing-keys (storage.issuing_key).
    issuing_keys: IssuingKeyStore
    # True when this opening created the admin token or the default service's keys: the one
    # time `devprov serve` prints them (later starts point to `devprov info`).
    created_secrets: bool = False
    # devprov serve --always-poll: a register is answered "assigning" even when decided, as DPS
    # does, instead of with its outcome (service.device_answer.register_answer).
    always_poll: bool = False
    # How long a register waits for its webhook or hub before it is answered 202 assigning
    # (devprov serve --register-wait; service.device_pending).
    register_wait: float = REGISTER_WAIT_SECONDS
    # The registrations this process settles in the background; a stopping server waits for
    # them (devprov.cli.endpoints.Endpoints.close).
    pending: PendingRegistrations = field(default_factory=PendingRegistrations)

    def is_admin_token(self, token: str) -> bool:
        return hmac.compare_digest(hash_token(token), self.admin_token_sha256)

    async def refuse(self, refusal: Refusal) -> None:
        """Record a refusal an adapter on the event loop answered itself: the log line at once,
        the audit rows it calls for (if any) on a storage thread."""
        recorded = self.refusals.record(refusal)
        if recorded.events:
            try:
                await self.storage.run(self.refusals.write, recorded.events)
            except StorageOverloadedError as exc:
                refusal_log.warning("the audit trail could not record a refusal: %s", exc.message)

    async def decide(
        self,
        result: RegistrationOutcome | WebhookCall | HubCall,
        *,
        worker: Callable[..., Awaitable[object]],
    ) -> RegistrationOutcome:
        """A register's outcome once its webhook and hub calls are made (on ``worker``
        threads), or within ``register_wait`` its operation, assigning, which a background task
        settles (service.device_pending)."""
        return await self.pending.decide(
            result,
            devices=self.devices,
            webhook=self.webhook,
            hubs=self.hub_identities,
            storage=self.storage.run,
            worker=worker,
            wait=self.register_wait,
        )

    async def change_hubs(self, plan: HubChanges, *, actor: str) -> None:
        """Make the hub calls a committed change calls for (service.hub_sync): on a worker
        thread, never the event loop or a storage thread; each outcome audited."""
        await run_hub_changes(
            plan,
            sync=self.hub_sync,
            hubs=self.hub_identities,
            storage=self.storage.run,
            worker=asyncio.to_thread,
            actor=actor,
        )


def open_container(
    data_dir: Path,
    *,
    database: str | None = None,
    initialize: bool = False,
    hosts: list[str] | None = None,
    webhook_allow: Sequence[Network] = (),
    upgrade_command: str = "devprov db upgrade",
) -> Container:
    """Open (and with ``initialize``, create) the data directory and wire the use cases.

    ``database``: the database URL (None: $DEVPROV_DATABASE_URL, else the data directory's SQLite
    file). Initialising creates the schema of an empty database; any opening refuses a schema
    other than the code's, naming ``upgrade_command`` (storage.database.check_schema).

    ``webhook_allow``: networks the allocation webhook may reach although the destination policy
    refuses them (core.outbound). Initialising holds the directory's lock from the first file it
    may create to the default service, so servers started together on a fresh directory create
    one CA, one server certificate and one admin token, and each finds the others' work complete.
    """
    data = DataDir(data_dir, database)
    data.check()
    if not initialize:
        _check_initialised(data)
        engine = _open_database(data, create=False, upgrade_command=upgrade_command)
        try:
            token_hash = _stored_token_hash(data, engine)
        except BaseException:
            engine.dispose()
            raise
        return _wire(data, engine, token_hash, webhook_allow, created_secrets=False)
    with file_system_refusals(data.root):
        exposed = find_exposed([data.root])  # before anything here changes its mode
        own = {p.name for p in data.private_files() if p.parent == data.root} | {data.tls.name}
        refuse_foreign_directory(data.root, own, data.is_initialised)
        make_private_directory(data.root)
        with exclusive_lock(data.lock_file):
            make_private_with_warning(
                data.root, [data.root, data.tls], data.private_files(), exposed
            )
            remove_leftovers([*astuple(data.tls_files), data.admin_token_file])
            ensure_tls_material(data, server_hosts(hosts), utc_now())
            if data.has_database_file:
                # SQLite would create it with the umask's mode; its -wal and -shm files take
                # the database's mode (sqlite/sqlite:src/os_unix.c, findCreateFileMode).
                create_private_file(data.database)
            engine = _open_database(data, create=True, upgrade_command=upgrade_command)
            try:
                token_hash, created_secrets = _initialise_secrets(data, engine)
            except StorageUnavailableError as exc:
                engine.dispose()
                if is_nearly_full(data.root):
                    raise full_disk_error(data.root, exc.message) from exc
                raise
            except BaseException:
                engine.dispose()
                raise
    return _wire(data, engine, token_hash, webhook_allow, created_secrets=created_secrets)


def _check_initialised(data: DataDir) -> None:
    if not data.root.exists():
        raise DataDirMissingError(
            f"data directory {data.root} does not exist; start the server once with "
            f"'devprov serve --data-dir {data.root}' to create it"
        )
    if data.has_database_file and not data.database.exists():
        raise DataDirMissingError(
            f"{data.root} is not a devprov data directory (it has no {data.database.name}); "
            f"start the server once with 'devprov serve --data-dir {data.root}' to create one"
        )


def upgrade_database(data: DataDir) -> tuple[str | None, str]:
    """``devprov db upgrade``: apply the migrations the database lacks; (from, to) revisions.
    A data directory's SQLite file must exist (a server creates it, with its directory)."""
    if data.has_database_file:
        _check_initialised(data)
    engine = _open_database(data, create=None, upgrade_command="")
    try:
        return upgrade(engine)
    except DBAPIError as exc:
        raise StorageUnavailableError(
            f"cannot upgrade the database {data.shown_database_url()}: {exc.orig}"
        ) from exc
    finally:
        engine.dispose()


def _open_database(data: DataDir, *, create: bool | None, upgrade_command: str) -> Engine:
    """The engine of the data directory's database; with ``create``, an empty database gets its
    schema; with False, a schema other than the code's is refused; with None, nothing is read."""
    engine = create_database_engine(data.database_url())
    try:
        if create:
            prepare_schema(engine, upgrade_command)
        elif create is not None:
            check_schema(engine, upgrade_command)
    except DBAPIError as exc:
        engine.dispose()
        if not data.has_database_file:
            raise StorageUnavailableError(
                f"cannot open the database {data.shown_database_url()}: {exc.orig}"
            ) from exc
        full = getattr(exc.orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        if full or is_nearly_full(data.root):
            raise full_disk_error(data.root, str(exc.orig)) from exc
        raise StorageUnavailableError(
            f"cannot open the database of {data.root}: {exc.orig}; is it a devprov data directory?"
        ) from exc
    except BaseException:
        engine.dispose()
        raise
    return engine


def _stored_token_hash(data: DataDir, engine: Engine) -> str:
    with SqlUnitOfWork(engine, read_only=True) as unit:
        token_hash = unit.settings.get(ADMIN_TOKEN_SETTING)
    if token_hash is None:
        raise DataDirMissingError(
            f"{data.root} has no admin token; run 'devprov serve --data-dir {data.root}' once"
        )
    return token_hash


def _initialise_secrets(data: DataDir, engine: Engine) -> tuple[str, bool]:
    """The admin token's hash, created with its file when either is missing, and the default
    service when there is none; True when this created secrets."""
    created_secrets = False
    with SqlUnitOfWork(engine) as unit:
        token_hash = unit.settings.get(ADMIN_TOKEN_SETTING)
        if (
            token_hash is not None
            and data.admin_token() is None
            and not data.has_database_file
            and os.environ.get(NEW_ADMIN_TOKEN_ENV) != "1"
        ):
            raise AdminTokenElsewhereError(
                f"the database {data.shown_database_url()} already has an admin token, made by "
                f"another instance's data directory, and {data.root} has no copy of it: copy "
                f"'admin-token' and 'tls/' from that data directory into {data.root} "
                "(docs/storage.md#instances-sharing-one-database); if every copy is lost, start "
                f"once with {NEW_ADMIN_TOKEN_ENV}=1 to replace it for every instance"
            )
        if token_hash is None or data.admin_token() is None:
            token = secrets.token_urlsafe(32)
            # The file first: a failure between the two leaves a hash without its token, which
            # the next start replaces, never a token the server would refuse.
            write_atomically(data.admin_token_file, (token + "\n").encode("ascii"))
            token_hash = hash_token(token)
            unit.settings.put(ADMIN_TOKEN_SETTING, token_hash)
            # A replaced token (lost, or leaked) ends the portal sessions it opened.
            unit.portal_sessions.remove_operator("admin")
            unit.commit()
            created_secrets = True

    def uow(*, read_only: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(engine, read_only=read_only)

    directory = ServiceDirectory(uow, utc_now, secrets.token_bytes)
    if not directory.all():
        # A data directory on a shared database (DEVPROV_DATABASE_URL) may see another
        # installation create it first; the lock covers one directory only.
        with contextlib.suppress(AlreadyExistsError):
            directory.create(DEFAULT_SERVICE)
            created_secrets = True
    return token_hash, created_secrets


def _wire(
    data: DataDir,
    engine: Engine,
    token_hash: str,
    webhook_allow: Sequence[Network],
    *,
    created_secrets: bool,
) -> Container:
    def uow(*, read_only: bool = False) -> UnitOfWork:
        return SqlUnitOfWork(engine, read_only=read_only)

    refusals = RefusalLog(uow, utc_now, RefusalWindows())
    metrics = PrometheusMetrics()
    issuing_keys = FileIssuingKeyStore(data.root)
    operators = OperatorAccounts(uow, utc_now, Argon2idHasher())
    return Container(
        data=data,
        engine=engine,
        registry=CertificateRegistry(uow, utc_now, secrets.token_bytes, metrics),
        directory=ServiceDirectory(uow, utc_now, secrets.token_bytes),
        audit=AuditTrail(uow),
        admin_token_sha256=token_hash,
        enrollments=EnrollmentService(uow, utc_now, secrets.token_bytes),
        registration_states=RegistrationStates(uow, utc_now),
        devices=DeviceRegistration(
            uow,
            utc_now,
            secrets.token_bytes,
            refusals,
            metrics,
            issuing_keys=issuing_keys,
        ),
        webhook=HttpAllocationWebhook(allowed=webhook_allow),
        hubs=HubDirectory(uow, utc_now),
        access=ServiceAccess(uow, utc_now),
        server_names=frozenset(_server_names(data)),
        refusals=refusals,
        retention=Retention(uow, utc_now),
        storage=StorageExecutor(),
        metrics=metrics,
        operators=operators,
        portal_sessions=PortalSessions(uow, utc_now, operators),
        hub_identities=HubClients(
            {
                HubKind.AZURE_IOTHUB: AzureIotHubRegistry(),
                HubKind.MOSQUITTO: MosquittoDynamicSecurity(),
            }
        ),
        hub_sync=IdentitySync(uow, utc_now),
        credential_policies=CredentialPolicies(uow, issuing_keys, utc_now, secrets.token_bytes),
        issuing_keys=issuing_keys,
        created_secrets=created_secrets,
    )


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
