"""``devprov device register --issue / --csr``: a registration that asks for an operational
certificate, driven in-process against a real ``devprov serve`` over mutual TLS."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devprov.cli.main import main
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

HUB = "hub-cli-csr.azure-devices.net"
POLICY = "cli-sensors"
VALIDITY_DAYS = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("device-csr") / "data") as server:
        local = server.cli_args()
        assert main(["hub", "add", HUB, *local]) == 0
        assert main(["credential-policy", "create", POLICY, "--validity-days",
                     str(VALIDITY_DAYS), *local]) == 0  # fmt: skip
        yield server


def run(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, Any, str]:
    code = main([*args, *server.cli_args(), "--json"])
    captured = capsys.readouterr()
    out = captured.out.strip()
    try:
        data = json.loads(out) if out else None
    except ValueError:
        data = out
    return code, data, captured.err


def group(server: ServerProcess, capsys: pytest.CaptureFixture[str], name: str, *extra: str) -> str:
    """A symmetric-key group; its primary key."""
    code, body, err = run(
        server, capsys, "enrollment-group", "create", name, "--symmetric-key", *extra
    )
    assert code == 0, err
    return str(body["attestation"]["symmetricKey"]["primaryKey"])


@pytest.fixture(scope="module")
def group_key(server: ServerProcess) -> str:
    """A symmetric-key group naming the policy; its primary key."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        create = ["enrollment-group", "create", "cli-csr-group", "--symmetric-key"]
        assert main([*create, "--credential-policy", POLICY, *server.cli_args(), "--json"]) == 0
    return str(json.loads(out.getvalue())["attestation"]["symmetricKey"]["primaryKey"])


def policy_ca(server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> x509.Certificate:
    capsys.readouterr()
    assert main(["credential-policy", "ca", POLICY, *server.cli_args()]) == 0
    return x509.load_pem_x509_certificates(capsys.readouterr().out.encode())[0]


def issued(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], rid: str
) -> list[dict[str, Any]]:
    code, rows, err = run(server, capsys, "issued", "list", "--registration-id", rid)
    assert code == 0, err
    return list(rows)


def test_issue_writes_the_key_and_the_chain_the_service_issued(
    server: ServerProcess, group_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = tmp_path / "dev-a"
    code, operation, err = run(
        server,
        capsys,
        "device",
        "register",
        "dev-a",
        "--group-key",
        group_key,
        "--issue",
        str(prefix),
    )
    assert code == 0, err
    key_file, leaf_file, full = (
        tmp_path / n for n in ("dev-a.key", "dev-a.pem", "dev-a-full-chain.pem")
    )
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    leaf = x509.load_pem_x509_certificate(leaf_file.read_bytes())
    chain = x509.load_pem_x509_certificates(full.read_bytes())
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert leaf.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-a"
    assert chain[0] == leaf and len(chain) == 2
    ca = policy_ca(server, capsys)
    assert chain[1] == ca
    leaf.verify_directly_issued_by(ca)
    assert leaf.not_valid_after_utc - datetime.now(UTC) == pytest.approx(
        timedelta(days=VALIDITY_DAYS), abs=timedelta(minutes=2)
    )
    wire = operation["registrationState"]["issuedCertificateChain"]
    assert base64.b64decode(wire[0]) == leaf.public_bytes(serialization.Encoding.DER)


def test_a_device_renews_presenting_its_certificate_and_is_refused_once_revoked(
    server: ServerProcess, group_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "dev-b"
    assert (
        run(
            server,
            capsys,
            "device",
            "register",
            "dev-b",
            "--group-key",
            group_key,
            "--issue",
            str(first),
        )[0]
        == 0
    )
    second = tmp_path / "dev-b-2"
    code, _, err = run(
        server, capsys, "device", "register", "dev-b", "--cert", f"{first}-full-chain.pem",
        "--key", f"{first}.key", "--issue", str(second),
    )  # fmt: skip
    assert code == 0, err
    renewed = x509.load_pem_x509_certificate(Path(f"{second}.pem").read_bytes())
    rows = {row["serialNumber"]: row for row in issued(server, capsys, "dev-b")}
    current = format(renewed.serial_number, "X")
    assert len(rows) == 2 and current in rows
    assert rows[current]["superseded"] is None
    assert all(row["superseded"] for serial, row in rows.items() if serial != current)

    assert run(server, capsys, "issued", "revoke", current)[0] == 0
    code, _, err = run(
        server, capsys, "device", "register", "dev-b", "--cert", f"{second}-full-chain.pem",
        "--key", f"{second}.key", "--issue", str(tmp_path / "dev-b-3"),
    )  # fmt: skip
    assert code == 4 and "401680" in err
    assert not (tmp_path / "dev-b-3.key").exists()


def test_issue_refuses_files_that_exist_before_sending_anything(
    server: ServerProcess, group_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dev-c.pem").write_text("mine")
    code, _, err = run(
        server,
        capsys,
        "device",
        "register",
        "dev-c",
        "--group-key",
        group_key,
        "--issue",
        str(tmp_path / "dev-c"),
    )
    assert code != 0 and "already exists" in err
    assert (tmp_path / "dev-c.pem").read_text() == "mine" and not (tmp_path / "dev-c.key").exists()
    assert issued(server, capsys, "dev-c") == []  # nothing was sent
    code, _, err = run(
        server, capsys, "device", "register", "dev-c", "--group-key", group_key,
        "--issue", str(tmp_path / "dev-c"), "--force",
    )  # fmt: skip
    assert code == 0, err
    assert x509.load_pem_x509_certificate((tmp_path / "dev-c.pem").read_bytes())


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_csr_sends_a_request_made_elsewhere(
    server: ServerProcess,
    group_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    encoding: serialization.Encoding,
) -> None:
    rid = "dev-d-pem" if encoding is serialization.Encoding.PEM else "dev-d-der"
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, rid)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA384())
    (tmp_path / "req").write_bytes(csr.public_bytes(encoding))
    out = tmp_path / "chain.pem"
    code, _, err = run(
        server, capsys, "device", "register", rid, "--group-key", group_key,
        "--csr", str(tmp_path / "req"), "--chain-out", str(out),
    )  # fmt: skip
    assert code == 0, err
    leaf = x509.load_pem_x509_certificates(out.read_bytes())[0]
    assert leaf.public_key() == key.public_key()


def test_a_file_without_a_csr_is_refused_and_nothing_sent(
    server: ServerProcess, group_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "req").write_bytes(b"not a request")
    code, _, err = run(
        server, capsys, "device", "register", "dev-e", "--group-key", group_key,
        "--csr", str(tmp_path / "req"), "--chain-out", str(tmp_path / "chain.pem"),
    )  # fmt: skip
    assert code != 0 and "UnusableCsrFile" in err
    assert issued(server, capsys, "dev-e") == [] and not (tmp_path / "chain.pem").exists()


def test_an_enrollment_without_a_policy_issues_nothing_and_says_so(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = group(server, capsys, "cli-no-policy")
    code = main(["device", "register", "dev-f", "--group-key", key, "--issue",
                 str(tmp_path / "dev-f"), *server.cli_args()])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1 and "assigned:" in out and "no credential policy" in out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--issue", "p", "--csr", "README.md", "--chain-out", "c"], "not both"),
        (["--chain-out", "c"], "--chain-out goes with --csr"),
        (["--csr", "README.md"], "--csr needs --chain-out"),
    ],
)
def test_usage_errors(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["device", "register", "dev-g", "--symmetric-key", "a2V5", *args, *server.cli_args()])
    assert exited.value.code == 2 and message in capsys.readouterr().err
