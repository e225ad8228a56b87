"""The Azure CLI's recorded session against the real DPS, replayed against a real devprov server.

docs/management-answers.md describes the session (Azure/azure-cli's
``test_dps_certificate_lifecycle`` recording: ``az`` 2.36, api-version 2021-10-15) and its
answers field by field. The requests are written here as data, as the recording shows them
(method, path shape, If-Match, body shape and encoding), and sent with certificates this test
makes; every answer is checked against the table: member names and order, types, formats and
nulls. Each way a CLI turns a file into the body (az 2.36 and the later extension, a PEM file and
a binary ``.cer``) runs the whole session on a provisioning service of its own, then the refused
twins of its encodings, which must change nothing.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from cryptography import x509

from devprov.cli.main import main
from devprov.core.certificate import describe_certificate
from tests import factory as f
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.interop

SUBSCRIPTION, GROUP = "00000000-0000-0000-0000-000000000000", "clitest.rg000001"
API_VERSION = "2021-10-15"
# What every recorded request carried besides its own headers.
CLI_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": "AZURECLI/2.36.0 azsdk-python-mgmt-iothubprovisioningservices/1.1.0 "
    "Python/3.8.3 (Windows-10-10.0.22000-SP0)",
}

# --- how each CLI turns a file into the body (docs/management-answers.md#what-the-azure-cli-sends)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text(data: bytes) -> str:
    """The extension's open_certificate: the text if UTF-8, else base64; trailing space cut."""
    try:
        return data.decode("utf-8").rstrip()
    except UnicodeDecodeError:
        return _b64(data).rstrip()


def _az_236_upload(file: bytes, verified: bool | None) -> dict[str, Any]:
    # base64 of the whole file, at the top level; isVerified only when given
    body: dict[str, Any] = {"certificate": _b64(file)}
    return body if verified is None else body | {"isVerified": verified}


def _extension_upload(file: bytes, verified: bool | None) -> dict[str, Any]:
    # the text as UTF-8 bytes in the bytes-typed properties.certificate: the SDK base64s it
    properties: dict[str, Any] = {"certificate": _b64(_text(file).encode("utf-8"))}
    if verified is not None:
        properties["isVerified"] = verified
    return {"properties": properties}


@dataclass(frozen=True)
class Cli:
    name: str
    file: Callable[[x509.Certificate], bytes]  # the .cer file on disk
    upload: Callable[[bytes, bool | None], dict[str, Any]]
    proof: Callable[[bytes], dict[str, Any]]
    deeper: Callable[[bytes], bytes]  # the same file one base64 deeper than this CLI sends it


def _pem_crlf(certificate: x509.Certificate) -> bytes:
    return f.pem(certificate).replace(b"\n", b"\r\n")  # written on Windows, as recorded


def _deeper_pem(file: bytes) -> bytes:
    return base64.b64encode(file)  # base64 of base64 of PEM


def _deeper_der(file: bytes) -> bytes:
    return base64.b64encode(base64.b64encode(file))  # base64 nested three times once sent


CLIS = [
    Cli(
        "az-2.36-pem",
        _pem_crlf,
        _az_236_upload,
        lambda proof: {"certificate": _b64(proof)},
        _deeper_pem,
    ),
    Cli(
        "az-2.36-binary-cer",
        f.der,
        _az_236_upload,
        lambda proof: {"certificate": _b64(proof)},
        _deeper_der,
    ),
    Cli(
        "extension-pem",
        _pem_crlf,
        _extension_upload,
        lambda proof: {"certificate": _text(proof)},
        _deeper_pem,
    ),
    Cli(
        "extension-binary-cer",
        f.der,
        _extension_upload,
        lambda proof: {"certificate": _text(proof)},
        _deeper_der,
    ),
]

# --- the recorded session ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    command: str  # the az command that sent it
    method: str
    path: str  # below .../provisioningServices/{dps}/certificates
    if_match: str | None  # whose current etag goes in If-Match, bare
    body: str | None  # "upload", "upload-verified", "proof"
    answer: str  # "list", "resource", "code", "empty"
    names: tuple[str, ...] = ()  # the list's names, or the resource's name
    verified: bool = False


CERT, VERIFIED = "certificate000003", "verified-certificate-000004"
SESSION = [
    Step("certificate create", "GET", "", None, None, "list"),
    Step("certificate create", "PUT", f"/{CERT}", None, "upload", "resource", (CERT,)),
    Step("certificate create --verified", "GET", "", None, None, "list", (CERT,)),
    Step(
        "certificate create --verified",
        "PUT",
        f"/{VERIFIED}",
        None,
        "upload-verified",
        "resource",
        (VERIFIED,),
        verified=True,
    ),
    Step("certificate list", "GET", "", None, None, "list", (CERT, VERIFIED)),
    Step("certificate show", "GET", f"/{CERT}", None, None, "resource", (CERT,)),
    Step("certificate update --etag", "GET", "", None, None, "list", (CERT, VERIFIED)),
    Step("certificate update --etag", "PUT", f"/{CERT}", CERT, "upload", "resource", (CERT,)),
    Step(
        "certificate generate-verification-code --etag",
        "POST",
        f"/{CERT}/generateVerificationCode",
        CERT,
        None,
        "code",
        (CERT,),
    ),
    Step(
        "certificate verify --etag",
        "POST",
        f"/{CERT}/verify",
        CERT,
        "proof",
        "resource",
        (CERT,),
        verified=True,
    ),
    Step("certificate delete --etag", "DELETE", f"/{CERT}", CERT, None, "empty"),
    Step("certificate delete --etag", "DELETE", f"/{VERIFIED}", VERIFIED, None, "empty"),
]

# --- the answers' formats (docs/management-answers.md#certificate-answers-as-recorded) ----------

RFC_1123 = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT"
)
QUOTED_GUID = re.compile(r'"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"')
PROPERTIES = ["subject", "expiry", "thumbprint", "isVerified", "created", "updated", "certificate"]


def check_resource(
    answer: Any,
    *,
    service: str,
    name: str,
    ca: f.Ca,
    verified: bool,
    code: bool = False,
) -> None:
    assert list(answer) == ["properties", "id", "name", "type", "etag"]
    assert answer["id"] == (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Devices"
        f"/provisioningServices/{service}/certificates/{name}"
    )
    assert answer["name"] == name
    assert answer["type"] == "Microsoft.Devices/provisioningServices/Certificates"
    assert QUOTED_GUID.fullmatch(base64.b64decode(answer["etag"], validate=True).decode("ascii"))
    props = answer["properties"]
    assert list(props) == (["verificationCode"] if code else []) + PROPERTIES
    facts = describe_certificate(ca.certificate)
    assert props["subject"] == facts.common_name and not props["subject"].startswith("CN=")
    for field in ("expiry", "created", "updated"):
        assert isinstance(props[field], str) and RFC_1123.fullmatch(props[field]), props[field]
    assert parsedate_to_datetime(props["expiry"]) == facts.not_after
    assert parsedate_to_datetime(props["created"]) <= parsedate_to_datetime(props["updated"])
    assert re.fullmatch(r"[0-9A-F]{40}", props["thumbprint"]) and props["thumbprint"] == (
        facts.thumbprint
    )
    assert props["isVerified"] is verified
    if code:
        assert re.fullmatch(r"[0-9A-F]{48}", props["verificationCode"])
        assert base64.b64decode(props["certificate"], validate=True) == ca.pem
    else:
        assert props["certificate"] is None


class Session:
    """One CLI's run of the recorded session on its own provisioning service."""

    def __init__(self, server: ServerProcess, cli: Cli, http: httpx.Client) -> None:
        self.server, self.cli, self.http = server, cli, http
        self.service = f"dps-{re.sub(r'[^a-z0-9]+', '-', cli.name)}-{secrets.token_hex(3)}"
        assert main(["service", "create", self.service, *server.cli_args()]) == 0
        self.ca = f.root(f"TESTCERT{secrets.token_hex(8)}", now=datetime.now(UTC))
        self.etags: dict[str, str] = {}

    @property
    def base(self) -> str:
        return (
            f"{self.server.url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers"
            f"/Microsoft.Devices/provisioningServices/{self.service}/certificates"
        )

    def request(self, method: str, path: str, *, if_match: str | None, body: Any) -> httpx.Response:
        headers = dict(CLI_HEADERS)
        if if_match is not None:
            headers["If-Match"] = if_match  # the CLI's SDK sends it bare
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body).encode()
        elif method in ("POST", "DELETE"):
            headers["Content-Length"] = "0"  # as recorded for generateVerificationCode and delete
        request = self.http.build_request(
            method,
            f"{self.base}{path}",
            params={"api-version": API_VERSION},
            headers=headers,
            content=content,
        )
        assert request.headers.get_list("Content-Length") in ([], [str(len(content or b""))])
        return self.http.send(request)

    def body(self, kind: str | None, proof: bytes | None) -> Any:
        file = self.cli.file(self.ca.certificate)
        if kind == "upload":
            return self.cli.upload(file, None)
        if kind == "upload-verified":
            return self.cli.upload(file, True)
        if kind == "proof":
            assert proof is not None
            return self.cli.proof(proof)
        return None

    def run(self) -> None:
        proof: bytes | None = None
        for step in SESSION:
            etag = self.etags.get(step.if_match) if step.if_match else None
            response = self.request(
                step.method, step.path, if_match=etag, body=self.body(step.body, proof)
            )
            assert response.status_code == 200, (step, response.text)
            if step.answer == "empty":
                assert response.content == b""
                continue
            answer = response.json()
            if step.answer == "list":
                assert list(answer) == ["value"]
                assert [item["name"] for item in answer["value"]] == list(step.names)
                for item in answer["value"]:
                    self.check(item, item["name"], verified=item["name"] == VERIFIED)
                continue
            (name,) = step.names
            before = self.etags.get(name)
            self.check(answer, name, verified=step.verified, code=step.answer == "code")
            if step.method == "GET":
                assert answer["etag"] == before
            else:
                assert answer["etag"] != before
            self.etags[name] = answer["etag"]
            if step.answer == "code":
                code = answer["properties"]["verificationCode"]
                certificate = f.verification(self.ca, code, now=datetime.now(UTC))
                proof = self.cli.file(certificate)

    def check(self, answer: Any, name: str, *, verified: bool, code: bool = False) -> None:
        check_resource(
            answer, service=self.service, name=name, ca=self.ca, verified=verified, code=code
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("recorded") / "data") as server:
        yield server


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(verify=context, headers=headers) as client:
        yield client


@pytest.mark.parametrize("cli", CLIS, ids=[c.name for c in CLIS])
def test_the_recorded_session(server: ServerProcess, http: httpx.Client, cli: Cli) -> None:
    session = Session(server, cli, http)
    session.run()
    assert session.request("GET", "", if_match=None, body=None).json() == {"value": []}


@pytest.mark.parametrize("cli", CLIS, ids=[c.name for c in CLIS])
def test_refused_encodings_change_nothing(
    server: ServerProcess, http: httpx.Client, cli: Cli
) -> None:
    """The reject twins: one base64 deeper, or two certificates, in the CLI's own encoding."""
    session = Session(server, cli, http)
    file = cli.file(session.ca.certificate)
    second = cli.file(f.root("Second", now=datetime.now(UTC)).certificate)
    refusals = [
        (cli.upload(cli.deeper(file), None), "MalformedCertificate"),
        (cli.upload(file + second, None), "TooManyCertificatesInUpload"),
    ]
    for body, code in refusals:
        response = session.request("PUT", f"/{CERT}", if_match=None, body=body)
        assert response.status_code == 400 and response.json()["error"]["code"] == code
    assert session.request("GET", "", if_match=None, body=None).json() == {"value": []}

    created = session.request("PUT", f"/{CERT}", if_match=None, body=cli.upload(file, None))
    coded = session.request(
        "POST", f"/{CERT}/generateVerificationCode", if_match=created.json()["etag"], body=None
    ).json()
    code = coded["properties"]["verificationCode"]
    proof = cli.file(f.verification(session.ca, code, now=datetime.now(UTC)))
    # one base64 deeper than any CLI sends the proof: az 2.36's form of the deeper file
    deeper_proof = {"certificate": _b64(cli.deeper(proof))}
    refused = session.request("POST", f"/{CERT}/verify", if_match=coded["etag"], body=deeper_proof)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "MalformedVerificationCertificate"
    unchanged = session.request("GET", f"/{CERT}", if_match=None, body=None).json()
    session.check(unchanged, CERT, verified=False)
    assert unchanged["etag"] == coded["etag"]
