"""End to end: a real ``devprov serve`` process over TLS, driven by the CLI in-process and by
certificates made with the ``openssl`` command line."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devprov.cli.main import main
from devprov.core.certificate import common_name, parse_single_certificate
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("e2e") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    assert main(["ca", "demo", str(directory)]) == 0
    return directory


def cli(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, object]:
    code = main([*args, *server.cli_args(), "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 and out.strip() else out


def test_server_prints_what_clients_need(server: ServerProcess) -> None:
    text = "".join(server.output)
    assert "ID scope:" in text and "connection string: HostName=localhost:" in text
    assert str(server.ca_file.resolve()) in text and server.token in text
    assert server.url.startswith("https://localhost:")


def test_info_repeats_the_facts(server: ServerProcess, capsys) -> None:
    assert main(["info", *server.cli_args(), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["url"] == server.url and facts["adminToken"] == server.token
    (default,) = facts["services"]
    assert default["name"] == "default" and default["idScope"].startswith("0ne")
    assert default["connectionString"].startswith(f"HostName=localhost:{server.port};")


def test_prove_in_one_command(server: ServerProcess, pki: Path, capsys) -> None:
    code, data = cli(
        server,
        capsys,
        "certificate",
        "prove",
        "e2e-root",
        "--cert",
        str(pki / "root.pem"),
        "--key",
        str(pki / "root.key"),
    )
    assert code == 0, data
    assert data["properties"]["isVerified"] is True and data["properties"]["subject"]
    # running it again is harmless
    code, again = cli(
        server,
        capsys,
        "certificate",
        "prove",
        "e2e-root",
        "--cert",
        str(pki / "root.pem"),
        "--key",
        str(pki / "root.key"),
    )
    assert code == 0 and again["etag"] == data["etag"]


def test_show_and_list_print_the_subject_as_the_service_answers(
    server: ServerProcess, pki: Path, capsys
) -> None:
    """The resource's subject is the CN value (docs/management-answers.md#the-subject-rule)."""
    cn = common_name(parse_single_certificate((pki / "intermediate.pem").read_bytes()))
    assert cn and not cn.startswith("CN=")
    argv = ["certificate", "upload", "e2e-show", "--cert", str(pki / "intermediate.pem")]
    assert main([*argv, *server.cli_args()]) == 0
    assert f"subject:    {cn}\n" in capsys.readouterr().out
    assert main(["certificate", "show", "e2e-show", *server.cli_args()]) == 0
    assert f"subject:    {cn}\n" in capsys.readouterr().out
    assert main(["certificate", "list", *server.cli_args()]) == 0
    assert f"e2e-show\tunverified\t{cn}\n" in capsys.readouterr().out


def test_prove_with_the_wrong_key_is_refused_locally(
    server: ServerProcess, pki: Path, capsys
) -> None:
    code = main(
        [
            "certificate",
            "prove",
            "mismatch",
            "--cert",
            str(pki / "root.pem"),
            "--key",
            str(pki / "intermediate.key"),
            *server.cli_args(),
        ]
    )
    assert code == 3
    assert "does not belong" in capsys.readouterr().err
    assert main(["certificate", "show", "mismatch", *server.cli_args()]) == 6


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_step_by_step_with_openssl(
    server: ServerProcess, pki: Path, tmp_path: Path, capsys
) -> None:
    code, uploaded = cli(
        server,
        capsys,
        "certificate",
        "upload",
        "e2e-inter",
        "--cert",
        str(pki / "intermediate.pem"),
    )
    assert code == 0 and uploaded["properties"]["isVerified"] is False
    code, coded = cli(server, capsys, "certificate", "generate-code", "e2e-inter")
    assert code == 0
    verification_code = coded["properties"]["verificationCode"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "proof.key",
        "-subj",
        f"/CN={verification_code}",
        "-out",
        "proof.csr",
    )
    # negative control first: signed by the root, although the intermediate was uploaded
    openssl(
        "x509",
        "-req",
        "-in",
        "proof.csr",
        "-CA",
        str(pki / "root.pem"),
        "-CAkey",
        str(pki / "root.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        "wrong.pem",
    )
    code = main(
        [
            "certificate",
            "verify",
            "e2e-inter",
            "--cert",
            str(tmp_path / "wrong.pem"),
            *server.cli_args(),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3 and "VerificationSignerMismatch" in err and "names issuer" in err
    openssl(
        "x509",
        "-req",
        "-in",
        "proof.csr",
        "-CA",
        str(pki / "intermediate.pem"),
        "-CAkey",
        str(pki / "intermediate.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        "proof.pem",
    )
    # DER too: openssl x509 -outform DER, sent as base64 of DER by the CLI
    openssl("x509", "-in", "proof.pem", "-outform", "DER", "-out", "proof.cer")
    code, verified = cli(
        server, capsys, "certificate", "verify", "e2e-inter", "--cert", str(tmp_path / "proof.cer")
    )
    assert code == 0, verified
    assert verified["properties"]["isVerified"] is True


def test_generate_code_prints_the_code_alone(
    server: ServerProcess, pki: Path, tmp_path: Path, capsys
) -> None:
    """README's step-by-step flow: CODE=$(devprov certificate generate-code NAME)."""
    argv = ["certificate", "upload", "e2e-code", "--cert", str(pki / "intermediate.pem")]
    assert main([*argv, *server.cli_args(), "--json"]) == 0
    capsys.readouterr()
    assert main(["certificate", "generate-code", "e2e-code", *server.cli_args()]) == 0
    out, err = capsys.readouterr()
    code = out.strip()
    assert out == code + "\n" and len(code) > 10 and " " not in code
    assert f"verification code: {code}" in err and "name:       e2e-code" in err
    proof = tmp_path / "proof.pem"
    issuer = ["--issuer", str(pki / "intermediate"), "--out", str(proof), "--json"]
    assert main(["ca", "verification", code, *issuer]) == 0
    capsys.readouterr()
    assert (
        main(["certificate", "verify", "e2e-code", "--cert", str(proof), *server.cli_args()]) == 0
    )
    assert "verified:   yes" in capsys.readouterr().out
    assert main(["certificate", "generate-code", "e2e-code", *server.cli_args()]) == 0
    assert "'e2e-code' is already verified" in capsys.readouterr().err
    # --json prints everything as JSON, on stdout
    assert main(["certificate", "generate-code", "e2e-code", *server.cli_args(), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["properties"]["verificationCode"] and err == ""


def test_errors_map_to_exit_codes(server: ServerProcess, pki: Path, capsys) -> None:
    assert main(["certificate", "show", "nothing-here", *server.cli_args()]) == 6
    assert (
        main(
            [
                "certificate",
                "upload",
                "leaf",
                "--cert",
                str(pki / "my-device.pem"),
                *server.cli_args(),
            ]
        )
        == 3
    )
    assert "NotACaCertificate" in capsys.readouterr().err
    assert main(["certificate", "list", *server.cli_args(), "--token", "wrong"]) == 4
    assert main(["certificate", "list", *server.cli_args(), "--url", "https://localhost:1"]) == 10


def test_audit_shows_refusals_with_reasons(server: ServerProcess, pki: Path, capsys) -> None:
    main(
        [
            "certificate",
            "upload",
            "audit-leaf",
            "--cert",
            str(pki / "my-device.pem"),
            *server.cli_args(),
        ]
    )
    capsys.readouterr()
    assert main(["audit", "--certificate", "audit-leaf", *server.cli_args(), "--json"]) == 0
    (event,) = json.loads(capsys.readouterr().out)
    assert event["outcome"] == "failed" and event["errorCode"] == "NotACaCertificate"
    assert event["actor"] == "admin" and event["apiVersion"]


def test_restart_keeps_everything(server: ServerProcess, pki: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "restart"
    with running_server(data) as first:
        assert (
            main(
                [
                    "certificate",
                    "upload",
                    "kept",
                    "--cert",
                    str(pki / "root.pem"),
                    "--verified",
                    *first.cli_args(),
                ]
            )
            == 0
        )
        scope = json.loads(_info(first, capsys))["services"][0]["idScope"]
    with running_server(data) as second:
        assert main(["certificate", "show", "kept", *second.cli_args(), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["properties"]["isVerified"] is True
        assert json.loads(_info(second, capsys))["services"][0]["idScope"] == scope


def _info(server: ServerProcess, capsys) -> str:
    capsys.readouterr()
    assert main(["info", *server.cli_args(), "--json"]) == 0
    return capsys.readouterr().out


def test_two_servers_share_one_data_directory(tmp_path: Path, pki: Path, capsys) -> None:
    data = tmp_path / "shared"
    with running_server(data) as first, running_server(data) as second:
        assert (
            main(
                [
                    "certificate",
                    "upload",
                    "one",
                    "--cert",
                    str(pki / "root.pem"),
                    *first.cli_args(),
                    "--url",
                    first.url,
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "certificate",
                    "upload",
                    "two",
                    "--cert",
                    str(pki / "intermediate.pem"),
                    *second.cli_args(),
                    "--url",
                    second.url,
                ]
            )
            == 0
        )
        capsys.readouterr()
        assert main(["certificate", "list", *first.cli_args(), "--url", first.url, "--json"]) == 0
        names = sorted(item["name"] for item in json.loads(capsys.readouterr().out))
        assert names == ["one", "two"]
