"""``devprov ca`` driven in-process through ``main(argv)``, with real files and real openssl.

Every positive check has its negative control: a chain that verifies against its own root fails
against another root; a verification certificate signed by the intermediate does not verify
against the root.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import verification as xv

from devprov.cli import main as cli_main
from devprov.core.issuance import build_root_certificate
from devprov.service.pki.ca import KeyType, describe_key_type, generate_private_key
from devprov.service.pki.file import load_private_key, write_certificates, write_private_key

CODE = "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"
INVALID_INPUT = 3
NOT_FOUND = 6
CONFLICT = 7


@pytest.fixture(autouse=True)
def only_the_ca_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ca commands stand alone; the other command modules need not import for these tests."""
    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ("ca",))


def run(*argv: object) -> int:
    return cli_main.main([str(a) for a in argv])


def demo(directory: Path, *extra: str) -> None:
    assert run("ca", "demo", directory, *extra) == 0


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def openssl_verify(directory: Path, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(root),
            "-untrusted",
            str(directory / "intermediate.pem"),
            str(directory / "my-device.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- demo -----------------------------------------------------------------------------------

DEMO_FILES = [
    "intermediate-chain.pem",
    "intermediate.key",
    "intermediate.pem",
    "my-device-chain.pem",
    "my-device-full-chain.pem",
    "my-device.key",
    "my-device.pem",
    "root-chain.pem",
    "root.key",
    "root.pem",
]


def test_demo_writes_every_file_with_the_right_modes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo(tmp_path / "pki")
    assert listing(tmp_path / "pki") == DEMO_FILES
    for name in DEMO_FILES:
        assert mode(tmp_path / "pki" / name) == (0o600 if name.endswith(".key") else 0o644)
    out = capsys.readouterr().out
    assert f"devprov certificate prove root --cert {tmp_path}/pki/root.pem" in out
    assert f"--key {tmp_path}/pki/root.key" in out
    assert f"{tmp_path}/pki/my-device-full-chain.pem" in out


def test_demo_full_chain_is_leaf_intermediate_root(tmp_path: Path) -> None:
    demo(tmp_path)
    chain = certificates(tmp_path / "my-device-full-chain.pem")
    assert chain == [
        certificate(tmp_path / "my-device.pem"),
        certificate(tmp_path / "intermediate.pem"),
        certificate(tmp_path / "root.pem"),
    ]
    assert certificates(tmp_path / "my-device-chain.pem") == chain
    assert certificates(tmp_path / "intermediate-chain.pem") == chain[1:]
    assert certificates(tmp_path / "root-chain.pem") == chain[2:]


def test_demo_chain_verifies_with_system_openssl(tmp_path: Path) -> None:
    demo(tmp_path / "a")
    demo(tmp_path / "b")
    ok = openssl_verify(tmp_path / "a", tmp_path / "a" / "root.pem")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().endswith(": OK")
    # Negative control: the same chain against another demo's root.
    refused = openssl_verify(tmp_path / "a", tmp_path / "b" / "root.pem")
    assert refused.returncode != 0


def test_demo_json_parses_and_names_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo(tmp_path, "--json", "--device-name", "sensor-7", "--days", "30")
    data = json.loads(capsys.readouterr().out)
    assert data["device"]["subject"] == "CN=sensor-7"
    assert data["device"]["files"]["full-chain"] == str(tmp_path / "sensor-7-full-chain.pem")
    assert data["intermediate"]["path_length"] == 0
    assert data["root"]["self_signed"] is True
    assert len(data["root"]["thumbprint"]) == 40
    not_after = datetime.fromisoformat(data["device"]["not_after"])
    assert timedelta(days=29) < not_after - datetime.now(UTC) <= timedelta(days=30)
    assert any("devprov certificate prove root" in step for step in data["next_steps"])


def test_ca_commands_need_no_server_and_no_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for variable in [v for v in os.environ if v.startswith("DEVPROV")]:
        monkeypatch.delenv(variable)
    demo(Path("pki"))
    assert listing(tmp_path) == ["pki"]


# --- devices from an intermediate -------------------------------------------------------------


def client_verifier(root: x509.Certificate) -> xv.ClientVerifier:
    """The web PKI end-entity policy, except that a SAN may be absent: device certificates carry
    only a CN (docs/attestation.md#registration-id-and-the-certificate-cn)."""
    ee_policy = xv.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, xv.Criticality.AGNOSTIC, None
    )
    return (
        xv.PolicyBuilder()
        .store(xv.Store([root]))
        .extension_policies(ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )


def test_device_from_intermediate_passes_cryptographys_client_verifier(tmp_path: Path) -> None:
    demo(tmp_path / "a")
    demo(tmp_path / "b")
    directory = tmp_path / "a"
    assert run("ca", "device", "dev-2", "--issuer", "intermediate", "--dir", directory) == 0
    chain = certificates(directory / "dev-2-full-chain.pem")
    verified = client_verifier(certificate(directory / "root.pem")).verify(chain[0], chain[1:])
    assert [c.subject.rfc4514_string() for c in verified.chain] == [
        "CN=dev-2",
        "CN=devprov Test Intermediate CA",
        "CN=devprov Test Root CA",
    ]
    # Negative control: another root with the same name does not anchor it.
    with pytest.raises(xv.VerificationError):
        client_verifier(certificate(tmp_path / "b" / "root.pem")).verify(chain[0], chain[1:])


def test_device_with_issuer_given_as_path_prefix(tmp_path: Path) -> None:
    demo(tmp_path / "pki")
    out = tmp_path / "out"
    assert (
        run("ca", "device", "d1", "--issuer", tmp_path / "pki" / "intermediate", "--dir", out) == 0
    )
    assert len(certificates(out / "d1-full-chain.pem")) == 3


def test_device_with_explicit_issuer_cert_and_key(tmp_path: Path) -> None:
    demo(tmp_path)
    argv = ["ca", "device", "d2", "--dir", tmp_path / "out"]
    argv += ["--issuer-cert", tmp_path / "root.pem", "--issuer-key", tmp_path / "root.key"]
    assert run(*argv) == 0
    certificate(tmp_path / "out" / "d2.pem").verify_directly_issued_by(
        certificate(tmp_path / "root.pem")
    )


def test_self_signed_device(tmp_path: Path) -> None:
    assert run("ca", "device", "lonely", "--self-signed", "--dir", tmp_path) == 0
    leaf = certificate(tmp_path / "lonely.pem")
    assert leaf.issuer == leaf.subject
    leaf.verify_directly_issued_by(leaf)
    assert certificates(tmp_path / "lonely-full-chain.pem") == [leaf]


def test_self_signed_with_an_issuer_key_is_a_usage_error(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_text("not read: the options are refused first\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as caught:
        run("ca", "device", "x", "--self-signed", "--issuer-key", key, "--dir", out)
    assert caught.value.code == 2
    assert not out.exists()


@pytest.mark.parametrize(
    ("password", "encrypted"),
    [pytest.param(True, True, id="pfx-password"), pytest.param(False, False, id="no-password")],
)
def test_device_pfx(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], password: bool, encrypted: bool
) -> None:
    demo(tmp_path)
    (tmp_path / "pfx-pass").write_text("s3cret\n")
    argv = ["ca", "device", "p", "--issuer", "intermediate", "--dir", tmp_path, "--pfx"]
    argv += ["--pfx-password-file", tmp_path / "pfx-pass"] if password else []
    capsys.readouterr()
    assert run(*argv) == 0
    out = capsys.readouterr().out
    assert ("NOT encrypted" in out) != encrypted
    bundle = pkcs12.load_pkcs12((tmp_path / "p.pfx").read_bytes(), b"s3cret" if password else None)
    assert bundle.cert is not None
    assert bundle.cert.certificate == certificate(tmp_path / "p.pem")
    assert len(bundle.additional_certs) == 2
    assert mode(tmp_path / "p.pfx") == 0o600


# --- verification certificates ----------------------------------------------------------------


@pytest.mark.parametrize("issuer", ["root", "intermediate"])
def test_verification_certificate_is_signed_by_the_named_issuer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], issuer: str
) -> None:
    demo(tmp_path)
    out = tmp_path / f"proof-{issuer}.pem"
    capsys.readouterr()
    assert run("ca", "verification", CODE, "--issuer", issuer, "--dir", tmp_path, "--out", out) == 0
    assert "warning" not in capsys.readouterr().err
    proof = certificate(out)
    assert proof.subject.rfc4514_string() == f"CN={CODE}"
    proof.verify_directly_issued_by(certificate(tmp_path / f"{issuer}.pem"))
    assert not out.with_suffix(".key").exists()  # the throwaway key is thrown away


def test_verification_by_the_intermediate_does_not_verify_against_the_root(tmp_path: Path) -> None:
    demo(tmp_path)
    assert run("ca", "verification", CODE, "--issuer", "intermediate", "--dir", tmp_path) == 0
    proof = certificate(tmp_path / "verification-code.pem")
    with pytest.raises(ValueError, match="does not match"):
        proof.verify_directly_issued_by(certificate(tmp_path / "root.pem"))


def test_verification_keep_key_and_odd_code_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo(tmp_path)
    capsys.readouterr()
    argv = ["ca", "verification", "not-a-dps-code", "--issuer", "root", "--dir", tmp_path]
    assert run(*argv, "--keep-key") == 0
    assert "warning: 'not-a-dps-code' is not shaped like a DPS verification code" in (
        capsys.readouterr().err
    )
    key = load_private_key(tmp_path / "verification-code.key", None)
    assert certificate(tmp_path / "verification-code.pem").public_key() == key.public_key()
    assert mode(tmp_path / "verification-code.key") == 0o600


@pytest.mark.parametrize(
    "code", [pytest.param("", id="empty"), pytest.param("C" * 65, id="65-characters")]
)
def test_unusable_verification_code_is_an_input_error(tmp_path: Path, code: str) -> None:
    demo(tmp_path)
    before = listing(tmp_path)
    assert run("ca", "verification", code, "--issuer", "root", "--dir", tmp_path) == INVALID_INPUT
    assert listing(tmp_path) == before


# --- passwords --------------------------------------------------------------------------------


def test_encrypted_root_then_intermediate_with_issuer_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pass").write_text("correct horse\n")
    (tmp_path / "wrong").write_text("battery staple\n")
    assert run("ca", "root", "--dir", tmp_path, "--password-file", tmp_path / "pass") == 0
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "root.key").read_bytes()
    capsys.readouterr()

    base = ["ca", "intermediate", "--issuer", "root", "--dir", tmp_path]
    assert run(*base) == INVALID_INPUT
    err = capsys.readouterr().err
    assert "KeyPasswordRequired" in err
    assert "encrypted" in err
    assert "--issuer-password-file" in err

    assert run(*base, "--issuer-password-file", tmp_path / "wrong") == INVALID_INPUT
    assert "WrongKeyPassword" in capsys.readouterr().err
    assert listing(tmp_path) == ["pass", "root-chain.pem", "root.key", "root.pem", "wrong"]

    assert run(*base, "--issuer-password-file", tmp_path / "pass") == 0
    certificate(tmp_path / "intermediate.pem").verify_directly_issued_by(
        certificate(tmp_path / "root.pem")
    )
    assert b"ENCRYPTED" not in (tmp_path / "intermediate.key").read_bytes()


def test_missing_password_file_is_not_found(tmp_path: Path) -> None:
    argv = ["ca", "root", "--dir", tmp_path, "--password-file", tmp_path / "absent"]
    assert run(*argv) == NOT_FOUND
    assert listing(tmp_path) == []


# --- issuers that cannot sign -----------------------------------------------------------------


def write_expired_root(directory: Path) -> None:
    key = generate_private_key()
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    expired = build_root_certificate(key, "Old Root", serial=1, now=long_ago, days=30)
    write_certificates(directory / "old.pem", [expired])
    write_private_key(directory / "old.key", key, None)


@pytest.mark.parametrize(
    ("issuer", "error"),
    [
        pytest.param("my-device", "NotACaCertificate", id="fail/device-as-issuer"),
        pytest.param("old", "CertificateExpired", id="fail/expired-root"),
        pytest.param("mixed", "IssuerKeyMismatch", id="fail/key-of-another-certificate"),
    ],
)
def test_issuer_that_cannot_sign_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], issuer: str, error: str
) -> None:
    demo(tmp_path)
    write_expired_root(tmp_path)
    (tmp_path / "mixed.pem").write_bytes((tmp_path / "root.pem").read_bytes())
    (tmp_path / "mixed.key").write_bytes((tmp_path / "intermediate.key").read_bytes())
    before = listing(tmp_path)
    capsys.readouterr()
    for argv in (
        ["ca", "device", "child", "--issuer", issuer, "--dir", tmp_path],
        ["ca", "intermediate", "--name", "child", "--issuer", issuer, "--dir", tmp_path],
        ["ca", "verification", CODE, "--issuer", issuer, "--dir", tmp_path],
    ):
        assert run(*argv) == INVALID_INPUT
        assert error in capsys.readouterr().err
    assert listing(tmp_path) == before


def test_missing_issuer_files_are_not_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("ca", "device", "d", "--issuer", "nobody", "--dir", tmp_path) == NOT_FOUND
    assert str(tmp_path / "nobody.pem") in capsys.readouterr().err


def test_child_validity_is_clamped_to_the_issuer_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("ca", "root", "--dir", tmp_path, "--days", "10") == 0
    capsys.readouterr()
    assert run("ca", "intermediate", "--issuer", "root", "--dir", tmp_path) == 0
    assert "warning: validity shortened from 1825 to 10 days" in capsys.readouterr().err
    assert (
        certificate(tmp_path / "intermediate.pem").not_valid_after_utc
        == certificate(tmp_path / "root.pem").not_valid_after_utc
    )


# --- device names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("d" * 65, id="65-characters"),
        pytest.param("has space", id="space"),
        pytest.param("ends.", id="ends-with-dot"),
        pytest.param("ends_", id="ends-with-underscore"),
        pytest.param("ünicode", id="non-ascii"),
        pytest.param("semi;colon", id="semicolon"),
    ],
)
def test_invalid_device_name_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    assert run("ca", "device", name, "--self-signed", "--dir", tmp_path) == INVALID_INPUT
    assert "InvalidRegistrationId" in capsys.readouterr().err
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("d" * 64, id="64-characters"),
        pytest.param("Dev.1_a:b-", id="every-allowed-character"),
    ],
)
def test_valid_device_name_is_accepted(tmp_path: Path, name: str) -> None:
    assert run("ca", "device", name, "--self-signed", "--dir", tmp_path) == 0
    assert certificate(tmp_path / f"{name}.pem").subject.rfc4514_string() == f"CN={name}"


# --- --force ----------------------------------------------------------------------------------


def test_existing_files_need_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("ca", "root", "--dir", tmp_path) == 0
    first = (tmp_path / "root.pem").read_bytes(), (tmp_path / "root.key").read_bytes()
    capsys.readouterr()
    assert run("ca", "root", "--dir", tmp_path) == CONFLICT
    err = capsys.readouterr().err
    assert "AlreadyExists" in err
    assert str(tmp_path / "root.pem") in err
    assert ((tmp_path / "root.pem").read_bytes(), (tmp_path / "root.key").read_bytes()) == first

    assert run("ca", "root", "--dir", tmp_path, "--force") == 0
    assert (tmp_path / "root.pem").read_bytes() != first[0]
    assert (tmp_path / "root.key").read_bytes() != first[1]
    assert mode(tmp_path / "root.key") == 0o600
    assert listing(tmp_path) == ["root-chain.pem", "root.key", "root.pem"]


def test_demo_into_a_used_directory_needs_force(tmp_path: Path) -> None:
    demo(tmp_path)
    assert run("ca", "demo", tmp_path) == CONFLICT
    demo(tmp_path, "--force")


# --- output and key types -------------------------------------------------------------------


def test_root_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ca", "root", "--dir", tmp_path, "--cn", "My Root", "--path-length", "1", "--json"]
    assert run(*argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["subject"] == "CN=My Root"
    assert data["is_ca"] is True
    assert data["path_length"] == 1
    assert data["key_type"] == "ec-p256"
    assert data["key_encrypted"] is False
    assert data["files"] == {
        "certificate": str(tmp_path / "root.pem"),
        "key": str(tmp_path / "root.key"),
        "chain": str(tmp_path / "root-chain.pem"),
    }
    fingerprint = certificate(tmp_path / "root.pem").fingerprint(hashes.SHA1())
    assert data["thumbprint"] == fingerprint.hex().upper()


def test_human_output_lists_subject_issuer_key_expiry_thumbprint_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("ca", "root", "--dir", tmp_path) == 0
    out = capsys.readouterr().out
    expected = [
        "root CA: CN=devprov Test Root CA",
        "issuer      CN=devprov Test Root CA (self-signed)",
        "key type    ec-p256 (key file not encrypted)",
        "expires     ",
        "(SHA-1)",
        f"key          {tmp_path / 'root.key'}",
    ]
    for line in expected:
        assert line in out


# RSA-4096 is generated once in the suite, in tests/service/pki/test_ca.py; here its option is
# only parsed, so that this file stays quick.
@pytest.mark.parametrize(
    "key_type",
    [k.value for k in KeyType if k is not KeyType.RSA_4096],
)
def test_root_with_each_key_type(tmp_path: Path, key_type: str) -> None:
    assert run("ca", "root", "--dir", tmp_path, "--key-type", key_type) == 0
    key = load_private_key(tmp_path / "root.key", None)
    assert describe_key_type(key) == key_type
    assert certificate(tmp_path / "root.pem").public_key() == key.public_key()


def test_every_key_type_is_a_choice_of_every_subcommand() -> None:
    parser = cli_main.build_parser()
    for argv in (
        ["ca", "root"],
        ["ca", "intermediate", "--issuer", "r"],
        ["ca", "device", "d", "--self-signed"],
        ["ca", "verification", CODE, "--issuer", "r"],
        ["ca", "demo", "dir"],
    ):
        for key_type in KeyType:
            args = parser.parse_args([*argv, "--key-type", key_type.value])
            assert KeyType(args.key_type) is key_type
