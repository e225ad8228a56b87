"""Local administration commands against a real data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devprov.bootstrap import DataDir, open_container
from devprov.cli.main import main


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    open_container(directory, initialize=True).engine.dispose()
    return directory


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_service_create_list_show(data: Path, capsys) -> None:
    code, out, _ = run(
        capsys,
        "service",
        "create",
        "fleet-2",
        "--max-certificates",
        "5",
        "--data-dir",
        str(data),
        "--json",
    )
    created = json.loads(out)
    assert code == 0 and created["maxCertificates"] == 5 and created["idScope"].startswith("0ne")
    assert created["policies"][0]["name"] == "provisioningserviceowner"
    code, out, _ = run(capsys, "service", "list", "--data-dir", str(data), "--json")
    assert [s["name"] for s in json.loads(out)] == ["default", "fleet-2"]
    code, _, err = run(capsys, "service", "create", "fleet-2", "--data-dir", str(data))
    assert code == 7 and "already exists" in err
    code, _, err = run(capsys, "service", "show", "nope", "--data-dir", str(data))
    assert code == 6


def test_info_without_the_owner_policy(data: Path, capsys) -> None:
    c = open_container(data)
    c.directory.add_policy("default", "writer", frozenset({"EnrollmentRead", "EnrollmentWrite"}))
    c.directory.remove_policy("default", "provisioningserviceowner")
    c.engine.dispose()
    code, out, _ = run(capsys, "info", "--data-dir", str(data), "--json")
    (service,) = json.loads(out)["services"]
    assert (
        code == 0
        and service["policy"] == "writer"
        and "SharedAccessKeyName=writer" in service["connectionString"]
    )


@pytest.mark.parametrize(
    ("port", "host_name"),
    [
        pytest.param(443, "localhost", id="ok/443-left-out-for-node"),
        pytest.param(8443, "localhost:8443", id="ok/other-port-kept"),
    ],
)
def test_printed_connection_strings_leave_out_port_443(
    data: Path, capsys, port: int, host_name: str
) -> None:
    c = open_container(data)
    c.data.write_endpoint("0.0.0.0", port)  # as 'devprov serve --port PORT' records it
    c.engine.dispose()
    expected = f"HostName={host_name};SharedAccessKeyName="
    code, out, _ = run(capsys, "info", "--data-dir", str(data), "--json")
    (service,) = json.loads(out)["services"]
    assert code == 0 and service["connectionString"].startswith(expected)
    code, out, _ = run(capsys, "info", "--data-dir", str(data))
    assert code == 0 and f"connection string: {expected}" in out
    for argv in (["list"], ["add", "reader", "--rights", "EnrollmentRead"], ["rotate", "reader"]):
        code, out, _ = run(capsys, "policy", *argv, "--data-dir", str(data), "--json")
        data_out = json.loads(out)
        policies = data_out if isinstance(data_out, list) else [data_out]
        assert code == 0 and policies
        for policy in policies:
            assert policy["connectionString"].startswith(expected)
            assert policy["secondaryConnectionString"].startswith(expected)
    code, out, _ = run(capsys, "policy", "list", "--data-dir", str(data))
    assert code == 0 and f"connection string: {expected}" in out
    code, out, _ = run(capsys, "info", "--data-dir", str(data), "--json")
    assert json.loads(out)["url"] == f"https://{host_name}"  # the URL line as well


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        pytest.param("0.0.0.0", 443, "https://localhost", id="ok/any-address-443"),
        pytest.param("127.0.0.1", 8443, "https://localhost:8443", id="ok/loopback-other-port"),
        pytest.param("dps.example", 443, "https://dps.example", id="ok/name-443"),
        pytest.param("fe80::1", 8443, "https://[fe80::1]:8443", id="ok/ipv6-bracketed"),
        pytest.param("fe80::1", 443, "https://[fe80::1]", id="ok/ipv6-443"),
    ],
)
def test_the_recorded_url_names_the_port_unless_it_is_443(
    tmp_path: Path, host: str, port: int, url: str
) -> None:
    assert DataDir(tmp_path).write_endpoint(host, port) == url
    assert json.loads((tmp_path / "endpoint.json").read_text())["url"] == url


def test_commands_need_an_existing_data_dir(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "info", "--data-dir", str(tmp_path / "missing"))
    assert code == 6 and "devprov serve" in err


def test_audit_filters(data: Path, capsys) -> None:
    from devprov.core.error import InvalidInputError

    run(capsys, "service", "create", "fleet-3", "--data-dir", str(data))
    c = open_container(data)
    for service in ("default", "fleet-3"):
        with pytest.raises(InvalidInputError):
            c.registry.upload(
                service, "bad", b"garbage", is_verified=False, if_match=None, actor="t"
            )
    c.engine.dispose()
    code, out, _ = run(capsys, "audit", "--service", "fleet-3", "--data-dir", str(data), "--json")
    (event,) = json.loads(out)
    assert (
        code == 0 and event["service"] == "fleet-3" and event["errorCode"] == "MalformedCertificate"
    )
    code, out, _ = run(capsys, "audit", "--certificate", "BAD", "--data-dir", str(data), "--json")
    assert len(json.loads(out)) == 2


def test_service_update_changes_limits(data: Path, capsys) -> None:
    code, out, _ = run(
        capsys,
        "service",
        "update",
        "default",
        "--max-certificates",
        "3",
        "--code-lifetime",
        "120",
        "--data-dir",
        str(data),
        "--json",
    )
    updated = json.loads(out)
    assert (
        code == 0
        and updated["maxCertificates"] == 3
        and updated["verificationCodeLifetimeSeconds"] == 120
    )
    c = open_container(data)
    try:
        service = c.directory.get("default")
        assert service.max_certificates == 3 and service.code_lifetime.total_seconds() == 120
    finally:
        c.engine.dispose()
    code, _, err = run(
        capsys, "service", "update", "default", "--max-certificates", "0", "--data-dir", str(data)
    )
    assert code == 3 and "at least 1" in err
    code, _, _ = run(capsys, "service", "update", "nope", "--data-dir", str(data))
    assert code == 6


def test_data_dir_from_the_environment(data: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DEVPROV_DATA_DIR", str(data))
    code, out, _ = run(capsys, "info", "--json")
    assert code == 0 and json.loads(out)["dataDir"] == str(data.resolve())
    monkeypatch.setenv("DEVPROV_DATA_DIR", str(data.parent / "elsewhere"))
    code, _, err = run(capsys, "info")
    assert code == 6 and "elsewhere" in err


def record_event(data: Path, **values: str) -> None:
    """An audit event as a device's refused registration leaves it, written through storage."""
    from datetime import UTC, datetime

    from devprov.service.model import AuditEvent, Outcome
    from devprov.storage.repository import SqlUnitOfWork

    c = open_container(data)
    try:
        with SqlUnitOfWork(c.engine) as unit:
            unit.audit.record(
                AuditEvent(
                    at=datetime.now(UTC),
                    service="default",
                    action="register",
                    outcome=Outcome.FAILED,
                    error_code="DeviceUnauthorized",
                    **values,  # type: ignore[arg-type]
                )
            )
            unit.commit()
    finally:
        c.engine.dispose()


FORGED = "evil\n2026-01-01T00:00:00+00:00  default/admin  delete  succeeded  by admin\x1b[2J\x9b"


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        (
            {"actor": "device:dev-1", "registration_id": "dev-1", "reason": "no enrollment"},
            "default/dev-1  register  failed  by device:dev-1  [DeviceUnauthorized] no enrollment",
        ),
        (
            {"actor": f"device:{FORGED}", "registration_id": FORGED, "reason": f"id {FORGED}"},
            "default/evil\\n2026-01-01T00:00:00+00:00  default/admin  delete  succeeded  by "
            "admin\\x1b[2J\\x9b  register  failed  by device:evil\\n",
        ),
    ],
    ids=["ok/plain-values", "escaped/newline-esc-and-c1"],
)
def test_audit_prints_client_values_escaped_one_event_per_line(
    data: Path, capsys, values: dict[str, str], shown: str
) -> None:
    record_event(data, **values)
    code, out, _ = run(
        capsys, "audit", "--registration", values["registration_id"], "--data-dir", str(data)
    )
    assert code == 0
    assert out.count("\n") == 1  # one event, one line
    assert shown in out
    assert "\x1b" not in out and "\x9b" not in out
    code, out, _ = run(
        capsys,
        "audit",
        "--registration",
        values["registration_id"],
        "--data-dir",
        str(data),
        "--json",
    )
    (event,) = json.loads(out)  # JSON keeps the value exactly, escaped by JSON itself
    assert event["registrationId"] == values["registration_id"]
    assert "\x1b" not in out and "\n" not in json.dumps(event)
