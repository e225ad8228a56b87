"""bench/mqtt.py runs end to end with tiny numbers against a real ``devprov serve`` and prints
each of its figures. What the figures are is not asserted: the bench measures, it does not judge.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bench import mqtt

pytestmark = pytest.mark.e2e

SCRIPT = Path(mqtt.__file__)

NUMBER = r"[\d.]+(?: \[[\d.]+-[\d.]+\])?"  # one figure, or a median [min-max] over rounds


@pytest.mark.parametrize(
    ("rounds", "option", "kind"),
    [(1, [], "symmetric-key"), (2, ["--idle-x509"], "X.509")],
    ids=["one-round-symmetric-key-fleet", "two-rounds-x509-fleet"],
)
def test_prints_every_figure_beside_its_baseline(
    capsys: pytest.CaptureFixture[str], rounds: int, option: list[str], kind: str
) -> None:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    argv = ["--devices", "5", "--clients", "2", "--idle", "20", "--rounds", str(rounds), *option]

    assert mqtt.main(argv) == 0

    out = capsys.readouterr().out
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == limit  # given back as it was
    assert re.search(r"^devprov \S+, \d{4}-\d\d-\d\d: 5 devices", out, re.M)
    assert re.search(r"^machine: \d+ x .+ RAM", out, re.M)
    expected = [
        rf"registrations/s +MQTT {NUMBER} vs HTTPS {NUMBER} \(MQTT/HTTPS {NUMBER}\)",
        rf"p50 / p99 \(ms\) +MQTT {NUMBER} / {NUMBER} vs HTTPS {NUMBER} / {NUMBER}",
        rf"server CPU/registration MQTT {NUMBER} ms vs HTTPS {NUMBER} ms",
        rf"idle devices +20 of 20 {kind} devices stayed connected \(20 opened, 0 failed to open\)",
        r"server RSS +[\d.]+ MiB before, [\d.]+ MiB after: -?[\d.]+ KiB per connection",
        r"server CPU to open +[\d.]+ s, [\d.]+ ms per connection",
        rf"with 20 idle connected: MQTT p50 / p99 {NUMBER} / {NUMBER} ms vs {NUMBER} / {NUMBER}"
        rf" ms without; {NUMBER} vs {NUMBER} reg/s",
    ]
    for pattern in expected:
        assert re.search(pattern, out), pattern
    assert (
        len(
            re.findall(
                r"^  MQTT: register \(\+ polls while assigning\) .* ok 5  failures 0$", out, re.M
            )
        )
        == rounds
    )
    assert "failure:" not in out


def test_refuses_numbers_out_of_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        mqtt.main(["--devices", "2", "--clients", "3"])
    assert exit_.value.code == 2
    assert "--clients must be 1 to 2" in capsys.readouterr().err


def test_a_low_descriptor_limit_lowers_the_fleet_and_says_why() -> None:
    # 400 descriptors, less the server's reserve (256), this process's margin (64) and the two
    # client threads' connections, leave room for 78 idle connections.
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (400, 400))

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--devices", "2", "--clients", "2", "--idle", "100"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        preexec_fn=limit,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "idle connections limited to 78: the hard RLIMIT_NOFILE is 400" in done.stdout
    assert re.search(
        r"78 of 78 symmetric-key devices stayed connected \(78 opened, 0 failed to open;"
        r" --idle 100 lowered: RLIMIT_NOFILE hard limit 400\)",
        done.stdout,
    ), done.stdout
