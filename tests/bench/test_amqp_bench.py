"""bench/amqp.py runs end to end with tiny numbers against a real ``devprov serve`` and prints
each of its figures for AMQP, HTTPS and MQTT, with the ratios. What the figures are is not
asserted: the bench measures, it does not judge. Its AMQP device is checked to fail, not to
count, when devprov refuses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import amqp
from tests.instances import free_port
from tests.server import running_server

pytestmark = pytest.mark.e2e

NUMBER = r"[\d.]+(?: \[[\d.]+-[\d.]+\])?"  # one figure, or a median [min-max] over rounds
# A ratio of server CPU is nan when the baseline's CPU read 0: /proc counts clock ticks (10 ms),
# more than two registrations may take.
RATIO = r"(?:[\d.]+|nan)(?: \[(?:[\d.]+|nan)-(?:[\d.]+|nan)\])?"
# bench/amqp.py's own import of bench/registration.py (a top-level module on its path), whose
# BenchFailure is the class it raises.
https = amqp.https
WARNING = "(one round; a single run here can be 30 % off: use --rounds 3 or more)"


@pytest.mark.parametrize("rounds", [1, 2], ids=["one-round", "two-rounds"])
def test_prints_every_figure_for_each_protocol(
    capsys: pytest.CaptureFixture[str], rounds: int
) -> None:
    argv = ["--devices", "2", "--clients", "1", "--rounds", str(rounds)]

    assert amqp.main(argv) == 0

    out = capsys.readouterr().out
    assert re.search(r"^devprov \S+, \d{4}-\d\d-\d\d: 2 devices per protocol", out, re.M)
    assert re.search(r"^machine: \d+ x .+ RAM", out, re.M)
    for label in ("AMQP", "HTTPS", "MQTT"):
        per_round = (
            rf"^  {label}: register \(\+ polls while assigning\) .* server CPU +[\d.]+ ms/reg"
            r" .* ok 2  failures 0$"
        )
        assert len(re.findall(per_round, out, re.M)) == rounds, label
    expected = [
        rf"registrations/s +AMQP {NUMBER} vs HTTPS {NUMBER} vs MQTT {NUMBER}$",
        rf"p50 / p99 \(ms\) +AMQP {NUMBER} / {NUMBER} vs HTTPS {NUMBER} / {NUMBER}"
        rf" vs MQTT {NUMBER} / {NUMBER}$",
        rf"server CPU/registration AMQP {NUMBER} ms vs HTTPS {NUMBER} ms vs MQTT {NUMBER} ms$",
        rf"AMQP/HTTPS +registrations/s {NUMBER}, server CPU per registration {RATIO}$",
        rf"AMQP/MQTT +registrations/s {NUMBER}, server CPU per registration {RATIO}$",
        r"failures +AMQP 0, HTTPS 0, MQTT 0$",
    ]
    for pattern in expected:
        assert re.search(pattern, out, re.M), pattern
    assert (WARNING in out) is (rounds == 1)
    assert "failure:" not in out


def test_refuses_numbers_out_of_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        amqp.main(["--devices", "2", "--clients", "3"])
    assert exit_.value.code == 2
    assert "--clients must be 1 to 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "polls"),
    [((), 0), (("--always-poll",), 1)],
    ids=["answered-at-once", "always-poll"],
)
def test_an_amqp_device_of_an_unknown_root_fails_where_a_known_one_registers(
    tmp_path: Path, options: tuple[str, ...], polls: int
) -> None:
    """The register's reply is the outcome (no poll), or with --always-poll DPS's "assigning",
    and the outcome at the first poll."""
    known, unknown = tmp_path / "known", tmp_path / "unknown"
    known.mkdir()
    unknown.mkdir()
    pki = https.DevicePki(known)
    stranger = https.DevicePki(unknown)  # its root is neither uploaded nor proven
    with running_server(tmp_path / "data", "--amqp-port", str(free_port()), *options) as server:
        scope = https.set_up(server, pki)
        port = server.amqp_port or 0
        (device,) = pki.devices("known", 1, server.ca_file)
        (outsider,) = stranger.devices("unknown", 1, server.ca_file)

        assert amqp.register_amqp(port, scope, device) == polls
        with pytest.raises(https.BenchFailure, match="unknown-00000: iotdps-register ->"):
            amqp.register_amqp(port, scope, outsider)
