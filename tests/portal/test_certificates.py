"""The certificate pages in process: the list, adding, the proof-of-possession flow with devprov's
own CA tooling and with openssl, every refused verification naming its check, stale pages,
deleting with the groups that use a certificate, and HTML in a certificate shown as text."""

from __future__ import annotations

import html
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from devprov.bootstrap import Container
from devprov.core.certificate import MAX_ENCODED_CERTIFICATE_BYTES, format_name
from devprov.core.enrollment import EnrollmentKind
from tests import factory as f
from tests.portal.conftest import csrf_of

LIST = "/portal/s/default/certificates"
ADD = f"{LIST}/add"
_ETAG = re.compile(r'name="etag" value="([^"]+)"')
_CODE = re.compile(r'<code id="verification-code">([0-9A-F]+)</code>')


def pre(page: str, id: str) -> str:
    match = re.search(rf'<pre id="{id}">(.*?)</pre>', page, re.DOTALL)
    assert match, f"the page has no <pre id={id}>"
    return html.unescape(match.group(1))


def etag_of(page: str) -> str:
    match = _ETAG.search(page)
    assert match, "the page has no form with an etag"
    return match.group(1)


def code_of(page: str) -> str:
    match = _CODE.search(page)
    assert match, "the page shows no verification code"
    return match.group(1)


def status_of(page: str) -> str:
    match = re.search(r'<dd id="status"[^>]*>(.*?)</dd>', page, re.DOTALL)
    assert match, "the page has no #status"
    return " ".join(re.sub(r"<[^>]+>", " ", match.group(1)).split())


def add(
    client: TestClient,
    name: str,
    data: bytes,
    *,
    verified: bool = False,
    filename: str = "ca.pem",
):
    token = csrf_of(client.get(ADD).text)
    fields = {"csrf": token, "name": name} | ({"verified": "on"} if verified else {})
    return client.post(ADD, data=fields, files={"file": (filename, data)})


def added(client: TestClient, ca: f.Ca, name: str = "root", **kw) -> str:
    answer = add(client, name, ca.pem, **kw)
    assert answer.status_code == 303, answer.text
    return client.get(f"{LIST}/{name}").text


def post_form(client: TestClient, page: str, action: str, **files: bytes):
    data = {"csrf": csrf_of(page), "etag": etag_of(page)}
    uploads = {k: ("proof.pem", v) for k, v in files.items()} or None
    return client.post(action, data=data, files=uploads)


def with_code(client: TestClient, name: str = "root") -> str:
    page = client.get(f"{LIST}/{name}").text
    answer = post_form(client, page, f"{LIST}/{name}/code")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{LIST}/{name}?code=1"
    return client.get(answer.headers["location"]).text


# --- the list and adding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verified", "status"),
    [
        pytest.param(False, "Unverified", id="ok/unverified"),
        pytest.param(True, "Verified self-attested", id="ok/verified-on-upload"),
    ],
)
def test_add(signed_in: TestClient, verified: bool, status: str) -> None:
    ca = f.root("Portal Root")
    answer = add(signed_in, "my-root", ca.pem, verified=verified)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{LIST}/my-root?added=1"
    page = signed_in.get(answer.headers["location"]).text
    assert "Certificate my-root added." in page
    assert status_of(page).startswith(status)
    listing = signed_in.get(LIST).text
    thumbprint = ca.certificate.fingerprint(hashes.SHA1()).hex().upper()
    assert f'href="{LIST}/my-root">my-root</a>' in listing
    assert "CN=Portal Root" in listing and thumbprint in listing
    assert "Certificates of default" in listing


def test_add_accepts_der(signed_in: TestClient) -> None:
    assert add(signed_in, "der-root", f.root().der, filename="ca.cer").status_code == 303


def _expired() -> bytes:
    return f.raw_certificate(
        not_before=f.NOW - timedelta(days=9), not_after=f.NOW - timedelta(days=1)
    ).pem


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        pytest.param("c", lambda: b"", 400, "Choose the CA certificate's file", id="fail/empty"),
        pytest.param("", lambda: f.root().pem, 400, "Enter a name", id="fail/no-name"),
        pytest.param("c", lambda: b"garbage", 400, "MalformedCertificate", id="fail/garbage"),
        pytest.param(
            "c", lambda: f.root().key_pem(), 400, "the data is a private key", id="fail/key"
        ),
        pytest.param(
            "c", lambda: f.device(f.root()).pem, 400, "not a CA certificate", id="fail/non-ca"
        ),
        pytest.param("c", _expired, 400, "CertificateExpired", id="fail/expired"),
        pytest.param(
            "c",
            lambda: b" " * (MAX_ENCODED_CERTIFICATE_BYTES + 1),
            413,
            f"the limit is {MAX_ENCODED_CERTIFICATE_BYTES} bytes",
            id="fail/too-big",
        ),
        pytest.param(
            "<b>x</b>", lambda: f.root().pem, 400, "may contain only letters", id="fail/html-name"
        ),
    ],
)
def test_add_refuses_precisely(
    signed_in: TestClient,
    container: Container,
    name: str,
    data: Callable[[], bytes],
    status: int,
    message: str,
) -> None:
    answer = add(signed_in, name, data())
    assert answer.status_code == status
    assert message in html.unescape(answer.text)
    assert f'value="{html.escape(name)}"' in answer.text  # what was typed is kept
    assert "<b>x</b>" not in answer.text
    assert container.registry.list("default") == []


def test_add_refuses_a_name_that_exists(signed_in: TestClient, container: Container) -> None:
    first = f.root("First")
    added(signed_in, first, "root")
    answer = add(signed_in, "ROOT", f.root("Second").pem)
    assert answer.status_code == 409
    assert "a certificate named 'root' already exists" in html.unescape(answer.text)
    (record,) = container.registry.list("default")
    assert record.der == first.der


def test_the_list_of_an_unknown_service_is_404_in_the_page(signed_in: TestClient) -> None:
    for path in ("/portal/s/nope/certificates", "/portal/s/nope/certificates/add"):
        answer = signed_in.get(path)
        assert answer.status_code == 404
        assert "provisioning service &#39;nope&#39; does not exist" in answer.text


def test_an_unknown_certificate_is_404_in_the_page(signed_in: TestClient) -> None:
    answer = signed_in.get(f"{LIST}/missing")
    assert answer.status_code == 404
    assert "certificate &#39;missing&#39; does not exist" in answer.text
    assert "CertificateNotFound" in answer.text


def test_html_in_a_subject_is_shown_as_text(signed_in: TestClient) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "<script>alert(1)</script>")])
    ca = f.raw_certificate(subject=subject)
    added(signed_in, ca, "odd")
    shown = html.escape(format_name(ca.certificate.subject), quote=False)
    assert "&lt;script\\&gt;alert(1)" in shown
    for page in (signed_in.get(LIST).text, signed_in.get(f"{LIST}/odd").text):
        assert "<script>alert(1)" not in page
        assert shown in page


def test_the_page_shows_the_certificate_facts(signed_in: TestClient) -> None:
    ca = f.root("Facts Root", key=f.rsa_key(), days=10)
    page = added(signed_in, ca)
    facts = dict(re.findall(r"<dt>([^<]+)</dt>\s*<dd[^>]*>(.*?)</dd>", page, re.DOTALL))
    for label in ("Subject", "Issuer", "Thumbprint", "SHA-256 thumbprint", "Serial"):
        assert label in facts
    assert "RSA 2048" in facts["Key"]
    assert facts["CA"] == "Yes (CA:TRUE, no path length limit)"
    assert format(ca.certificate.serial_number, "X") in facts["Serial"]
    assert 'class="badge warn">Expires in 10 days<' in page
    assert 'class="badge warn">Expires in 10 days<' in signed_in.get(LIST).text


# --- proof of possession -----------------------------------------------------------------------


def test_generate_code_shows_it_with_its_expiry_and_the_commands(signed_in: TestClient) -> None:
    added(signed_in, f.root())
    page = with_code(signed_in)
    code = code_of(page)
    assert "Verification code generated." in page
    assert re.search(r"\(in (60|59) minutes\)", page)
    assert pre(page, "command-devprov") == (
        f"devprov ca verification {code} --issuer-cert pki/ca.pem --issuer-key pki/ca.key "
        "--out pki/proof.pem"
    )
    assert f"-subj /CN={code}" in pre(page, "command-openssl")
    assert 'data-copy="command-devprov"' in page and 'data-copy="command-openssl"' in page
    for action in ("code", "verify"):
        assert f'action="{LIST}/root/{action}"' in page
    assert f'href="{LIST}/root/delete">Delete certificate</a>' in page


def _pki(directory: Path, ca: f.Ca) -> None:
    (directory / "pki").mkdir()
    (directory / "pki" / "ca.pem").write_bytes(ca.pem)
    (directory / "pki" / "ca.key").write_bytes(ca.key_pem())


def _run_devprov(page: str, directory: Path) -> None:
    argv = shlex.split(pre(page, "command-devprov"))
    assert argv[0] == "devprov"
    program = Path(sys.executable).with_name("devprov")
    subprocess.run([str(program), *argv[1:]], cwd=directory, check=True, capture_output=True)


def _run_openssl(page: str, directory: Path) -> None:
    for line in pre(page, "command-openssl").splitlines():
        argv = shlex.split(line)
        assert argv[0] == "openssl"
        subprocess.run(argv, cwd=directory, check=True, capture_output=True)


@pytest.mark.parametrize(
    "sign",
    [pytest.param(_run_devprov, id="ok/devprov"), pytest.param(_run_openssl, id="ok/openssl")],
)
def test_verify_with_the_printed_commands(
    signed_in: TestClient, tmp_path: Path, sign: Callable[[str, Path], None]
) -> None:
    ca = f.root("Proved Root")
    added(signed_in, ca)
    page = with_code(signed_in)
    _pki(tmp_path, ca)
    sign(page, tmp_path)
    proof = (tmp_path / "pki" / "proof.pem").read_bytes()
    answer = post_form(signed_in, page, f"{LIST}/root/verify", file=proof)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{LIST}/root?verified=1"
    verified = signed_in.get(answer.headers["location"]).text
    assert "Verified." in verified
    assert status_of(verified).startswith("Verified proof-of-possession since ")
    assert "Generate verification code" not in verified
    assert (
        "Verified" in signed_in.get(LIST).text and "proof-of-possession" in signed_in.get(LIST).text
    )


def _proof(ca: f.Ca, page: str) -> bytes:
    return f.pem(f.verification(ca, code_of(page)))


@pytest.mark.parametrize(
    ("make", "check", "code"),
    [
        pytest.param(
            lambda ca, page: f.pem(f.verification(f.root("Test Root"), code_of(page))),
            "was not signed by this certificate's key.",
            "VerificationSignerMismatch",
            id="fail/wrong-signer",
        ),
        pytest.param(
            lambda ca, page: f.pem(f.verification(ca, "0" * 48)),
            "subject CN is not the current verification code.",
            "VerificationCodeMismatch",
            id="fail/wrong-cn",
        ),
        pytest.param(
            lambda ca, page: f.pem(
                f.verification(ca, code_of(page), now=f.NOW - timedelta(days=3), days=1)
            ),
            "The verification certificate has expired.",
            "VerificationCertificateExpired",
            id="fail/expired-verification-certificate",
        ),
        pytest.param(
            lambda ca, page: b"garbage",
            "The file is not one readable certificate.",
            "MalformedVerificationCertificate",
            id="fail/malformed",
        ),
        pytest.param(
            lambda ca, page: ca.pem + _proof(ca, page),
            "The file is not one readable certificate.",
            "MalformedVerificationCertificate",
            id="fail/two-certificates",
        ),
    ],
)
def test_a_refused_verification_names_the_check(
    signed_in: TestClient,
    container: Container,
    make: Callable[[f.Ca, str], bytes],
    check: str,
    code: str,
) -> None:
    ca = f.root("Test Root")
    added(signed_in, ca)
    page = with_code(signed_in)
    answer = post_form(signed_in, page, f"{LIST}/root/verify", file=make(ca, page))
    assert answer.status_code == 400
    assert check in html.unescape(answer.text) and code in answer.text
    # the registry's reason follows as a sentence of its own
    assert re.search(re.escape(check) + r"\s+[A-Z]", html.unescape(answer.text))
    assert status_of(answer.text) == "Unverified"
    assert not container.registry.get("default", "root").is_verified
    # Its twin: the right proof still verifies.
    good = post_form(signed_in, answer.text, f"{LIST}/root/verify", file=_proof(ca, page))
    assert good.status_code == 303


def test_verify_without_a_code_names_the_check(signed_in: TestClient) -> None:
    ca = f.root()
    page = added(signed_in, ca)
    proof = f.pem(f.verification(ca, "A" * 48))
    answer = post_form(signed_in, page, f"{LIST}/root/verify", file=proof)
    assert answer.status_code == 400
    assert "No verification code was generated for this certificate." in answer.text
    assert status_of(answer.text) == "Unverified"


def test_a_superseded_code_names_the_check(signed_in: TestClient) -> None:
    ca = f.root()
    added(signed_in, ca)
    old = with_code(signed_in)
    new = with_code(signed_in)
    answer = post_form(signed_in, new, f"{LIST}/root/verify", file=_proof(ca, old))
    assert answer.status_code == 400
    assert "for an earlier code, which a newer code replaced." in answer.text


def test_a_stale_page_changes_nothing(signed_in: TestClient, container: Container) -> None:
    added(signed_in, f.root())
    stale = signed_in.get(f"{LIST}/root").text
    container.registry.generate_code(
        "default", "root", if_match="*", actor="elsewhere"
    )  # someone else, meanwhile
    current = container.registry.get("default", "root")
    for action in ("code", "verify", "delete"):
        answer = post_form(signed_in, stale, f"{LIST}/root/{action}", file=b"x")
        assert answer.status_code == 412, action
        assert "changed after this page was loaded" in answer.text
        assert current.etag in answer.text  # the page now carries the current etag
        assert container.registry.get("default", "root") == current
    fresh = signed_in.get(f"{LIST}/root").text
    assert post_form(signed_in, fresh, f"{LIST}/root/code").status_code == 303


def test_the_status_endpoint(signed_in: TestClient, container: Container) -> None:
    added(signed_in, f.root())
    page = signed_in.get(f"{LIST}/root").text
    assert f'data-status-url="{LIST}/root/status"' in page
    assert signed_in.get(f"{LIST}/root/status").json() == {
        "status": "Unverified",
        "method": None,
        "verifiedAt": None,
    }
    record = container.registry.get("default", "root")
    container.registry.upload(
        "default", "root", record.der, is_verified=True, if_match="*", actor="cli"
    )
    answer = signed_in.get(f"{LIST}/root/status").json()
    assert (answer["status"], answer["method"]) == ("Verified", "self-attested")


# --- deleting ----------------------------------------------------------------------------------


def _group(container: Container, id: str, x509: dict[str, object]) -> None:
    doc = {"enrollmentGroupId": id, "attestation": {"type": "x509", "x509": x509}}
    container.enrollments.create_or_update(
        "default", EnrollmentKind.GROUP, id, doc, if_match=None, actor="test"
    )


def test_delete_confirmation_names_the_groups(signed_in: TestClient, container: Container) -> None:
    ca = f.root()
    added(signed_in, ca)
    added(signed_in, f.root("Other"), "other")
    _group(container, "by-name", {"caReferences": {"primary": "root"}})
    _group(
        container, "inline", {"signingCertificates": {"primary": {"certificate": ca.pem.decode()}}}
    )
    _group(container, "unrelated", {"caReferences": {"primary": "other"}})
    page = signed_in.get(f"{LIST}/root/delete").text
    assert "2 enrollment groups use this certificate." in page
    assert '<a href="/portal/s/default/groups/by-name">by-name</a>' in page
    assert '<a href="/portal/s/default/groups/inline">inline</a>' in page
    assert "unrelated" not in page
    assert "refuse their devices" in page
    assert 'class="danger">Delete certificate</button>' in page
    assert f'action="{LIST}/root/delete"' in page
    lonely = signed_in.get(f"{LIST}/other/delete").text
    assert "1 enrollment group uses this certificate." in lonely and "unrelated" in lonely


def test_delete_removes_the_certificate(signed_in: TestClient, container: Container) -> None:
    added(signed_in, f.root())
    page = signed_in.get(f"{LIST}/root/delete").text
    assert "No enrollment group uses this certificate." in page
    answer = post_form(signed_in, page, f"{LIST}/root/delete")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{LIST}?deleted=root"
    assert "Certificate root deleted." in signed_in.get(answer.headers["location"]).text
    assert container.registry.list("default") == []
    assert signed_in.get(f"{LIST}/root").status_code == 404
