"""``devprov serve --always-poll`` against a real server process: a register is answered 202
``assigning`` with a Retry-After, as DPS answers it, and the device's poll reads the outcome;
the same device on the same data, served without the option, is answered its outcome at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from devprov.cli.main import main
from devprov.service.device_answer import RETRY_AFTER_SECONDS
from tests.e2e.test_device_https import device_client, register
from tests.instances import GroupDevices
from tests.server import running_server

pytestmark = pytest.mark.e2e

HUB = "hub-poll.azure-devices.net"
DEVICE = "poller"


def test_always_poll_answers_assigning_and_without_it_the_outcome_comes_at_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with running_server(data, "--always-poll") as server:
        args = server.cli_args()
        assert main(["hub", "add", HUB, *args]) == 0
        assert main(["enrollment-group", "create", "polling", "--symmetric-key", *args]) == 0
        devices = GroupDevices(server, "polling")
        with device_client(server) as device:
            # register() checks the 202 body is the operation, assigning, and polls it once.
            first, polled = register(device, devices.scope, DEVICE, headers=devices.headers(DEVICE))
        assert first.status_code == 202, first.text
        assert first.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        assert "registrationState" not in first.json()
        assert polled is not None and polled["status"] == "assigned"
        assert polled["operationId"] == first.json()["operationId"]
        assert polled["registrationState"]["assignedHub"] == HUB
        assert polled["registrationState"]["deviceId"] == DEVICE

    with running_server(data) as server, device_client(server) as device:
        # register() checks a poll of the operation reads the same answer.
        again, outcome = register(device, devices.scope, DEVICE, headers=devices.headers(DEVICE))
    assert again.status_code == 200, again.text
    assert "retry-after" not in again.headers
    assert outcome == again.json()
    assert outcome["status"] == "assigned"
    assert outcome["operationId"] != first.json()["operationId"]
    state = outcome["registrationState"]
    assert (state["assignedHub"], state["deviceId"]) == (HUB, DEVICE)
    assert state["symmetricKey"] == {"enrollmentGroupId": "polling"}
