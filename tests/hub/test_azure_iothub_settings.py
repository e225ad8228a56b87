"""Parsing an azure-iothub hub's connection string (docs/hubs.md#azure-iot-hub); the settings as
a whole are checked through the adapter in tests/hub/test_azure_iothub.py."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.hub.azure_iothub_settings import parse_connection_string
from devprov.service.hub_identity import InvalidHubSettingsError

GOOD_KEY = base64.b64encode(b"k" * 32).decode()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param(
            f"SharedAccessKeyName=p;SharedAccessKey={GOOD_KEY}", "lacks HostName", id="no-host"
        ),
        pytest.param(
            f"HostName=h;SharedAccessKey={GOOD_KEY}", "lacks SharedAccessKeyName", id="no-policy"
        ),
        pytest.param("HostName=h;SharedAccessKeyName=p", "lacks SharedAccessKey", id="no-key"),
        pytest.param(
            "HostName=h;SharedAccessKeyName=p;SharedAccessKey=not base64!",
            "SharedAccessKey:",
            id="bad-key",
        ),
        pytest.param(
            f"HostName=h/x;SharedAccessKeyName=p;SharedAccessKey={GOOD_KEY}",
            "HostName 'h/x'",
            id="bad-host",
        ),
        pytest.param(
            f"HostName=h;HostName=h;SharedAccessKeyName=p;SharedAccessKey={GOOD_KEY}",
            "more than one HostName",
            id="twice",
        ),
        pytest.param(
            f"HostName=h;DeviceId=d;SharedAccessKey={GOOD_KEY}", "DeviceId", id="device-string"
        ),
        pytest.param(
            f"HostName=h;Other=1;SharedAccessKeyName=p;SharedAccessKey={GOOD_KEY}",
            "unknown field 'Other'",
            id="unknown",
        ),
        pytest.param("HostName", "is not Name=value", id="no-equals"),
    ],
)
def test_a_malformed_connection_string_is_rejected_naming_the_field(text, reason) -> None:
    with pytest.raises(InvalidHubSettingsError) as caught:
        parse_connection_string(text)

    assert reason in caught.value.message
    assert GOOD_KEY not in caught.value.message


def test_a_connection_string_as_iot_hub_gives_it_is_accepted() -> None:
    parsed = parse_connection_string(
        f"HostName=hub-1.azure-devices.net;SharedAccessKeyName=registryReadWrite;SharedAccessKey={GOOD_KEY}"
    )

    assert (parsed.host_name, parsed.policy, parsed.key) == (
        "hub-1.azure-devices.net",
        "registryReadWrite",
        GOOD_KEY,
    )
    assert GOOD_KEY not in repr(parsed)


@given(st.text(max_size=200))
def test_arbitrary_connection_strings_raise_only_settings_errors(text: str) -> None:
    with contextlib.suppress(InvalidHubSettingsError):
        parse_connection_string(text)
