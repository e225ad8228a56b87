"""The azure-iothub adapter against a local registry implementing IoT Hub's registry contract,
which checks every request against what Microsoft's SDK sends (tests/hub/registry_contract.py)."""

from __future__ import annotations

import base64
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import hashes

from devprov.core.error import DevprovError
from devprov.hub.azure_iothub import MAX_QUOTED_CHARACTERS, AzureIotHubRegistry
from devprov.service.hub_identity import (
    DeviceAuthentication,
    DeviceAuthKind,
    DeviceIdentity,
    HubConnection,
    HubKind,
    HubRefusedError,
    HubUnreachableError,
    InvalidHubSettingsError,
)
from tests import factory
from tests.hub.registry_contract import (
    HUB_NAME,
    RegistryContract,
    contract_violation,
    load_sdk_requests,
    registry_contract,
)


@pytest.fixture
def contract(tmp_path: Path) -> Iterator[RegistryContract]:
    with registry_contract(tmp_path) as running:
        yield running
        # Every request the adapter sent is one Microsoft's SDK sends.
        assert running.violations == []


@pytest.fixture
def registry() -> AzureIotHubRegistry:
    return AzureIotHubRegistry(timeout=2.0)


def hub_of(contract: RegistryContract, **overrides: str) -> HubConnection:
    return HubConnection(HubKind.AZURE_IOTHUB, HUB_NAME, contract.settings(**overrides))


def key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def thumbprint() -> str:
    certificate = factory.device(factory.root()).certificate
    return certificate.fingerprint(hashes.SHA1()).hex().upper()  # IoT Hub's choice


def identity(
    auth: DeviceAuthentication, device_id: str = "dev-1", **kwargs: object
) -> DeviceIdentity:
    return DeviceIdentity(device_id, device_id, auth, **kwargs)  # type: ignore[arg-type]


def assert_no_secret(error: DevprovError, contract: RegistryContract) -> None:
    text = str(error)
    assert contract.key not in text
    for _, _, headers, _ in contract.requests:
        token = headers.get("Authorization", "")
        assert token.split("sig=")[-1].split("&")[0] not in text


CA = DeviceAuthentication(DeviceAuthKind.CERTIFICATE_AUTHORITY)


def attestations() -> list[tuple[str, DeviceAuthentication]]:
    return [
        ("certificateAuthority", CA),
        (
            "selfSigned/two",
            DeviceAuthentication(DeviceAuthKind.SELF_SIGNED, thumbprint(), thumbprint()),
        ),
        ("selfSigned/one", DeviceAuthentication(DeviceAuthKind.SELF_SIGNED, thumbprint())),
        ("sas", DeviceAuthentication(DeviceAuthKind.SAS, primary_key=key(), secondary_key=key())),
    ]


@pytest.mark.parametrize(("name", "auth"), attestations(), ids=[name for name, _ in attestations()])
def test_put_creates_the_identity_of_each_attestation(contract, registry, name, auth) -> None:
    story = registry.put(hub_of(contract), identity(auth))

    assert story == f"identity created in {HUB_NAME} with authentication {auth.kind.value}"
    device = contract.devices["dev-1"]
    assert device["status"] == "enabled"
    assert device["authentication"]["type"] == auth.kind.value
    if auth.kind is DeviceAuthKind.SELF_SIGNED:
        assert device["authentication"]["x509Thumbprint"] == {
            "primaryThumbprint": auth.primary_thumbprint,
            "secondaryThumbprint": auth.secondary_thumbprint,
        }
    if auth.kind is DeviceAuthKind.SAS:
        assert device["authentication"]["symmetricKey"] == {
            "primaryKey": auth.primary_key,
            "secondaryKey": auth.secondary_key,
        }
    # A GET first (absent), then a PUT without If-Match: a create.
    assert [(method, "If-Match" in headers) for method, _, headers, _ in contract.requests] == [
        ("GET", False),
        ("PUT", False),
    ]


def test_put_on_an_existing_identity_updates_it_with_if_match(contract, registry) -> None:
    first = DeviceAuthentication(DeviceAuthKind.SAS, primary_key=key(), secondary_key=key())
    registry.put(hub_of(contract), identity(first))
    second = DeviceAuthentication(DeviceAuthKind.SELF_SIGNED, thumbprint())

    story = registry.put(hub_of(contract), identity(second))

    assert story == f"identity updated in {HUB_NAME} with authentication selfSigned"
    device = contract.devices["dev-1"]
    assert device["authentication"]["type"] == "selfSigned"
    assert (
        device["authentication"]["x509Thumbprint"]["primaryThumbprint"] == second.primary_thumbprint
    )
    assert device["authentication"]["symmetricKey"]["primaryKey"] is None
    method, _, headers, _ = contract.requests[-1]
    assert (method, headers["If-Match"]) == ("PUT", '"*"')


def test_put_racing_another_writer_updates_what_it_made(contract, registry) -> None:
    registry.put(hub_of(contract), identity(CA))
    contract.unseen.add("dev-1")
    auth = DeviceAuthentication(DeviceAuthKind.SAS, primary_key=key(), secondary_key=key())

    story = registry.put(hub_of(contract), identity(auth))

    assert story == f"identity updated in {HUB_NAME} with authentication sas"
    assert contract.devices["dev-1"]["authentication"]["type"] == "sas"
    # The create answered 409; the update that followed carried If-Match.
    assert [("If-Match" in headers) for method, _, headers, _ in contract.requests[-2:]] == [
        False,
        True,
    ]


def test_put_of_a_disabled_enrollment_makes_a_disabled_identity(contract, registry) -> None:
    story = registry.put(hub_of(contract), identity(CA, enabled=False))

    assert story.endswith(", disabled")
    assert contract.devices["dev-1"]["status"] == "disabled"


def test_put_applies_the_initial_twin(contract, registry) -> None:
    twin = {"tags": {"site": "north"}, "properties": {"desired": {"interval": 30}}}

    story = registry.put(hub_of(contract), identity(CA, initial_twin=twin))

    assert story.endswith(", initial twin applied")
    assert contract.twins["dev-1"]["tags"] == {"site": "north"}
    assert contract.twins["dev-1"]["properties"]["desired"] == {"interval": 30}
    method, path, headers, body = contract.requests[-1]
    assert (method, path.split("?")[0], headers["If-Match"]) == ("PATCH", "/twins/dev-1", '"*"')
    assert body == twin


def test_put_without_an_initial_twin_leaves_the_twin_alone(contract, registry) -> None:
    story = registry.put(hub_of(contract), identity(CA))

    assert "twin" not in story
    assert not any(method == "PATCH" for method, *_ in contract.requests)
    assert contract.twins["dev-1"]["tags"] == {}


def test_a_device_id_is_url_encoded_in_the_path(contract, registry) -> None:
    registry.put(hub_of(contract), identity(CA, device_id="site:1/dev#2"))

    assert "site:1/dev#2" in contract.devices
    assert contract.requests[-1][1].startswith("/devices/site%3A1%2Fdev%232?")


def test_disable_keeps_the_authentication_and_sets_disabled(contract, registry) -> None:
    auth = DeviceAuthentication(DeviceAuthKind.SAS, primary_key=key(), secondary_key=key())
    registry.put(hub_of(contract), identity(auth))

    story = registry.disable(hub_of(contract), "dev-1")

    assert story == f"identity dev-1 disabled in {HUB_NAME}"
    device = contract.devices["dev-1"]
    assert device["status"] == "disabled"
    assert device["authentication"]["symmetricKey"]["primaryKey"] == auth.primary_key
    assert registry.disable(hub_of(contract), "dev-1").endswith("already disabled")


def test_disable_of_an_absent_identity_is_no_error(contract, registry) -> None:
    assert (
        registry.disable(hub_of(contract), "dev-1") == f"no identity dev-1 in {HUB_NAME} to disable"
    )
    assert contract.devices == {}


def test_delete_removes_the_identity(contract, registry) -> None:
    registry.put(hub_of(contract), identity(CA))

    assert registry.delete(hub_of(contract), "dev-1") == f"identity dev-1 deleted from {HUB_NAME}"
    assert contract.devices == {}
    method, _, headers, _ = contract.requests[-1]
    assert (method, headers["If-Match"]) == ("DELETE", '"*"')


def test_delete_of_an_absent_identity_is_no_error(contract, registry) -> None:
    assert (
        registry.delete(hub_of(contract), "dev-1") == f"no identity dev-1 in {HUB_NAME} to delete"
    )


# --- failures --------------------------------------------------------------------------------


def test_a_hub_answering_401_is_a_refusal_naming_the_policy(contract, registry) -> None:
    contract.forced_status = 401

    with pytest.raises(HubRefusedError) as caught:
        registry.put(hub_of(contract), identity(CA))

    message = caught.value.message
    assert f"{HUB_NAME} refused the credentials of policy 'registryReadWrite'" in message
    assert "(401 ErrorCode:Forced;" in message
    assert_no_secret(caught.value, contract)


def test_a_wrong_key_is_refused_by_the_hub(contract, registry) -> None:
    hub = hub_of(contract, connection_string=contract.connection_string(key=key()))

    with pytest.raises(HubRefusedError) as caught:
        registry.put(hub, identity(CA))

    assert "IotHubUnauthorizedAccess" in caught.value.message
    assert_no_secret(caught.value, contract)
    assert contract.devices == {}


def test_an_expired_token_is_refused_by_the_hub(contract) -> None:
    late = AzureIotHubRegistry(clock=lambda: datetime.now(UTC) - timedelta(hours=2))

    with pytest.raises(HubRefusedError, match="expired"):
        late.put(hub_of(contract), identity(CA))


@pytest.mark.parametrize("status", [500, 503, 400])
def test_a_hub_failing_is_a_refusal_quoting_its_answer(contract, registry, status) -> None:
    contract.forced_status = status

    with pytest.raises(HubRefusedError) as caught:
        registry.put(hub_of(contract), identity(CA))

    message = caught.value.message
    assert f"answered the request to read device dev-1 with {status}: ErrorCode:Forced;" in message
    assert "Tracking ID:" in message
    assert_no_secret(caught.value, contract)


def test_a_long_hub_message_is_truncated(contract, registry) -> None:
    contract.forced_status = 500
    hub = hub_of(contract)

    with pytest.raises(HubRefusedError) as caught:
        registry.put(hub, identity(CA, device_id="d" * 128))

    quoted = caught.value.message.partition(": ")[2]
    assert len(quoted) <= MAX_QUOTED_CHARACTERS


def test_a_stalled_hub_is_unreachable_within_the_timeout(contract) -> None:
    contract.stall = threading.Event()

    with pytest.raises(HubUnreachableError) as caught:
        AzureIotHubRegistry(timeout=0.5).put(hub_of(contract), identity(CA))

    assert caught.value.message == (
        f"{HUB_NAME} did not answer the request to read device dev-1 within 0.5 s"
    )
    assert_no_secret(caught.value, contract)


def test_a_refused_connection_is_unreachable(contract, registry) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    with pytest.raises(HubUnreachableError) as caught:
        registry.put(hub_of(contract, endpoint=f"https://127.0.0.1:{port}"), identity(CA))

    assert caught.value.message.startswith(f"{HUB_NAME} could not be reached to read device dev-1")


def test_a_hub_certificate_from_an_untrusted_ca_is_unreachable(contract, registry) -> None:
    other = contract.ca_file.parent / "other-ca.pem"
    other.write_bytes(factory.root("Other Root").pem)

    with pytest.raises(HubUnreachableError, match="CERTIFICATE_VERIFY_FAILED"):
        registry.put(hub_of(contract, ca_file=str(other)), identity(CA))

    assert contract.requests == []


# --- settings --------------------------------------------------------------------------------

GOOD_KEY = base64.b64encode(b"k" * 32).decode()


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        pytest.param({"connection_string": ""}, "lacks HostName", id="empty"),
        pytest.param({}, "connection_string setting is missing", id="missing"),
        pytest.param({"api_version": "latest"}, "api_version 'latest'", id="api-version"),
        pytest.param({"endpoint": "http://127.0.0.1:1"}, "is not https://host[:port]", id="http"),
        pytest.param({"endpoint": "https://127.0.0.1:1/x"}, "has more than", id="path"),
        pytest.param(
            {
                "connection_string": f"HostName=elsewhere;SharedAccessKeyName=p;SharedAccessKey={GOOD_KEY}"
            },
            "is not the hub",
            id="other-hub",
        ),
        pytest.param({"ca_file": "/nonexistent/ca.pem"}, "ca_file", id="ca-file"),
    ],
)
def test_bad_settings_are_rejected_before_any_request(contract, registry, settings, reason) -> None:
    base = contract.settings()
    if "connection_string" not in settings and settings != {}:
        settings = base | settings
    with pytest.raises(InvalidHubSettingsError) as caught:
        registry.put(HubConnection(HubKind.AZURE_IOTHUB, HUB_NAME, settings), identity(CA))

    assert reason in caught.value.message
    assert contract.requests == []


def test_settings_with_an_explicit_api_version_are_accepted(contract, registry) -> None:
    registry.put(hub_of(contract, api_version="2021-04-12"), identity(CA))

    assert contract.devices["dev-1"]["status"] == "enabled"


# --- the contract itself ---------------------------------------------------------------------


def test_every_captured_sdk_request_satisfies_the_contract() -> None:
    sdk = load_sdk_requests()
    for entry in sdk:
        headers = dict(entry["headers"])
        headers["Authorization"] = "SharedAccessSignature " + "&".join(
            f"{name}=x" for name in entry["authorization_fields"]
        )
        query = "&".join(f"{name}={value}" for name, value in entry["query"].items())
        path = entry["path"].replace("{id}", "dev-1") + "?" + query
        assert contract_violation(sdk, entry["method"], path, headers, entry["body"]) is None


def test_a_request_the_sdk_would_not_send_is_answered_400(contract) -> None:
    # The adapter's own requests pass (every test above); this one, by hand, drops
    # capabilities and quotes no If-Match, and is caught.
    registry = AzureIotHubRegistry()
    registry.put(hub_of(contract), identity(CA))
    token = contract.requests[-1][2]["Authorization"]
    with httpx.Client(verify=ssl.create_default_context(cafile=contract.ca_file)) as client:
        answer = client.put(
            f"{contract.endpoint}/devices/dev-1",
            params={"api-version": "2021-04-12"},
            headers={"Authorization": token, "If-Match": "*", "Accept": "application/json"},
            json={"deviceId": "dev-1", "status": "enabled", "authentication": {"type": "sas"}},
        )

    assert answer.status_code == 400
    assert len(contract.violations) == 1
    contract.violations.clear()
