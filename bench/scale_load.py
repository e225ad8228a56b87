"""A fast bulk loader for bench/scale.py: N registration records and M individual enrollments,
written straight into the tables the migrations made, in batches (``executemany`` on SQLite,
``COPY`` on PostgreSQL).

The rows are not invented column by column. One registration record of each kind and one
individual enrollment are first written through devprov's own repositories (so every column is
encoded as the repositories encode it: timestamps, JSON documents, lower-case keys); their raw
rows are read back with the driver and cloned, with the ids and keys changed per row. A few rows
are then read back through the repositories (:func:`check`), so a row the repositories could not
read would fail the bench rather than flatter it.

What is filled, in one service (the bench's, beside its enrollment group):

- individual enrollments ``scale-0000000``..., symmetric-key, enabled;
- registration records ``scale-0000000``...: the first M are the registrations of those
  individual enrollments (symmetric key), the rest are X.509 devices of the enrollment group,
  each with its own leaf SHA-256, assigned to the bench's hub.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from devprov.core.enrollment import (
    Attestation,
    AttestationType,
    Enrollment,
    EnrollmentKind,
)
from devprov.core.registration import (
    AttestationMethod,
    CertificateSummary,
    RegistrationState,
    RegistrationStatus,
    Substatus,
)
from devprov.storage.repository import SqlUnitOfWork

PREFIX = "scale"
SQLITE_BATCH = 50_000
POSTGRESQL_BATCH = 100_000
KEY = "c2NhbGUtYmVuY2gtc3ltbWV0cmljLWtleS0wMDAwMDAwMDA="  # base64; these devices never connect


def registration_id(index: int) -> str:
    return f"{PREFIX}-{index:07d}"


@dataclass(frozen=True)
class Loaded:
    registrations: int
    enrollments: int
    seconds: float


# --- templates, written through the repositories ------------------------------------------------


def _summary(subject: str, issuer: str, now: datetime) -> CertificateSummary:
    return CertificateSummary(
        subject_name=f"CN={subject}",
        sha1_thumbprint="AB" * 20,
        sha256_thumbprint="CD" * 32,
        issuer_name=f"CN={issuer}",
        not_before=now,
        not_after=now + timedelta(days=365),
        serial_number="0123456789ABCDEF",
        version=3,
    )


def _write_templates(engine: Engine, service: str, group: str, hub: str) -> None:
    """Registration 0 (individual), registration M-or-later (group) and enrollment 0."""
    now = datetime.now(UTC).replace(microsecond=0)
    first = registration_id(0)
    common: dict[str, Any] = {
        "service": service,
        "status": RegistrationStatus.ASSIGNED,
        "created_at": now,
        "updated_at": now,
        "etag": '"scale-0"',
        "assigned_hub": hub,
        "initial_hub": hub,
        "substatus": Substatus.INITIAL_ASSIGNMENT,
    }
    with SqlUnitOfWork(engine) as unit:
        unit.enrollments.add(
            Enrollment(
                service=service,
                kind=EnrollmentKind.INDIVIDUAL,
                id=first,
                attestation=Attestation(
                    AttestationType.SYMMETRIC_KEY, primary_key=KEY, secondary_key=KEY
                ),
                etag='"scale-0"',
                created_at=now,
                updated_at=now,
            )
        )
        unit.registrations.add(
            RegistrationState(
                registration_id=first,
                method=AttestationMethod.SYMMETRIC_KEY,
                enrollment_kind=EnrollmentKind.INDIVIDUAL,
                enrollment_id=first,
                device_id=first,
                **common,
            )
        )
        unit.registrations.add(
            RegistrationState(
                registration_id=f"{PREFIX}-template",
                method=AttestationMethod.X509,
                enrollment_kind=EnrollmentKind.GROUP,
                enrollment_id=group,
                device_id=f"{PREFIX}-template",
                certificate=_summary(f"{PREFIX}-template", "devprov bench intermediate", now),
                signing_certificate=_summary("devprov bench root", "devprov bench root", now),
                leaf_sha256="EF" * 32,
                **common,
            )
        )
        unit.commit()


def _raw_row(engine: Engine, table: str, key_column: str, key: str) -> tuple[list[str], list[Any]]:
    """A row as the driver returns it (strings for SQLite's timestamps, not datetimes)."""
    with engine.connect() as connection:
        result = connection.exec_driver_sql(
            f"SELECT * FROM {table} WHERE {key_column} = "
            + ("?" if engine.dialect.name == "sqlite" else "%(key)s"),
            (key,) if engine.dialect.name == "sqlite" else {"key": key},
        )
        columns = list(result.keys())
        return columns, list(result.one())


# --- the rows --------------------------------------------------------------------------------


def _registration_rows(
    engine: Engine, registrations: int, enrollments: int
) -> tuple[list[str], Iterator[Sequence[Any]]]:
    columns, individual = _raw_row(engine, "registrations", "registration_key", registration_id(0))
    _, group = _raw_row(engine, "registrations", "registration_key", f"{PREFIX}-template")
    at = {name: i for i, name in enumerate(columns)}

    def rows() -> Iterator[Sequence[Any]]:
        for index in range(1, registrations):
            rid = registration_id(index)
            if index < enrollments:
                row = individual.copy()
                row[at["enrollment_id"]] = rid
                row[at["enrollment_key"]] = rid
            else:
                row = group.copy()
                row[at["leaf_sha256"]] = f"{index:064X}"
            row[at["registration_key"]] = rid
            row[at["registration_id"]] = rid
            row[at["device_id"]] = rid
            row[at["etag"]] = f'"scale-{index}"'
            yield row

    return columns, rows()


def _enrollment_rows(engine: Engine, enrollments: int) -> tuple[list[str], Iterator[Sequence[Any]]]:
    columns, template = _raw_row(engine, "enrollments", "id_key", registration_id(0))
    at = {name: i for i, name in enumerate(columns)}

    def rows() -> Iterator[Sequence[Any]]:
        for index in range(1, enrollments):
            row = template.copy()
            row[at["id_key"]] = row[at["id"]] = registration_id(index)
            row[at["etag"]] = f'"scale-{index}"'
            yield row

    return columns, rows()


def _batches(rows: Iterator[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    batch: list[Sequence[Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- the two writers ---------------------------------------------------------------------------

Progress = Callable[[str], None]


def _sqlite(
    path: str, table: str, columns: list[str], rows: Iterator[Sequence[Any]], say: Progress
) -> None:
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    )
    connection = sqlite3.connect(path, timeout=30)
    try:
        done = 0
        for batch in _batches(rows, SQLITE_BATCH):
            with connection:  # one transaction per batch
                connection.executemany(statement, batch)
            done += len(batch)
            say(f"{table}: {done:,} rows")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the server starts on a short WAL
    finally:
        connection.close()


def _postgresql(
    url: str, table: str, columns: list[str], rows: Iterator[Sequence[Any]], say: Progress
) -> None:
    with psycopg.connect(url) as connection:
        done = 0
        for batch in _batches(rows, POSTGRESQL_BATCH):
            with (
                connection.cursor() as cursor,
                cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in batch:
                    copy.write_row(row)
            connection.commit()
            done += len(batch)
            say(f"{table}: {done:,} rows")
        # What autovacuum would do on its own soon after a load this size; done now so the
        # filled run does not depend on when it happens.
        connection.execute(f"ANALYZE {table}")
        connection.commit()


def load(
    engine: Engine,
    *,
    service: str,
    group: str,
    hub: str,
    registrations: int,
    enrollments: int,
    say: Progress = print,
) -> Loaded:
    """Fill ``service`` with ``registrations`` records and ``enrollments`` individual
    enrollments (both at least 1); the server on this database must be stopped (SQLite) or idle."""
    start = time.perf_counter()
    _write_templates(engine, service, group, hub)
    url = engine.url
    for table, (columns, rows) in (
        ("enrollments", _enrollment_rows(engine, enrollments)),
        ("registrations", _registration_rows(engine, registrations, enrollments)),
    ):
        if engine.dialect.name == "sqlite":
            assert url.database is not None
            _sqlite(url.database, table, columns, rows, say)
        else:
            plain = make_url(url).set(drivername="postgresql")
            _postgresql(plain.render_as_string(hide_password=False), table, columns, rows, say)
    # The X.509 template record stays, one more than asked for.
    return Loaded(registrations + 1, enrollments, time.perf_counter() - start)


def check(engine: Engine, service: str, group: str, registrations: int, enrollments: int) -> str:
    """Read loaded rows back through the repositories; raises unless they load and agree."""
    last = registration_id(registrations - 1)
    with SqlUnitOfWork(engine, read_only=True) as unit:
        first_state = unit.registrations.get(service, registration_id(0))
        last_state = unit.registrations.get(service, last.upper())  # ids ignore case
        enrollment = unit.enrollments.get(
            service, EnrollmentKind.INDIVIDUAL, registration_id(enrollments - 1)
        )
        count = unit.enrollments.count(service, EnrollmentKind.INDIVIDUAL)
        page = unit.registrations.page_for_group(service, group, after=None, limit=3)
    problems = []
    if first_state is None or first_state.enrollment_kind is not EnrollmentKind.INDIVIDUAL:
        problems.append(f"registration {registration_id(0)}: {first_state}")
    if last_state is None or last_state.registration_id != last:
        problems.append(f"registration {last}: {last_state}")
    if enrollment is None or enrollment.attestation.primary_key != KEY:
        problems.append(f"enrollment {registration_id(enrollments - 1)}: {enrollment}")
    if count < enrollments:
        problems.append(f"{count} individual enrollments, not {enrollments}")
    if not page or any(s.status is not RegistrationStatus.ASSIGNED for s in page):
        problems.append(f"group page: {page}")
    if problems:
        raise RuntimeError("the loaded rows do not read back: " + "; ".join(problems))
    return (
        f"read back through the repositories: registrations {registration_id(0)} and {last},"
        f" enrollment {registration_id(enrollments - 1)}, {count:,} individual enrollments,"
        f" a page of group '{group}'"
    )
