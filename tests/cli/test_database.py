"""``devprov db upgrade``, and servers and commands that refuse a schema other than their code's,
on both engines: a database made by the first migration, with data in it, is upgraded to the
newest revision and its data read back through the repositories."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from devprov.bootstrap import NEW_ADMIN_TOKEN_ENV, open_container
from devprov.cli import main as cli_main
from devprov.core.enrollment import Attestation, AttestationType, Enrollment, EnrollmentKind
from devprov.core.error import ErrorKind
from devprov.core.registration import AttestationMethod, RegistrationState, RegistrationStatus
from devprov.service.model import Outcome
from devprov.storage.database import create_database_engine, head_revision, schema_status
from devprov.storage.repository import SqlUnitOfWork
from tests import factory as f
from tests.database import ENGINES, fresh_database
from tests.storage.test_repository import run_alembic

EXIT = cli_main.EXIT_CODES
T0 = "2026-11-27 12:00:00.000000"


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_database_engine(database_url)
    yield engine
    engine.dispose()


def fill_0001(engine: Engine, der: bytes) -> None:
    """What the first migration's schema holds: a service, its policy, a verified certificate
    with its codes, an audit event and a setting, written as that release wrote them."""
    run_alembic(engine, "upgrade", "0001")
    rows = {
        "INSERT INTO services VALUES ('svc', '0ne00000001', :t, 25, 3600)": {},
        "INSERT INTO access_policies VALUES ('svc', 'owner', 'p', 's', 'EnrollmentRead')": {},
        "INSERT INTO certificates (service, name, name_key, der, is_verified,"
        " verification_method, verified_at, created_at, updated_at, etag, code, code_issued_at,"
        " superseded_codes, used_codes) VALUES ('svc', 'Root', 'root', :der, :yes,"
        " 'proofOfPossession', :t, :t, :t, 'e1', NULL, NULL, '[\"OLD\"]', '[\"USED\"]')": {
            "der": der,
            "yes": True,
        },
        "INSERT INTO audit_events (at, service, certificate, action, outcome, actor)"
        " VALUES (:t, 'svc', 'Root', 'certificate.verify', 'succeeded', 'admin')": {},
        "INSERT INTO settings VALUES ('admin_token_sha256', 'abc')": {},
    }
    with engine.begin() as connection:
        for statement, parameters in rows.items():
            connection.execute(text(statement), {"t": T0, **parameters})


def upgrade(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli_main.main(["db", "upgrade", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_0001_database_with_data_is_upgraded_and_reads_back(
    engine: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    der = f.root("Upgraded").der
    fill_0001(engine, der)

    code, out, _ = upgrade(capsys, "--database", database_url)

    assert code == 0
    assert f"upgraded from revision 0001 to {head_revision()}" in out
    assert schema_status(engine) == (head_revision(), head_revision())
    with SqlUnitOfWork(engine) as u:
        service = u.services.get("svc")
        assert service is not None and service.code_lifetime == timedelta(hours=1)
        assert service.created_at.tzinfo is not None
        assert [p.rights for p in u.services.policies("svc")] == [frozenset({"EnrollmentRead"})]
        certificate = u.certificates.get("svc", "ROOT")
        assert certificate is not None and certificate.der == der and certificate.is_verified
        assert certificate.codes.superseded == ("OLD",) and certificate.codes.used == ("USED",)
        (event,) = u.audit.query(certificate="root")
        assert event.outcome is Outcome.SUCCEEDED and event.registration_id is None
        assert u.settings.get("admin_token_sha256") == "abc"
        # The thumbprint 0002 backfilled finds the certificate for caReferences.
        thumbprint = hashlib.sha256(der).hexdigest().upper()
        assert certificate.verified_at is not None
        # What later migrations added works beside the old data.
        group = Enrollment(
            service="svc",
            kind=EnrollmentKind.GROUP,
            id="group",
            attestation=Attestation(type=AttestationType.X509, ca_primary="Root"),
            created_at=f.NOW,
            updated_at=f.NOW,
            etag="g1",
        )
        u.enrollments.add(group)
        u.registrations.add(
            RegistrationState(
                service="svc",
                registration_id="device-1",
                method=AttestationMethod.X509,
                enrollment_kind=EnrollmentKind.GROUP,
                enrollment_id="group",
                status=RegistrationStatus.ASSIGNED,
                created_at=f.NOW,
                updated_at=f.NOW,
                etag="r1",
            )
        )
        u.commit()
    with SqlUnitOfWork(engine) as u:
        assert [g.id for _, g in u.enrollments.groups_by_certificate("svc", [thumbprint])] == [
            "group"
        ]
        state = u.registrations.get("svc", "DEVICE-1")
        assert state is not None and state.status is RegistrationStatus.ASSIGNED

    code, out, _ = upgrade(capsys, "--database", database_url)
    assert code == 0 and f"already at revision {head_revision()}" in out


def test_an_empty_database_gets_its_schema(
    engine: Engine, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = upgrade(capsys, "--database", database_url, "--json")
    assert code == 0 and f'"to": "{head_revision()}"' in out and '"from": null' in out
    assert schema_status(engine) == (head_revision(), head_revision())


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``devprov serve`` that is expected to refuse; a server that starts is stopped by the
    timeout, and the test fails on its exit code."""
    command = [sys.executable, "-m", "devprov.cli.main", "serve", "--port", "0"]
    command += ["--mqtt-port", "0", "--amqp-port", "0", *args]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


def test_serve_refuses_an_older_schema_and_names_the_command(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    fill_0001(engine, f.root().der)
    data = tmp_path / "data"

    done = serve(tmp_path, "--database", database_url, "--data-dir", str(data))

    assert done.returncode == EXIT[ErrorKind.CONFLICT], done.stderr
    assert done.stderr == (
        f"error: DatabaseSchemaMismatch: the database schema is at revision 0001, this devprov "
        f"needs {head_revision()}: run 'devprov db upgrade --database {database_url} "
        f"--data-dir {data}'\n"
    )
    assert schema_status(engine)[0] == "0001"  # nothing was upgraded behind the operator's back


def test_the_twin_serve_starts_once_upgraded(
    engine: Engine,
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fill_0001(engine, f.root().der)
    assert upgrade(capsys, "--database", database_url)[0] == 0
    # The 0001 data holds a token hash ('abc') whose token no data directory has: the escape for
    # a lost token lets this fresh directory make a new one (bootstrap.AdminTokenElsewhereError).
    monkeypatch.setenv(NEW_ADMIN_TOKEN_ENV, "1")
    c = open_container(tmp_path / "data", database=database_url, initialize=True)
    try:
        assert [s.name for s in c.directory.all()] == ["svc"]  # no default service added
    finally:
        c.engine.dispose()


def test_commands_refuse_an_older_schema_too(
    engine: Engine, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = open_container(tmp_path / "data", database=database_url, initialize=True)
    c.engine.dispose()
    run_alembic(engine, "downgrade", "0002")
    code = cli_main.main(["info", "--data-dir", str(tmp_path / "data"), "--database", database_url])
    err = capsys.readouterr().err
    assert code == EXIT[ErrorKind.CONFLICT]
    assert f"at revision 0002, this devprov needs {head_revision()}" in err
    assert f"run 'devprov db upgrade --database {database_url} --data-dir" in err


def test_a_newer_schema_is_refused_by_serve_and_by_upgrade(
    engine: Engine, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = upgrade(capsys, "--database", database_url)
    assert code == 0
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))

    done = serve(tmp_path, "--database", database_url, "--data-dir", str(tmp_path / "data"))
    assert done.returncode == EXIT[ErrorKind.CONFLICT], done.stderr
    assert "at revision 9999_future, newer than this devprov knows" in done.stderr

    code, _, err = upgrade(capsys, "--database", database_url)
    assert code == EXIT[ErrorKind.CONFLICT]
    assert "newer than this devprov knows" in err
    assert schema_status(engine)[0] == "9999_future"


def test_upgrade_of_a_data_directory_that_does_not_exist_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = upgrade(capsys, "--data-dir", str(tmp_path / "none"))
    assert code == EXIT[ErrorKind.NOT_FOUND]
    assert "does not exist" in err
    assert not (tmp_path / "none").exists()


def test_upgrade_of_a_data_directory_names_it_in_the_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite in the data directory: serve's hint names --data-dir alone."""
    data = tmp_path / "data"
    c = open_container(data, initialize=True)
    c.engine.dispose()
    run_alembic(c.engine, "downgrade", "0002")
    done = serve(tmp_path, "--data-dir", str(data))
    assert done.returncode == EXIT[ErrorKind.CONFLICT], done.stderr
    assert f"run 'devprov db upgrade --data-dir {data}'" in done.stderr
    code, out, _ = upgrade(capsys, "--data-dir", str(data))
    assert code == 0 and f"from revision 0002 to {head_revision()}" in out


def test_an_unknown_engine_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = upgrade(capsys, "--database", "mysql://root:hunter2@db/devprov")
    assert code == EXIT[ErrorKind.INVALID_INPUT]
    assert "names the mysql engine" in err and "hunter2" not in err


def test_an_unreachable_server_is_unavailable_and_its_password_stays_hidden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No PostgreSQL listens on port 1: exit 10, one line naming the database without its
    password (the twin of the upgrades above)."""
    url = "postgresql://postgres:hunter2@127.0.0.1:1/devprov"
    code, _, err = upgrade(capsys, "--database", url)
    assert code == EXIT[ErrorKind.UNAVAILABLE]
    assert err.startswith("error: StorageUnavailable: cannot upgrade the database ")
    assert "postgresql://postgres:***@127.0.0.1:1/devprov" in err and "hunter2" not in err
    (tmp_path / "data").mkdir()
    code = cli_main.main(["info", "--data-dir", str(tmp_path / "data"), "--database", url])
    err = capsys.readouterr().err
    assert code == EXIT[ErrorKind.UNAVAILABLE]
    assert "cannot open the database postgresql://postgres:***@" in err and "hunter2" not in err
