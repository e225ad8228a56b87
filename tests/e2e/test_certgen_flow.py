"""The proof-of-possession and provisioning flow with certificates in the exact shape of
Microsoft's certGen.sh (azure-iot-sdk-c tools/CACertificates): RSA-4096 keys, its openssl
extension sections (v3_ca, v3_intermediate_ca, usr_cert), its subject names and its 30 days,
against a real server, through devprov's CLI as an operator would drive it
(docs/sdk-clients.md#certgensh).

The certificates are built here with cryptography (tests/core/chain_factory.py has the
certGen builders); Microsoft's script is not shipped. certGen signs devices and verification
certificates with the root by default, and with the intermediate on request; both are here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devprov.cli.main import main
from tests import factory as f
from tests.core import chain_factory as cf
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

CERTGEN_KEY_BITS = 4096  # certGen.sh: key_bits_length="4096" for every certificate
ROOT_SUBJECT = "CN=Azure IoT Hub CA Cert Test Only"
INTERMEDIATE_SUBJECT = "CN=Azure IoT Hub Intermediate Cert Test Only"
HUB = "certgen-hub.azure-devices.net"


def rsa_4096() -> rsa.RSAPrivateKey:
    return f.rsa_key(CERTGEN_KEY_BITS)


@dataclass(frozen=True)
class CertGen:
    """certGen.sh's outputs, under its own file names (certs/, private/)."""

    root: f.Ca
    intermediate: f.Ca
    directory: Path
    signing_key: rsa.RSAPrivateKey  # for verification certificates, one per run is enough

    def path(self, name: str) -> Path:
        return self.directory / name

    def device(self, name: str, parent: f.Ca) -> tuple[Path, Path]:
        """``create_device_certificate[_from_intermediate] NAME``, and the full-chain file the
        C SDK's overview tells users to build by hand (certGen deletes but never writes it)."""
        device = cf.certgen_device(parent, name, rsa_4096())
        chain = [device.certificate, parent.certificate]
        if parent is self.intermediate:
            chain.append(self.root.certificate)
        full_chain = self.write(f"certs/{name}-full-chain.cert.pem", *chain)
        key = self.path(f"private/{name}.key.pem")
        key.write_bytes(
            device.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,  # openssl genrsa's PKCS#1
                serialization.NoEncryption(),
            )
        )
        return full_chain, key

    def verification(self, code: str, signer: f.Ca) -> Path:
        """``create_verification_certificate CODE``: a usr_cert leaf CN=CODE."""
        proof = cf.certgen_device(signer, code, self.signing_key)
        return self.write("certs/verification-code.cert.pem", proof.certificate)

    def write(self, name: str, *certificates: x509.Certificate) -> Path:
        target = self.path(name)
        target.write_bytes(b"".join(f.pem(c) for c in certificates))
        return target


@pytest.fixture(scope="module")
def certgen(tmp_path_factory: pytest.TempPathFactory) -> CertGen:
    directory = tmp_path_factory.mktemp("certgen")
    (directory / "certs").mkdir()
    (directory / "private").mkdir()
    root = cf.certgen_root(rsa_4096())
    generated = CertGen(root, cf.certgen_intermediate(root, rsa_4096()), directory, rsa_4096())
    generated.write("certs/azure-iot-test-only.root.ca.cert.pem", root.certificate)
    generated.write(
        "certs/azure-iot-test-only.intermediate.cert.pem", generated.intermediate.certificate
    )
    return generated


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("certgen-server") / "data") as server:
        assert main(["hub", "add", HUB, *server.cli_args()]) == 0
        yield server


def cli(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    code = main([*args, *server.cli_args()])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def verification_code(server: ServerProcess, capsys: pytest.CaptureFixture[str], name: str) -> str:
    code, out, err = cli(server, capsys, "certificate", "generate-code", name)
    assert code == 0, err
    return out.strip()


def test_certgen_shapes(certgen: CertGen) -> None:
    """The fixture makes what certGen.sh makes: the reject twin of a test that would pass on
    any certificates."""
    for ca in (certgen.root, certgen.intermediate):
        key = ca.certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == CERTGEN_KEY_BITS
        constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        assert (
            constraints.critical and constraints.value.ca and constraints.value.path_length is None
        )
    assert certgen.root.certificate.subject.rfc4514_string() == ROOT_SUBJECT
    assert certgen.intermediate.certificate.subject.rfc4514_string() == INTERMEDIATE_SUBJECT
    lifetime = (
        certgen.root.certificate.not_valid_after_utc - certgen.root.certificate.not_valid_before_utc
    )
    assert lifetime.days == 31  # -days 30, from a day before now


def test_root_proven_and_devices_of_root_and_intermediate_assigned(
    certgen: CertGen, server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    root_pem = certgen.path("certs/azure-iot-test-only.root.ca.cert.pem")
    assert (
        cli(server, capsys, "certificate", "upload", "certgen-root", "--cert", str(root_pem))[0]
        == 0
    )
    code = verification_code(server, capsys, "certgen-root")
    proof = certgen.verification(code, certgen.root)
    status, _, err = cli(
        server, capsys, "certificate", "verify", "certgen-root", "--cert", str(proof)
    )
    assert status == 0, err
    status, out, _ = cli(server, capsys, "certificate", "show", "certgen-root", "--json")
    assert status == 0 and json.loads(out)["properties"]["isVerified"] is True

    group = ["enrollment-group", "create", "certgen-group", "--ca-name", "certgen-root"]
    assert cli(server, capsys, *group)[0] == 0
    for name, parent in (
        ("certgen-device-of-intermediate", certgen.intermediate),  # ..._from_intermediate
        ("certgen-device-of-root", certgen.root),  # create_device_certificate
    ):
        chain, key = certgen.device(name, parent)
        status, out, err = cli(
            server,
            capsys,
            "device",
            "register",
            name,
            "--cert",
            str(chain),
            "--key",
            str(key),
            "--json",
        )
        assert status == 0, err
        state = json.loads(out)["registrationState"]
        assert (state["status"], state["assignedHub"], state["deviceId"]) == ("assigned", HUB, name)
        assert state["x509"]["enrollmentGroupId"] == "certgen-group"


def test_a_root_signed_proof_for_the_intermediate_is_refused(
    certgen: CertGen, server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """certGen.sh's create_verification_certificate always signs with the root: uploading the
    intermediate and proving it that way is the mistake users make."""
    intermediate_pem = certgen.path("certs/azure-iot-test-only.intermediate.cert.pem")
    upload = ["certificate", "upload", "certgen-intermediate", "--cert", str(intermediate_pem)]
    assert cli(server, capsys, *upload)[0] == 0
    code = verification_code(server, capsys, "certgen-intermediate")
    proof = certgen.verification(code, certgen.root)
    verify = ["certificate", "verify", "certgen-intermediate", "--cert", str(proof)]
    status, out, err = cli(server, capsys, *verify)
    assert status == 3 and out == ""
    assert err == (
        "error: VerificationSignerMismatch: the verification certificate names issuer "
        f"'{ROOT_SUBJECT}', but the uploaded certificate is '{INTERMEDIATE_SUBJECT}': sign it "
        f"with the private key of '{INTERMEDIATE_SUBJECT}'\n"
    )
    status, out, _ = cli(server, capsys, "certificate", "show", "certgen-intermediate", "--json")
    assert status == 0 and json.loads(out)["properties"]["isVerified"] is False
    # The twin: the same code, signed by the intermediate itself, verifies.
    proof = certgen.verification(code, certgen.intermediate)
    status, _, err = cli(server, capsys, *verify[:-1], str(proof))
    assert status == 0, err
