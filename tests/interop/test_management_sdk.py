"""Microsoft's management SDK (azure-mgmt-iothubprovisioningservices) against a real devprov
server over TLS: every ``dps_certificate`` call, as an operator would make it."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from azure.core import MatchConditions
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.mgmt.iothubprovisioningservices import IotDpsClient
from azure.mgmt.iothubprovisioningservices.models import (
    CertificateProperties,
    CertificateResponse,
    VerificationCodeRequest,
)

from tests import factory as f
from tests.server import ServerProcess, running_server

pytestmark = pytest.mark.interop

GROUP, SERVICE = "my-rg", "default"


class TokenCredential:
    """Any object with get_token() works
    (docs/sdk-clients.md#management-sdk-pointing-it-at-a-local-server)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("interop") / "data") as server:
        yield server


def sdk(server: ServerProcess, token: str | None = None) -> IotDpsClient:
    return IotDpsClient(
        TokenCredential(token or server.token),
        "00000000-0000-0000-0000-000000000000",
        base_url=server.url,
        connection_verify=str(server.ca_file),
        retry_total=0,
    )


def test_every_certificate_call(server: ServerProcess) -> None:
    client = sdk(server)
    root = f.root("SDK Root", now=datetime.now(UTC))
    created = client.dps_certificate.create_or_update(
        GROUP,
        SERVICE,
        "sdk-root",
        CertificateResponse(
            properties=CertificateProperties(certificate=root.pem, is_verified=False)
        ),
    )
    assert created.name == "sdk-root" and created.properties.is_verified is False
    assert created.properties.subject == "SDK Root"  # the CN value, as the real service answers
    assert created.properties.certificate is None  # null, as the real service answers
    assert isinstance(created.properties.expiry, datetime)
    assert isinstance(created.properties.created, datetime)

    got = client.dps_certificate.get("sdk-root", GROUP, SERVICE)
    assert got.etag == created.etag
    listed = client.dps_certificate.list(GROUP, SERVICE).value
    assert "sdk-root" in [c.name for c in listed]

    coded = client.dps_certificate.generate_verification_code(
        "sdk-root", GROUP, SERVICE, etag=got.etag, match_condition=MatchConditions.IfNotModified
    )
    code = coded.properties.verification_code
    assert len(code) == 48 and coded.etag != got.etag
    assert coded.properties.certificate == root.pem  # the SDK base64-decodes the field

    proof = f.pem(f.verification(root, code, now=datetime.now(UTC))).decode()
    verified = client.dps_certificate.verify_certificate(
        "sdk-root",
        GROUP,
        SERVICE,
        VerificationCodeRequest(certificate=proof),
        etag=coded.etag,
        match_condition=MatchConditions.IfNotModified,
    )
    assert verified.properties.is_verified is True and verified.etag != coded.etag
    assert verified.properties.certificate is None

    client.dps_certificate.delete(
        GROUP,
        SERVICE,
        "sdk-root",
        etag=verified.etag,
        match_condition=MatchConditions.IfNotModified,
    )
    with pytest.raises(ResourceNotFoundError):
        client.dps_certificate.get("sdk-root", GROUP, SERVICE)


def test_self_attested_upload_and_stale_etag(server: ServerProcess) -> None:
    client = sdk(server)
    root = f.root("SDK Attested", now=datetime.now(UTC))
    created = client.dps_certificate.create_or_update(
        GROUP,
        SERVICE,
        "sdk-attested",
        CertificateResponse(
            properties=CertificateProperties(certificate=root.pem, is_verified=True)
        ),
    )
    assert created.properties.is_verified is True
    client.dps_certificate.generate_verification_code(
        "sdk-attested",
        GROUP,
        SERVICE,
        etag=created.etag,
        match_condition=MatchConditions.IfNotModified,
    )
    with pytest.raises(HttpResponseError) as caught:
        client.dps_certificate.delete(
            GROUP,
            SERVICE,
            "sdk-attested",
            etag=created.etag,
            match_condition=MatchConditions.IfNotModified,
        )
    assert caught.value.status_code == 412
    assert client.dps_certificate.get("sdk-attested", GROUP, SERVICE).properties.is_verified is True


def test_refused_proof_surfaces_the_reason(server: ServerProcess) -> None:
    client = sdk(server)
    root = f.root("SDK Refused", now=datetime.now(UTC))
    created = client.dps_certificate.create_or_update(
        GROUP,
        SERVICE,
        "sdk-refused",
        CertificateResponse(properties=CertificateProperties(certificate=root.pem)),
    )
    coded = client.dps_certificate.generate_verification_code(
        "sdk-refused",
        GROUP,
        SERVICE,
        etag=created.etag,
        match_condition=MatchConditions.IfNotModified,
    )
    wrong = f.pem(f.verification(root, "0" * 48, now=datetime.now(UTC))).decode()
    with pytest.raises(HttpResponseError) as caught:
        client.dps_certificate.verify_certificate(
            "sdk-refused",
            GROUP,
            SERVICE,
            VerificationCodeRequest(certificate=wrong),
            etag=coded.etag,
            match_condition=MatchConditions.IfNotModified,
        )
    assert caught.value.status_code == 400
    assert "VerificationCodeMismatch" in str(caught.value)
    assert client.dps_certificate.get("sdk-refused", GROUP, SERVICE).properties.is_verified is False


def test_wrong_token_is_refused(server: ServerProcess) -> None:
    with pytest.raises(ClientAuthenticationError):
        sdk(server, token="not-the-admin-token").dps_certificate.list(GROUP, SERVICE)


def test_old_sdk_body_shape_and_unquoted_if_match(server: ServerProcess) -> None:
    """The 1.x SDK sends {"certificate", "isVerified"} at top level and If-Match unquoted."""
    import httpx

    root = f.root("Old Shape", now=datetime.now(UTC))
    base = (
        f"{server.url}/subscriptions/s/resourceGroups/{GROUP}/providers/Microsoft.Devices"
        f"/provisioningServices/{SERVICE}/certificates/old-shape?api-version=2021-10-15"
    )
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(server.ca_file)), headers=headers
    ) as http:
        created = http.put(base, json={"certificate": root.pem.decode(), "isVerified": False})
        assert created.status_code == 200
        etag = created.json()["etag"]
        updated = http.put(
            base,
            json={"certificate": root.pem.decode(), "isVerified": True},
            headers={"If-Match": etag},
        )
        assert updated.status_code == 200 and updated.json()["properties"]["isVerified"] is True
