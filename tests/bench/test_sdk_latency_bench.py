"""bench/sdk_latency.py runs end to end with two devices, Microsoft's Python and Node device SDKs
against two real ``devprov serve`` runs, and prints each of its figures. What the figures are is
not asserted: the bench measures, it does not judge.

The full run needs port 8883 (the Python SDK's own) and node with the SDK packages: it skips,
saying why, without them, as the interop tests do.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench import sdk_latency
from tests.interop.nodejs import node_with_packages
from tests.interop.ports import skip_unless_free

pytestmark = [pytest.mark.e2e, pytest.mark.interop]

SCRIPT = Path(sdk_latency.__file__)
RUN_TIMEOUT_SECONDS = 240
MS = r"[\d.]+ ms"


def test_prints_every_figure_before_and_after() -> None:
    node_with_packages()
    skip_unless_free((sdk_latency.SDK_PORT,), sdk_latency.PYTHON_SDK)

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--devices", "2"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )

    out = done.stdout
    if done.returncode == sdk_latency.EXIT_PORT_TAKEN:  # taken since the check: say by whom
        pytest.skip(out.strip().splitlines()[-1])
    assert done.returncode == 0, out + done.stderr
    assert re.search(r"^devprov \S+, \d{4}-\d\d-\d\d: 2 devices per SDK and server", out, re.M)
    assert re.search(r"^machine: \d+ x .+ RAM", out, re.M)
    assert re.search(
        r"^SDKs: azure-iot-device \S+ \(MQTT\); azure-iot-provisioning-device", out, re.M
    )
    for sdk in ("Python SDK, MQTT", "Node SDK, HTTP"):
        for phase in (r"before \(--always-poll\)", r"after \(answered at once\)"):
            assert re.search(
                rf"^  {sdk}, {phase} +p50 +{MS}  p99 +{MS}  server CPU +[\d.]+ ms/reg"
                r"  ok 2  failures 0$",
                out,
                re.M,
            ), (sdk, phase, out)
        assert re.search(
            rf"^  {sdk} +p50 [\d.]+ -> {MS} \([\d.]+x\)  p99 [\d.]+ -> {MS} \([\d.]+x\)"
            r"  server CPU [\d.]+ -> [\d.]+ ms/reg$",
            out,
            re.M,
        ), (sdk, out)
    assert (
        len(re.findall(rf"^    its node process, start to exit +p50 +{MS}  p99 +{MS}$", out, re.M))
        == 2
    )
    assert "failure:" not in out


def test_says_why_and_measures_nothing_when_the_sdk_port_is_taken(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as holder:  # a port of this test's own stands for 8883
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setattr(sdk_latency, "SDK_PORT", port)

        code = sdk_latency.main(["--devices", "1"])

    assert code == sdk_latency.EXIT_PORT_TAKEN
    out = capsys.readouterr().out
    assert out.startswith(f"not measured: port {port} is taken by pid ")
    assert "devprov" not in out  # no header: nothing was started


def test_refuses_numbers_out_of_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        sdk_latency.main(["--devices", "0"])
    assert exit_.value.code == 2
    assert f"--devices must be 1 to {sdk_latency.MAX_DEVICES}" in capsys.readouterr().err
