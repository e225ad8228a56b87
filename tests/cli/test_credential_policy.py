"""``devprov credential-policy`` and ``devprov issued`` in-process against a real data directory,
and ``--credential-policy`` of the enrollment commands and the public CRL address against a real
``devprov serve`` process over TLS. Every accepted call has a refused twin with its exit code."""

from __future__ import annotations

import hashlib
import json
import ssl
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devprov.bootstrap import open_container
from devprov.cli import credential_policy as cli
from devprov.cli.main import main
from devprov.core.credential_policy import IssuedCertificate
from devprov.core.enrollment import EnrollmentKind
from devprov.storage.issuing_key import FileIssuingKeyStore
from devprov.storage.repository import SqlUnitOfWork
from tests import factory as f
from tests.server import ServerProcess, running_server

USAGE, INVALID, NOT_FOUND, CONFLICT = 2, 3, 6, 7


@pytest.fixture
def data(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    open_container(directory, initialize=True).engine.dispose()
    return directory


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, *args: str) -> tuple[int, Any, str]:
    code, out, err = run(capsys, *args, "--json")
    return code, json.loads(out) if code == 0 else None, err


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def chain_of(text: str | bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text if isinstance(text, bytes) else text.encode())


# --- credential-policy create ----------------------------------------------------------------


def test_create_generates_a_p384_ca_by_default(data: Path, capsys) -> None:
    code, out, err = run(capsys, "credential-policy", "create", "fleet", "--data-dir", str(data))
    assert code == 0, err
    assert "created credential policy: fleet (service default)" in out
    assert "(generated, ec-p384)" in out and "30 days, clientAuth" in out
    assert "/credential-policies/default/fleet/crl (number 0)" in out
    assert "devprov credential-policy ca fleet --service default > fleet-ca.pem" in out
    key = FileIssuingKeyStore(data).path("default", "fleet")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_create_with_a_profile_prints_json(data: Path, capsys) -> None:
    code, policy, err = run_json(
        capsys,
        "credential-policy",
        "create",
        "Fleet-B",
        "--key-type",
        "ec-p256",
        "--validity-days",
        "7",
        "--organization",
        "Contoso",
        "--organizational-unit",
        "Plant 7",
        "--server-auth",
        "--url",
        "https://dps.example:8443",
        "--data-dir",
        str(data),
    )
    assert code == 0, err
    assert (policy["name"], policy["origin"], policy["ca"]["keyType"]) == (
        "Fleet-B",
        "generated",
        "ec-p256",
    )
    assert (policy["validityDays"], policy["organization"], policy["organizationalUnit"]) == (
        7,
        "Contoso",
        "Plant 7",
    )
    assert policy["serverAuth"] is True and policy["chainLength"] == 1
    assert policy["crlUrl"] == "https://dps.example:8443/credential-policies/default/Fleet-B/crl"
    assert policy["caUrl"] == "https://dps.example:8443/credential-policies/default/Fleet-B/ca.pem"


@pytest.mark.parametrize(
    ("options", "code", "expected"),
    [
        pytest.param(
            ["--validity-days", "91"], INVALID, "InvalidCredentialPolicy", id="fail/validity"
        ),
        pytest.param(["--key-type", "dsa"], USAGE, "invalid choice", id="fail/key-type"),
        pytest.param(
            ["--service", "nowhere"], NOT_FOUND, "ProvisioningServiceNotFound", id="fail/service"
        ),
    ],
)
def test_create_refuses_bad_options(data: Path, capsys, options, code, expected) -> None:
    if code == USAGE:
        with pytest.raises(SystemExit) as exited:
            main(["credential-policy", "create", "fleet", *options, "--data-dir", str(data)])
        assert exited.value.code == USAGE and expected in capsys.readouterr().err
        return
    got, _, err = run(
        capsys, "credential-policy", "create", "fleet", *options, "--data-dir", str(data)
    )
    assert got == code and expected in err


def test_a_name_taken_is_a_conflict(data: Path, capsys) -> None:
    assert run(capsys, "credential-policy", "create", "fleet", "--data-dir", str(data))[0] == 0
    code, _, err = run(capsys, "credential-policy", "create", "FLEET", "--data-dir", str(data))
    assert code == CONFLICT and "AlreadyExists" in err


ROOT = f.root("CLI Operator Root")
ISSUING = f.intermediate(ROOT, "CLI Operator Issuing CA")


def encrypted_key(passphrase: bytes) -> bytes:
    return ISSUING.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def test_import_a_ca_with_its_chain_and_an_encrypted_key(
    data: Path, tmp_path: Path, capsys
) -> None:
    chain = write(tmp_path / "chain.pem", ISSUING.pem + ROOT.pem)
    key = write(tmp_path / "issuing.key", encrypted_key(b"s3cret"))
    passphrase = write(tmp_path / "passphrase", b"s3cret\nignored\n")
    code, policy, err = run_json(
        capsys,
        "credential-policy",
        "create",
        "imported",
        "--import-cert",
        chain,
        "--import-key",
        key,
        "--key-passphrase-file",
        passphrase,
        "--data-dir",
        str(data),
    )
    assert code == 0, err
    assert (policy["origin"], policy["chainLength"]) == ("imported", 2)
    assert policy["ca"]["subject"] == "CN=CLI Operator Issuing CA"
    code, out, _ = run(capsys, "credential-policy", "ca", "imported", "--data-dir", str(data))
    assert code == 0 and chain_of(out) == [ISSUING.certificate, ROOT.certificate]


@pytest.mark.parametrize(
    ("key", "passphrase", "expected"),
    [
        pytest.param(b"s3cret", b"wrong", "WrongIssuingKeyPassphrase", id="fail/wrong-passphrase"),
        pytest.param(b"s3cret", None, "IssuingKeyPassphraseRequired", id="fail/no-passphrase"),
        pytest.param(None, b"needless", "IssuingKeyNotEncrypted", id="fail/needless-passphrase"),
    ],
)
def test_import_refuses_a_key_it_cannot_read_with_its_error(
    data: Path, tmp_path: Path, capsys, key, passphrase, expected
) -> None:
    content = ISSUING.key_pem() if key is None else encrypted_key(key)
    argv = [
        "credential-policy",
        "create",
        "imported",
        "--import-cert",
        write(tmp_path / "chain.pem", ISSUING.pem),
        "--import-key",
        write(tmp_path / "issuing.key", content),
        "--data-dir",
        str(data),
    ]
    if passphrase is not None:
        argv += ["--key-passphrase-file", write(tmp_path / "passphrase", passphrase)]
    code, _, err = run(capsys, *argv)
    assert code == INVALID and f"error: {expected}:" in err
    assert run(capsys, "credential-policy", "show", "imported", "--data-dir", str(data))[0] == 6


def test_import_refuses_the_wrong_key(data: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(
        capsys,
        "credential-policy",
        "create",
        "imported",
        "--import-cert",
        write(tmp_path / "chain.pem", ISSUING.pem),
        "--import-key",
        write(tmp_path / "root.key", ROOT.key_pem()),
        "--data-dir",
        str(data),
    )
    assert code == INVALID and "IssuingKeyMismatch" in err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(["--import-cert", "{chain}"], "go together", id="fail/cert-without-key"),
        pytest.param(["--import-key", "{key}"], "go together", id="fail/key-without-cert"),
        pytest.param(
            ["--import-cert", "{chain}", "--import-key", "{key}", "--key-type", "ec-p256"],
            "--key-type is for a generated CA",
            id="fail/key-type-with-import",
        ),
        pytest.param(
            ["--key-passphrase-file", "{key}"], "needs --import-cert", id="fail/passphrase-alone"
        ),
    ],
)
def test_import_options_that_do_not_go_together_are_a_usage_error(
    data: Path, tmp_path: Path, capsys, options, expected
) -> None:
    files = {
        "{chain}": write(tmp_path / "chain.pem", ISSUING.pem),
        "{key}": write(tmp_path / "issuing.key", ISSUING.key_pem()),
    }
    argv = [files.get(option, option) for option in options]
    with pytest.raises(SystemExit) as exited:
        main(["credential-policy", "create", "imported", *argv, "--data-dir", str(data)])
    assert exited.value.code == USAGE and expected in capsys.readouterr().err


# --- list, show, ca, crl, delete -------------------------------------------------------------


def create(data: Path, capsys, name: str = "fleet") -> None:
    argv = ["credential-policy", "create", name, "--key-type", "ec-p256", "--data-dir", str(data)]
    assert run(capsys, *argv)[0] == 0


def test_list_and_show(data: Path, capsys) -> None:
    code, out, _ = run(capsys, "credential-policy", "list", "--data-dir", str(data))
    assert (code, out) == (0, "'default' has no credential policies\n")
    create(data, capsys, "beta")
    create(data, capsys, "Alpha")
    code, listed, _ = run_json(capsys, "credential-policy", "list", "--data-dir", str(data))
    assert code == 0 and [p["name"] for p in listed] == ["Alpha", "beta"]
    code, out, _ = run(capsys, "credential-policy", "list", "--data-dir", str(data))
    assert [line.split("\t")[:2] for line in out.splitlines()] == [
        ["Alpha", "generated"],
        ["beta", "generated"],
    ]
    code, shown, _ = run_json(capsys, "credential-policy", "show", "ALPHA", "--data-dir", str(data))
    assert code == 0 and shown["name"] == "Alpha" and shown["enrollments"] == 0
    code, _, err = run(capsys, "credential-policy", "show", "gamma", "--data-dir", str(data))
    assert code == NOT_FOUND and "CredentialPolicyNotFound" in err


def test_ca_prints_the_chain_for_hubs_to_trust(data: Path, capsys) -> None:
    create(data, capsys)
    code, out, _ = run(capsys, "credential-policy", "ca", "fleet", "--data-dir", str(data))
    (ca,) = chain_of(out)
    assert code == 0 and ca.subject == ca.issuer
    code, _, err = run(capsys, "credential-policy", "ca", "nope", "--data-dir", str(data))
    assert code == NOT_FOUND and "CredentialPolicyNotFound" in err


def test_crl_prints_der_or_pem_or_writes_a_file(data: Path, tmp_path: Path, capsysbinary) -> None:
    assert main(["credential-policy", "create", "fleet", "--data-dir", str(data)]) == 0
    capsysbinary.readouterr()
    assert main(["credential-policy", "crl", "fleet", "--data-dir", str(data)]) == 0
    der = capsysbinary.readouterr().out
    c = open_container(data)
    try:
        (ca,) = chain_of(c.credential_policies.show("default", "fleet").ca_chain_pem)
    finally:
        c.engine.dispose()
    assert x509.load_der_x509_crl(der).is_signature_valid(ca.public_key())
    assert main(["credential-policy", "crl", "fleet", "--pem", "--data-dir", str(data)]) == 0
    pem = capsysbinary.readouterr().out
    assert pem.startswith(b"-----BEGIN X509 CRL-----")
    assert x509.load_pem_x509_crl(pem).is_signature_valid(ca.public_key())
    out = tmp_path / "fleet.crl"
    assert (
        main(["credential-policy", "crl", "fleet", "--out", str(out), "--data-dir", str(data)]) == 0
    )
    assert b"wrote the CRL of 'fleet'" in capsysbinary.readouterr().err
    assert x509.load_der_x509_crl(out.read_bytes()).issuer == ca.subject
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert main(["credential-policy", "crl", "nope", "--data-dir", str(data)]) == NOT_FOUND


def name_policy(data: Path, enrollment_id: str, policy: str) -> None:
    c = open_container(data)
    try:
        doc = {"attestation": {"type": "symmetricKey"}, "credentialPolicyName": policy}
        c.enrollments.create_or_update(
            "default", EnrollmentKind.INDIVIDUAL, enrollment_id, doc, if_match=None, actor="t"
        )
    finally:
        c.engine.dispose()


def test_delete_refuses_a_policy_in_use_unless_forced(data: Path, capsys) -> None:
    create(data, capsys)
    name_policy(data, "dev-1", "fleet")
    code, _, err = run(capsys, "credential-policy", "delete", "fleet", "--data-dir", str(data))
    assert code == CONFLICT and "CredentialPolicyInUse" in err and "--force" in err
    code, shown, _ = run_json(capsys, "credential-policy", "show", "fleet", "--data-dir", str(data))
    assert shown["enrollments"] == 1
    code, out, _ = run(
        capsys, "credential-policy", "delete", "fleet", "--force", "--data-dir", str(data)
    )
    assert code == 0 and "deleted credential policy 'fleet'" in out
    assert not FileIssuingKeyStore(data).path("default", "fleet").exists()
    code, _, err = run(capsys, "credential-policy", "delete", "fleet", "--data-dir", str(data))
    assert code == NOT_FOUND


def test_every_change_is_in_the_audit_log(data: Path, capsys) -> None:
    create(data, capsys)
    assert run(capsys, "credential-policy", "delete", "fleet", "--data-dir", str(data))[0] == 0
    code, events, _ = run_json(capsys, "audit", "--service", "default", "--data-dir", str(data))
    assert code == 0
    assert [(e["action"], e["actor"]) for e in events] == [
        ("credentialPolicy.create", "cli"),
        ("credentialPolicy.delete", "cli"),
    ]


# --- issued ----------------------------------------------------------------------------------


def issue(data: Path, registration_id: str, *, at: timedelta) -> IssuedCertificate:
    """A certificate from the policy 'fleet''s CA, recorded as a registration records it."""
    c = open_container(data)
    try:
        policy = c.credential_policies.show("default", "fleet")
        issuer = f.Ca(chain_of(policy.ca_chain_pem)[0], c.issuing_keys.load("default", "fleet"))
        leaf = f.device(issuer, registration_id)
        record = IssuedCertificate(
            service="default",
            serial=f"{leaf.certificate.serial_number:X}",
            sha256=hashlib.sha256(leaf.der).hexdigest(),
            registration_id=registration_id,
            policy="fleet",
            not_before=leaf.certificate.not_valid_before_utc,
            not_after=leaf.certificate.not_valid_after_utc,
            issued_at=f.NOW + at,
            certificate_der=leaf.der,
        )
        with SqlUnitOfWork(c.engine) as u:
            u.issued.add(record)
            u.commit()
    finally:
        c.engine.dispose()
    return record


def test_issued_list_pages_through_everything_with_filters(data: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(cli, "PAGE", 2)
    code, out, _ = run(capsys, "issued", "list", "--data-dir", str(data))
    assert (code, out) == (0, "no certificates issued\n")
    create(data, capsys)
    records = [issue(data, f"dev-{n % 2}", at=timedelta(minutes=n)) for n in range(5)]
    code, listed, _ = run_json(capsys, "issued", "list", "--data-dir", str(data))
    assert code == 0 and [c["serialNumber"] for c in listed] == [r.serial for r in records]
    assert listed[0]["registrationId"] == "dev-0" and listed[0]["policy"] == "fleet"
    code, listed, _ = run_json(
        capsys, "issued", "list", "--registration-id", "DEV-1", "--data-dir", str(data)
    )
    assert [c["serialNumber"] for c in listed] == [records[1].serial, records[3].serial]
    code, listed, _ = run_json(
        capsys, "issued", "list", "--policy", "other", "--data-dir", str(data)
    )
    assert listed == []
    code, out, _ = run(capsys, "issued", "list", "--data-dir", str(data))
    assert out.splitlines()[0].split("\t")[:3] == [records[0].serial, "dev-0", "fleet"]
    assert out.splitlines()[0].endswith("\tcurrent")


def test_revoke_and_its_refused_twins(data: Path, capsys) -> None:
    create(data, capsys)
    record = issue(data, "dev-1", at=timedelta(0))
    code, out, err = run(capsys, "issued", "revoke", record.serial.lower(), "--data-dir", str(data))
    assert code == 0, err
    assert f"revoked certificate {record.serial} of 'dev-1'" in out
    code, _, err = run(capsys, "issued", "revoke", record.serial, "--data-dir", str(data))
    assert code == CONFLICT and "CertificateAlreadyRevoked" in err
    code, _, err = run(capsys, "issued", "revoke", "ABCDEF", "--data-dir", str(data))
    assert code == NOT_FOUND and "IssuedCertificateNotFound" in err
    code, _, err = run(capsys, "issued", "revoke", "not-hex", "--data-dir", str(data))
    assert code == INVALID and "InvalidSerialNumber" in err
    code, listed, _ = run_json(capsys, "issued", "list", "--data-dir", str(data))
    assert listed[0]["revoked"] is not None
    code, shown, _ = run_json(capsys, "credential-policy", "show", "fleet", "--data-dir", str(data))
    assert shown["crlNumber"] == 1
    code, out, _ = run(capsys, "issued", "list", "--data-dir", str(data))
    assert "\trevoked " in out


# --- against a running server ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("policies") / "data") as server:
        yield server


def on(server: ServerProcess, capsys, *args: str) -> tuple[int, Any, str]:
    code = main([*args, *server.cli_args(), "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else None, captured.err


def test_enrollments_name_a_policy_from_the_command_line(server: ServerProcess, capsys) -> None:
    assert on(server, capsys, "credential-policy", "create", "srv-fleet")[0] == 0
    assert on(server, capsys, "credential-policy", "create", "srv-other")[0] == 0
    code, created, err = on(
        server,
        capsys,
        "enrollment",
        "create",
        "srv-dev",
        "--symmetric-key",
        "--credential-policy",
        "srv-fleet",
    )
    assert code == 0, err
    assert created["credentialPolicyName"] == created["certificatePolicyName"] == "srv-fleet"
    code, group, err = on(
        server,
        capsys,
        "enrollment-group",
        "create",
        "srv-grp",
        "--symmetric-key",
        "--credential-policy",
        "SRV-FLEET",
    )
    assert code == 0, err
    assert group["credentialPolicyName"] == "SRV-FLEET"
    code, updated, err = on(
        server, capsys, "enrollment", "update", "srv-dev", "--credential-policy", "srv-other"
    )
    assert code == 0, err
    assert updated["credentialPolicyName"] == updated["certificatePolicyName"] == "srv-other"
    code, dropped, err = on(
        server, capsys, "enrollment", "update", "srv-dev", "--no-credential-policy"
    )
    assert code == 0, err
    assert "credentialPolicyName" not in dropped and "certificatePolicyName" not in dropped
    code = main(["enrollment-group", "show", "srv-grp", *server.cli_args()])
    assert code == 0 and "credential policy: SRV-FLEET" in capsys.readouterr().out


def test_an_enrollment_naming_a_missing_policy_is_refused(server: ServerProcess, capsys) -> None:
    code, _, err = on(
        server,
        capsys,
        "enrollment",
        "create",
        "srv-dev-2",
        "--symmetric-key",
        "--credential-policy",
        "srv-missing",
    )
    assert code == INVALID and "UnknownCredentialPolicy" in err and "'srv-missing'" in err
    code, _, _ = on(server, capsys, "enrollment", "show", "srv-dev-2")
    assert code == NOT_FOUND


def test_the_servers_crl_and_ca_addresses_answer_anybody(server: ServerProcess, capsys) -> None:
    assert on(server, capsys, "credential-policy", "create", "srv-public")[0] == 0
    code, shown, _ = on(server, capsys, "credential-policy", "show", "srv-public")
    assert code == 0
    assert shown["crlUrl"].startswith(server.url)
    with httpx.Client(verify=ssl.create_default_context(cafile=server.ca_file)) as client:
        crl = client.get(shown["crlUrl"])
        ca = client.get(shown["caUrl"])
        missing = client.get(shown["crlUrl"].replace("srv-public", "srv-nope"))
    assert crl.status_code == 200 and crl.headers["content-type"] == "application/pkix-crl"
    (issuer,) = chain_of(ca.content)
    assert ca.headers["content-type"] == "application/x-pem-file"
    assert x509.load_der_x509_crl(crl.content).is_signature_valid(issuer.public_key())
    assert missing.status_code == 404 and missing.json()["errorCode"] == 404621
