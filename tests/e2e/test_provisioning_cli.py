"""End to end: enrollments, registrations, policies and the device simulator, driven through the
CLI in-process against a real ``devprov serve`` process over TLS.

Every accepted device has a refused twin: the leaf without its intermediate, an impostor with the
same CN, a disabled group, a wrong group key, a read-only policy writing, a rotated key.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devprov.cli.client import remote_detail
from devprov.cli.device import DeviceSession, RegistrationTimeoutError
from devprov.cli.main import main
from devprov.cli.policy import parse_rights
from devprov.cli.service_client import parse_connection_string
from devprov.core.error import (
    AuthenticationError,
    InvalidDeviceCertificateError,
    InvalidInputError,
)
from devprov.core.sas import derive_device_key
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.e2e

HUB = "hub-e2e.azure-devices.net"
ROOT = "e2e-root"
GROUP = "grp-root"
DEVICE = "my-device"  # the demo PKI's device


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("provisioning") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    assert main(["ca", "demo", str(directory)]) == 0
    return directory


@pytest.fixture(scope="module")
def x509_group(server: ServerProcess, pki: Path) -> str:
    """The demo root, proven; a linked hub; a group whose caReferences names the root."""
    local = server.cli_args()
    prove = ["certificate", "prove", ROOT, "--cert", str(pki / "root.pem")]
    assert main([*prove, "--key", str(pki / "root.key"), *local]) == 0
    assert main(["hub", "add", HUB, *local]) == 0
    assert main(["enrollment-group", "create", GROUP, "--ca-name", ROOT, *local]) == 0
    return GROUP


def run(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, Any, str]:
    """Exit code, the JSON printed (whatever the exit code) and stderr."""
    code = main([*args, *server.cli_args(), "--json"])
    captured = capsys.readouterr()
    out = captured.out.strip()
    try:
        data = json.loads(out) if out else None
    except ValueError:
        data = out
    return code, data, captured.err


def register_x509(
    server: ServerProcess, capsys: pytest.CaptureFixture[str], name: str, cert: Path, key: Path
) -> tuple[int, Any, str]:
    return run(server, capsys, "device", "register", name, "--cert", str(cert), "--key", str(key))


def make_device(directory: Path, name: str, *issuer: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    signer = list(issuer) or ["--self-signed"]
    with contextlib.redirect_stdout(io.StringIO()):  # keep capsys for the commands under test
        assert main(["ca", "device", name, *signer, "--dir", str(directory)]) == 0
    return directory


def random_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


# --- X.509 enrollment groups -------------------------------------------------------------


def test_a_device_presenting_its_full_chain_is_assigned(
    server: ServerProcess, pki: Path, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    full_chain, key = pki / f"{DEVICE}-full-chain.pem", pki / f"{DEVICE}.key"
    code, operation, err = register_x509(server, capsys, DEVICE, full_chain, key)
    assert code == 0, err
    assert operation["status"] == "assigned" and operation["operationId"]
    state = operation["registrationState"]
    assert state["assignedHub"] == HUB and state["deviceId"] == DEVICE
    assert state["x509"]["enrollmentGroupId"] == x509_group


def test_the_human_output_says_where_the_device_went(
    server: ServerProcess, pki: Path, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--cert", str(pki / f"{DEVICE}-full-chain.pem"), "--key", str(pki / f"{DEVICE}.key")]
    assert main(["device", "register", DEVICE, *args, *server.cli_args()]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"assigned: '{DEVICE}' is device '{DEVICE}' on {HUB}\n")
    assert f"enrollment group '{x509_group}'" in out and "operation:   5." in out


def test_the_leaf_without_its_intermediate_is_refused(
    server: ServerProcess, pki: Path, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = register_x509(
        server, capsys, DEVICE, pki / f"{DEVICE}.pem", pki / f"{DEVICE}.key"
    )
    assert code == 4
    assert "DeviceRefused" in err and "Invalid certificate" in err and "devprov audit" in err


def test_an_encrypted_device_key_needs_its_password_file(
    server: ServerProcess, pki: Path, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    password = pki / "device-password"
    password.write_text("correct horse\n")
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            main(
                [
                    "ca",
                    "device",
                    "enc-dev",
                    "--issuer",
                    "intermediate",
                    "--dir",
                    str(pki),
                    "--password-file",
                    str(password),
                ]
            )
            == 0
        )
    full_chain, key = pki / "enc-dev-full-chain.pem", pki / "enc-dev.key"
    code, _, err = register_x509(server, capsys, "enc-dev", full_chain, key)
    assert code == 3 and "is encrypted; give its password with --key-password-file" in err
    register = ["device", "register", "enc-dev", "--cert", str(full_chain), "--key", str(key)]
    code, operation, err = run(server, capsys, *register, "--key-password-file", str(password))
    assert code == 0, err
    assert operation["registrationState"]["deviceId"] == "enc-dev"


def test_a_disabled_group_refuses_its_devices(
    server: ServerProcess, pki: Path, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    full_chain, key = pki / f"{DEVICE}-full-chain.pem", pki / f"{DEVICE}.key"
    code, group, _ = run(server, capsys, "enrollment-group", "update", x509_group, "--disabled")
    assert code == 0 and group["provisioningStatus"] == "disabled"
    assert group["attestation"]["x509"]["caReferences"]["primary"] == ROOT  # unchanged
    try:
        code, operation, _ = register_x509(server, capsys, DEVICE, full_chain, key)
        assert code == 5
        assert operation["status"] == "disabled"
        assert (
            main(
                [
                    "device",
                    "register",
                    DEVICE,
                    "--cert",
                    str(full_chain),
                    "--key",
                    str(key),
                    *server.cli_args(),
                ]
            )
            == 5
        )
        assert capsys.readouterr().out.startswith(
            f"disabled: '{DEVICE}' was not assigned: its enrollment group '{x509_group}' is disabled"
        )
    finally:
        code, group, _ = run(server, capsys, "enrollment-group", "update", x509_group, "--enabled")
    assert code == 0 and group["provisioningStatus"] == "enabled"
    assert register_x509(server, capsys, DEVICE, full_chain, key)[0] == 0


def test_an_individual_enrollment_wins_over_the_group(
    server: ServerProcess, pki: Path, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_device(pki, "win-dev", "--issuer", "intermediate")
    full_chain, key = pki / "win-dev-full-chain.pem", pki / "win-dev.key"
    code, enrollment, err = run(
        server,
        capsys,
        "enrollment",
        "create",
        "win-dev",
        "--cert",
        str(pki / "win-dev.pem"),
        "--device-id",
        "win-custom",
    )
    assert code == 0, err
    assert enrollment["registrationId"] == "win-dev" and enrollment["deviceId"] == "win-custom"
    code, operation, err = register_x509(server, capsys, "win-dev", full_chain, key)
    assert code == 0, err
    state = operation["registrationState"]
    assert state["deviceId"] == "win-custom" and "enrollmentGroupId" not in state["x509"]
    # the twin: without the individual enrollment, the group governs the same device
    assert run(server, capsys, "enrollment", "delete", "win-dev")[0] == 0
    code, operation, _ = run(
        server,
        capsys,
        "device",
        "register",
        "win-dev",
        "--cert",
        str(full_chain),
        "--key",
        str(key),
        "--force-registration",
    )
    assert code == 0
    assert operation["registrationState"]["x509"]["enrollmentGroupId"] == x509_group


def test_registration_list_show_and_delete(
    server: ServerProcess, pki: Path, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    full_chain, key = pki / f"{DEVICE}-full-chain.pem", pki / f"{DEVICE}.key"
    assert register_x509(server, capsys, DEVICE, full_chain, key)[0] == 0
    code, states, _ = run(server, capsys, "registration", "list", x509_group, "--top", "1")
    assert code == 0
    assert DEVICE in {s["registrationId"] for s in states}
    code, state, _ = run(server, capsys, "registration", "show", DEVICE)
    assert code == 0 and state["status"] == "assigned" and state["assignedHub"] == HUB
    assert run(server, capsys, "registration", "delete", DEVICE)[0] == 0
    assert run(server, capsys, "registration", "show", DEVICE)[0] == 6
    assert DEVICE not in {
        s["registrationId"] for s in run(server, capsys, "registration", "list", x509_group)[1]
    }
    assert run(server, capsys, "registration", "delete", DEVICE)[0] == 6


def test_a_signing_certificate_group(
    server: ServerProcess, pki: Path, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A group on the intermediate, uploaded inline: nearer to the device than the root's."""
    code, group, err = run(
        server,
        capsys,
        "enrollment-group",
        "create",
        "grp-inter",
        "--signing-cert",
        str(pki / "intermediate.pem"),
        "--allocation-policy",
        "static",
        "--hub",
        HUB,
        "--initial-twin",
        '{"tags": {"line": "a"}}',
        "--edge",
        "--no-reprovision",
    )
    assert code == 0, err
    signing = group["attestation"]["x509"]["signingCertificates"]["primary"]["info"]
    assert signing["subjectName"] == "CN=devprov Test Intermediate CA"
    assert group["allocationPolicy"] == "static" and group["iotHubs"] == [HUB]
    assert group["capabilities"] == {"iotEdge": True}
    assert group["initialTwin"]["tags"] == {"line": "a"}
    assert group["reprovisionPolicy"] == {"updateHubAssignment": False, "migrateDeviceData": False}
    try:
        make_device(pki, "inter-dev", "--issuer", "intermediate")
        code, operation, _ = register_x509(
            server, capsys, "inter-dev", pki / "inter-dev-full-chain.pem", pki / "inter-dev.key"
        )
        assert code == 0
        assert operation["registrationState"]["x509"]["enrollmentGroupId"] == "grp-inter"
        # an update that gives the certificate again keeps working
        code, updated, _ = run(
            server,
            capsys,
            "enrollment-group",
            "update",
            "grp-inter",
            "--signing-cert",
            str(pki / "intermediate.pem"),
            "--no-edge",
        )
        assert code == 0 and updated["capabilities"] == {"iotEdge": False}
        assert updated["allocationPolicy"] == "static"  # untouched
    finally:
        assert run(server, capsys, "enrollment-group", "delete", "grp-inter")[0] == 0
    assert run(server, capsys, "enrollment-group", "show", "grp-inter")[0] == 6


@pytest.fixture
def signing_group(server: ServerProcess, pki: Path) -> Iterator[str]:
    signing = ["--signing-cert", str(pki / "intermediate.pem"), *server.cli_args()]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["enrollment-group", "create", "grp-info", *signing]) == 0
        yield "grp-info"
        assert main(["enrollment-group", "delete", "grp-info", *server.cli_args()]) == 0


def test_updating_a_signing_certificate_group_without_the_certificate(
    server: ServerProcess, signing_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fetched record carries certificate info only; writing it back keeps the certificate."""
    code, _, err = run(server, capsys, "enrollment-group", "update", signing_group, "--disabled")
    assert code == 0, err


# --- CA references: verified, unverified, deleted --------------------------------------------


def test_a_group_on_a_verified_ca_gets_no_warning(
    server: ServerProcess, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, group, err = run(server, capsys, "enrollment-group", "show", x509_group)
    assert code == 0 and group["attestation"]["x509"]["caReferences"]["primary"] == ROOT
    assert err == ""


def test_a_ca_reference_that_cannot_admit_devices_is_told_and_kept_from_deletion(
    server: ServerProcess, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upload = ["certificate", "upload", "ref-ca", "--cert", str(pki / "intermediate.pem")]
    assert run(server, capsys, *upload)[0] == 0
    unverified = (
        "warning: CA 'ref-ca' is not verified: devices of this group are refused unless their "
        "chain reaches a verified certificate above it; verify it to admit them by it alone "
        "(devprov certificate prove ref-ca --cert CA.pem --key CA.key)\n"
    )
    code, _, err = run(
        server, capsys, "enrollment-group", "create", "grp-ref", "--ca-name", "ref-ca"
    )
    assert code == 0 and err == unverified
    code, _, err = run(server, capsys, "enrollment-group", "show", "grp-ref")
    assert code == 0 and err == unverified

    # deleting the CA the group names is refused, and changes nothing
    code, _, err = run(server, capsys, "certificate", "delete", "REF-CA")
    assert code == 7 and err.count("\n") == 1 and err.startswith("error: CertificateInUse: ")
    assert "enrollment group(s) 'grp-ref'" in err and "--force" in err
    assert run(server, capsys, "certificate", "show", "ref-ca")[0] == 0

    code, deleted, err = run(server, capsys, "certificate", "delete", "ref-ca", "--force")
    assert code == 0 and deleted == {"deleted": "ref-ca"}
    assert "warning: enrollment group(s) 'grp-ref' name 'ref-ca'" in err
    assert run(server, capsys, "certificate", "show", "ref-ca")[0] == 6
    try:
        code, _, err = run(server, capsys, "enrollment-group", "show", "grp-ref")
        assert code == 0
        assert err.startswith(
            "warning: CA 'ref-ca' is not in the certificate registry of service 'default' "
            "(deleted?): devices of this group will be refused"
        )
    finally:
        assert run(server, capsys, "enrollment-group", "delete", "grp-ref")[0] == 0


def test_a_certificate_no_group_names_is_deleted_without_force(
    server: ServerProcess, pki: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upload = ["certificate", "upload", "free-ca", "--cert", str(pki / "intermediate.pem")]
    assert run(server, capsys, *upload)[0] == 0
    code, deleted, err = run(server, capsys, "certificate", "delete", "free-ca")
    assert code == 0 and deleted == {"deleted": "free-ca"} and err == ""


# --- symmetric keys ------------------------------------------------------------------------


def test_a_symmetric_key_group_with_generated_keys(
    server: ServerProcess, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, group, err = run(
        server, capsys, "enrollment-group", "create", "grp-sym", "--symmetric-key"
    )
    assert code == 0, err
    generated = group["attestation"]["symmetricKey"]  # the PUT's answer carries the keys
    code, mechanism, _ = run(server, capsys, "enrollment-group", "keys", "grp-sym")
    assert code == 0
    keys = mechanism["symmetricKey"]
    assert keys == generated
    code, shown, _ = run(server, capsys, "enrollment-group", "show", "grp-sym")
    assert code == 0 and shown["attestation"] == {"type": "symmetricKey"}  # a GET's does not
    assert len(base64.b64decode(keys["primaryKey"])) == 32 and keys["secondaryKey"]

    code, operation, err = run(
        server, capsys, "device", "register", "sym-dev-1", "--group-key", keys["primaryKey"]
    )
    assert code == 0, err
    state = operation["registrationState"]
    assert state["assignedHub"] == HUB and state["symmetricKey"]["enrollmentGroupId"] == "grp-sym"
    device_key = derive_device_key(keys["secondaryKey"], "sym-dev-2")
    assert (
        run(server, capsys, "device", "register", "sym-dev-2", "--symmetric-key", device_key)[0]
        == 0
    )
    code, _, err = run(
        server, capsys, "device", "register", "sym-dev-3", "--group-key", random_key()
    )
    assert code == 4 and "DeviceRefused" in err

    code, states, _ = run(server, capsys, "registration", "list", "grp-sym")
    assert {"sym-dev-1", "sym-dev-2"} <= {s["registrationId"] for s in states}


def test_keys_prints_one_key_alone_for_scripts(
    server: ServerProcess, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``KEY=$(devprov enrollment-group keys G --primary)``, as the README's tour does; an X.509
    group has no key to print."""
    assert run(server, capsys, "enrollment-group", "create", "grp-one", "--symmetric-key")[0] == 0
    keys = run(server, capsys, "enrollment-group", "keys", "grp-one")[1]["symmetricKey"]
    for flag, member in (("--primary", "primaryKey"), ("--secondary", "secondaryKey")):
        assert main(["enrollment-group", "keys", "grp-one", flag, *server.cli_args()]) == 0
        assert capsys.readouterr().out == keys[member] + "\n"
    assert main(["enrollment-group", "keys", x509_group, "--primary", *server.cli_args()]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and "NoSymmetricKey" in captured.err


def test_an_update_keeps_the_symmetric_keys(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    primary = random_key()
    create = ["enrollment-group", "create", "grp-keep", "--symmetric-key", "--primary-key", primary]
    assert run(server, capsys, *create)[0] == 0
    before = run(server, capsys, "enrollment-group", "keys", "grp-keep")[1]
    assert before["symmetricKey"]["primaryKey"] == primary
    assert run(server, capsys, "enrollment-group", "update", "grp-keep", "--disabled")[0] == 0
    assert run(server, capsys, "enrollment-group", "keys", "grp-keep")[1] == before
    secondary = random_key()
    update = ["enrollment-group", "update", "grp-keep", "--secondary-key", secondary]
    assert run(server, capsys, *update)[0] == 0
    after = run(server, capsys, "enrollment-group", "keys", "grp-keep")[1]["symmetricKey"]
    assert after == {"primaryKey": primary, "secondaryKey": secondary}
    assert run(server, capsys, "enrollment-group", "delete", "grp-keep")[0] == 0


def test_a_failed_allocation_is_reported_with_its_error(
    server: ServerProcess, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    key = random_key()
    code, _, err = run(
        server,
        capsys,
        "enrollment-group",
        "create",
        "grp-hook",
        "--primary-key",
        key,
        "--allocation-policy",
        "custom",
        "--webhook-url",
        "https://127.0.0.1:9/allocate?code=hOoK-SECRET",
    )
    assert code == 0, err
    try:
        code, operation, _ = run(
            server, capsys, "device", "register", "hook-dev", "--group-key", key
        )
        assert code == 1
        assert operation["status"] == "failed"
        # The device gets DPS's generic answer; the operator the reason, the URL redacted.
        assert operation["registrationState"]["errorCode"] == 400207
        assert operation["registrationState"]["errorMessage"] == "Custom allocation failed"
        code, state, _ = run(server, capsys, "registration", "show", "hook-dev")
        assert code == 0 and state["errorCode"] == 503430
        assert "webhook https://127.0.0.1:9/allocate?<redacted> failed" in state["errorMessage"]
        code, events, _ = run(server, capsys, "audit", "--registration", "hook-dev")
        assert code == 0 and "allocate?<redacted> failed" in json.dumps(events)
        shown = json.dumps([operation, state, events]) + "".join(server.output)
        assert "hOoK-SECRET" not in shown
    finally:
        assert run(server, capsys, "enrollment-group", "delete", "grp-hook")[0] == 0


# --- individual enrollments ----------------------------------------------------------------


def test_an_individual_enrollment_with_a_self_signed_certificate(
    server: ServerProcess, x509_group: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine, impostor = make_device(tmp_path / "a", "ss-dev"), make_device(tmp_path / "b", "ss-dev")
    code, enrollment, err = run(
        server, capsys, "enrollment", "create", "ss-dev", "--cert", str(mine / "ss-dev.pem")
    )
    assert code == 0, err
    client = enrollment["attestation"]["x509"]["clientCertificates"]["primary"]["info"]
    assert client["subjectName"] == "CN=ss-dev"
    code, operation, err = register_x509(
        server, capsys, "ss-dev", mine / "ss-dev-full-chain.pem", mine / "ss-dev.key"
    )
    assert code == 0, err
    assert operation["registrationState"]["deviceId"] == "ss-dev"
    code, _, err = register_x509(
        server, capsys, "ss-dev", impostor / "ss-dev-full-chain.pem", impostor / "ss-dev.key"
    )
    assert code == 4 and "DeviceRefused" in err
    code, shown, _ = run(server, capsys, "enrollment", "show", "ss-dev")
    assert code == 0 and shown["registrationState"]["status"] == "assigned"
    ids = {e["registrationId"] for e in run(server, capsys, "enrollment", "list")[1]}
    assert "ss-dev" in ids


def test_an_individual_symmetric_key_enrollment(
    server: ServerProcess, x509_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        server,
        capsys,
        "enrollment",
        "create",
        "sk-dev",
        "--symmetric-key",
        "--device-id",
        "sk-1",
        "--allocation-policy",
        "static",
        "--hub",
        HUB,
    )
    assert code == 0, err
    keys = run(server, capsys, "enrollment", "keys", "sk-dev")[1]["symmetricKey"]
    register = ["device", "register", "sk-dev", "--symmetric-key", keys["primaryKey"]]
    code, operation, _ = run(server, capsys, *register, "--payload", '{"model": "m1"}')
    assert code == 0
    assert operation["registrationState"]["deviceId"] == "sk-1"
    assert (
        run(server, capsys, "device", "register", "sk-dev", "--symmetric-key", random_key())[0] == 4
    )


# --- listing -------------------------------------------------------------------------------


def test_list_follows_the_continuation_across_pages(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [f"page-{i}" for i in range(5)]
    for name in names:
        assert run(server, capsys, "enrollment-group", "create", name, "--symmetric-key")[0] == 0
    code, groups, _ = run(server, capsys, "enrollment-group", "list", "--top", "2")
    assert code == 0
    listed = [g["enrollmentGroupId"] for g in groups]
    assert set(names) <= set(listed) and len(listed) == len(set(listed))
    assert main(["enrollment-group", "list", "--top", "2", *server.cli_args()]) == 0
    human = capsys.readouterr().out
    assert all(f"{name}\tenabled\tsymmetric key" in human for name in names)


# --- policies --------------------------------------------------------------------------------


def test_a_read_only_policy_reads_but_cannot_write_and_rotation_revokes_its_key(
    server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, policy, err = run(server, capsys, "policy", "add", "reader", "--rights", "EnrollmentRead")
    assert code == 0, err
    assert policy["rights"] == ["EnrollmentRead"]
    old = policy["connectionString"]
    assert old.startswith(f"HostName=localhost:{server.port};SharedAccessKeyName=reader;")
    assert run(server, capsys, "enrollment-group", "list", "--connection-string", old)[0] == 0
    code, _, err = run(
        server,
        capsys,
        "enrollment-group",
        "create",
        "by-reader",
        "--symmetric-key",
        "--connection-string",
        old,
    )
    assert code == 5 and "EnrollmentWrite" in err
    # the same through the local policy name
    assert run(server, capsys, "enrollment-group", "list", "--policy", "reader")[0] == 0

    code, rotated, _ = run(server, capsys, "policy", "rotate", "reader")
    assert code == 0 and rotated["primaryKey"] != policy["primaryKey"]
    assert rotated["secondaryKey"] == policy["secondaryKey"]
    assert run(server, capsys, "enrollment-group", "list", "--connection-string", old)[0] == 4
    new = rotated["connectionString"]
    assert run(server, capsys, "enrollment-group", "list", "--connection-string", new)[0] == 0

    listed = {p["name"] for p in run(server, capsys, "policy", "list")[1]}
    assert {"provisioningserviceowner", "reader"} <= listed
    assert run(server, capsys, "policy", "remove", "reader")[0] == 0
    assert run(server, capsys, "enrollment-group", "list", "--connection-string", new)[0] == 4
    assert run(server, capsys, "policy", "remove", "provisioningserviceowner")[0] == 5


# --- arguments, no server needed -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["enrollment-group", "create", "g"],
            "an attestation is required: --ca-name, --signing-cert or --symmetric-key",
            id="fail/group-without-attestation",
        ),
        pytest.param(
            ["enrollment-group", "create", "g", "--ca-name", "r", "--symmetric-key"],
            "choose one kind of attestation",
            id="fail/group-two-attestations",
        ),
        pytest.param(
            ["enrollment-group", "create", "g", "--secondary-ca-name", "r"],
            "--secondary-ca-name needs --ca-name",
            id="fail/group-secondary-only",
        ),
        pytest.param(
            ["enrollment", "create", "d"],
            "an attestation is required: --cert or --symmetric-key",
            id="fail/individual-without-attestation",
        ),
        pytest.param(
            ["enrollment-group", "create", "g", "--symmetric-key", "--webhook-url", "https://h"],
            "--webhook-url and --webhook-api-version need --allocation-policy custom",
            id="fail/webhook-without-custom",
        ),
        pytest.param(
            ["device", "register", "d"],
            "give exactly one of --cert (with --key), --symmetric-key, --group-key",
            id="fail/device-without-credentials",
        ),
        pytest.param(
            ["device", "register", "d", "--cert", "c.pem"],
            "--cert needs --key",
            id="fail/device-cert-without-key",
        ),
        pytest.param(
            ["device", "register", "d", "--symmetric-key", "k", "--group-key", "k"],
            "give exactly one of",
            id="fail/device-two-credentials",
        ),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(
    argv: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("c.pem").write_text("files named are read first; this one only has to exist\n")
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--data-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_initial_twin_is_invalid_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["enrollment-group", "create", "g", "--symmetric-key", "--initial-twin", "{nope"]
    assert main([*argv, "--data-dir", str(tmp_path)]) == 3
    assert "--initial-twin is not valid JSON" in capsys.readouterr().err


def test_service_commands_need_a_data_dir_or_a_connection_string(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing-here"
    assert main(["enrollment-group", "list", "--data-dir", str(missing)]) == 6
    assert "DataDirectoryNotFound" in capsys.readouterr().err
    argv = ["enrollment-group", "list", "--connection-string", "HostName=h;SharedAccessKey=k"]
    assert main([*argv, "--data-dir", str(missing)]) == 3
    assert "missing: sharedaccesskeyname" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "HostName=localhost:8443;SharedAccessKeyName=p;SharedAccessKey=a2V5PQ==",
            ("localhost:8443", "p", "a2V5PQ=="),
            id="ok/padded-key",
        ),
        pytest.param(
            "hostname=h ; sharedaccesskeyname=p;sharedaccesskey=k;",
            ("h", "p", "k"),
            id="ok/any-case-and-spaces",
        ),
    ],
)
def test_parse_connection_string(text: str, expected: tuple[str, str, str]) -> None:
    assert parse_connection_string(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("HostName=h;SharedAccessKeyName=p", id="fail/no-key"),
        pytest.param("HostName=h;SharedAccessKeyName=p;SharedAccessKey", id="fail/not-name-value"),
        pytest.param("", id="fail/empty"),
    ],
)
def test_parse_connection_string_refuses(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_connection_string(text)


def test_parse_rights_spells_rights_as_dps() -> None:
    assert parse_rights(" enrollmentread, EnrollmentWrite,,") == frozenset(
        {"EnrollmentRead", "EnrollmentWrite"}
    )
    assert parse_rights("Nope") == frozenset({"Nope"})  # for the use case to refuse


# --- the device's polling, against a scripted device API ----------------------------------


class Script:
    """Answers register and poll requests from a list, recording what was asked and slept."""

    def __init__(self, answers: list[tuple[int, dict[str, Any], dict[str, str]]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []
        self.slept: list[float] = []
        self.now = 0.0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body, headers = self.answers.pop(0)
        return httpx.Response(status, json=body, headers=headers)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def session(self) -> DeviceSession:
        http = httpx.Client(base_url="https://dps.test", transport=httpx.MockTransport(self.handle))
        return DeviceSession(http, "0ne0000ABCD", "dev-1", sleep=self.sleep, clock=lambda: self.now)


ASSIGNING = {"operationId": "5.op", "status": "assigning"}
ASSIGNED = {
    "operationId": "5.op",
    "status": "assigned",
    "registrationState": {"assignedHub": HUB, "deviceId": "dev-1", "status": "assigned"},
}


def test_the_device_polls_after_each_retry_after_until_assigned() -> None:
    script = Script(
        [
            (202, ASSIGNING, {"Retry-After": "3"}),
            (202, ASSIGNING, {}),  # no Retry-After: the SDKs' 2 s
            (200, ASSIGNED, {}),
        ]
    )
    operation = script.session().register({"registrationId": "dev-1"}, force=True, timeout=30)
    assert operation == ASSIGNED
    assert script.slept == [3.0, 2.0]
    register, *polls = script.requests
    assert register.method == "PUT"
    assert register.url.path == "/0ne0000ABCD/registrations/dev-1/register"
    assert register.url.params["forceRegistration"] == "true"
    assert [p.url.path for p in polls] == ["/0ne0000ABCD/registrations/dev-1/operations/5.op"] * 2


def test_the_device_gives_up_after_its_timeout() -> None:
    script = Script([(202, ASSIGNING, {"Retry-After": "4"})] * 5)
    with pytest.raises(RegistrationTimeoutError, match="still assigning after 10 s"):
        script.session().register({}, force=False, timeout=10)
    assert script.slept == [4.0, 4.0, 2.0]  # the last wait is cut to the time left


def test_a_refused_device_is_an_authentication_error() -> None:
    """DPS's errorCode names the error when devprov knows it; otherwise the number stays in the
    message. Both are authentication failures (exit 4)."""
    refused = {"errorCode": 401002, "trackingId": "t", "message": "Invalid certificate"}
    script = Script([(401, refused, {})])
    with pytest.raises(InvalidDeviceCertificateError, match="Invalid certificate") as known:
        script.session().register({}, force=False, timeout=10)
    assert remote_detail(known.value) == "401002: Invalid certificate"
    unknown = {"errorCode": 401999, "trackingId": "t", "message": "Go away"}
    with pytest.raises(AuthenticationError) as other:
        Script([(401, unknown, {})]).session().register({}, force=False, timeout=10)
    assert type(other.value) is AuthenticationError
    assert remote_detail(other.value) == other.value.message == "401999: Go away"
