"""bench/issuance.py runs end to end with tiny numbers against a real ``devprov serve`` and prints
each of its figures for plain and issued registrations, with the raw baseline beside them. What
the figures are is not asserted: the bench measures, it does not judge. Its check of an answer
is: each kind's device passes its own kind's check and fails the others'."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bench import issuance
from tests.server import running_server

pytestmark = pytest.mark.e2e

NUMBER = r"[\d.]+(?: \[[\d.]+-[\d.]+\])?"  # one figure, or a median [min-max] over rounds
# Differences and ratios of server CPU: /proc counts clock ticks (10 ms), more than two
# registrations may take, so a tiny run's difference can be negative and its ratio nan.
FIGURE = r"(?:-?[\d.]+|nan)"
SIGNED = rf"{FIGURE}(?: \[{FIGURE}-{FIGURE}\])?"
# bench/issuance.py's own import of bench/registration.py (a top-level module on its path),
# whose BenchFailure is the class it raises.
https = issuance.https
WARNING = "(one round; a single run here can be 30 % off: use --rounds 3 or more)"


@pytest.mark.parametrize("rounds", [1, 2], ids=["one-round", "two-rounds"])
def test_prints_every_figure_for_each_kind_beside_the_baseline(
    capsys: pytest.CaptureFixture[str], rounds: int
) -> None:
    argv = ["--devices", "2", "--clients", "1", "--rounds", str(rounds)]

    assert issuance.main(argv) == 0

    out = capsys.readouterr().out
    assert re.search(r"^devprov \S+, \d{4}-\d\d-\d\d: 2 devices per kind", out, re.M)
    assert re.search(r"^machine: \d+ x .+ RAM", out, re.M)
    for label in issuance.LABELS.values():
        per_round = rf"^  {re.escape(label)} +[\d.]+ reg/s .* server CPU +[\d.]+ ms/reg .* ok 2  failures 0$"
        assert len(re.findall(per_round, out, re.M)) == rounds, label
        summary = (
            rf"^  {re.escape(label)} +{NUMBER} reg/s   p50 / p99 {NUMBER} / {NUMBER} ms"
            rf"   server CPU/reg {NUMBER} us   failures 0$"
        )
        assert re.search(summary, out, re.M), label
    assert re.search(r"raw cryptography, 200 each\): parse \+ verify a CSR [\d.]+ us$", out, re.M)
    for label in ("issued, P-384 CA", "issued, P-256 CA"):
        extra = (
            rf"^  {label} over plain: extra server CPU/reg {SIGNED} us \({SIGNED}x plain\),"
            rf" reg/s {NUMBER}x plain$"
        )
        assert re.search(extra, out, re.M), label
    raw = (
        r"^    raw: sign a leaf [\d.]+ us \+ load the CA key [\d.]+ us \+ parse \+ verify the CSR"
        rf" [\d.]+ us = [\d.]+ us; server's extra / raw {SIGNED}x$"
    )
    assert len(re.findall(raw, out, re.M)) == 2
    assert (WARNING in out) is (rounds == 1)
    assert "failure:" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--devices", "2", "--clients", "3"], "--clients must be 1 to 2"),
        (["--devices", "0"], "--devices must be 1 to 20000"),
        (["--rounds", "21"], "--rounds must be 1 to 20"),
        (["--timeout", "0"], "--timeout must be 1 to 3600"),
    ],
)
def test_refuses_numbers_out_of_bounds(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        issuance.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_each_kind_passes_its_own_check_and_fails_the_others(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    pki = https.DevicePki(tmp_path / "pki")
    with running_server(tmp_path / "data") as server:
        scope, issuers = issuance.set_up_kinds(server, pki)

        def fleet(kind: str, prefix: str) -> issuance.Fleet:
            return issuance.build_fleet(pki, kind, issuers[kind], prefix, 1, server.ca_file)

        def register(fleet: issuance.Fleet, expect: str) -> int:
            device = fleet.devices[0]
            csr = fleet.csrs.get(device.registration_id)
            fields = None if csr is None else {"csr": csr}
            check = issuance.Expect(expect)
            return https.register_device(server.port, scope, device, fields, check)

        for kind in issuance.KINDS:
            own = fleet(kind, kind)
            assert issuance.register(server.port, scope, own, own.devices[0]) == 0
        with pytest.raises(https.BenchFailure, match="issuedCertificateChain of no certificates"):
            register(fleet("plain", "plain-as-p384"), "p384")
        with pytest.raises(https.BenchFailure, match="issuedCertificateChain without a CSR"):
            register(fleet("p384", "p384-as-plain"), "plain")
        with pytest.raises(https.BenchFailure, match="the issuing CA's key is not EC secp256r1"):
            register(fleet("p384", "p384-as-p256"), "p256")
        with pytest.raises(https.BenchFailure, match="the issuing CA's key is not EC secp384r1"):
            register(fleet("p256", "p256-as-p384"), "p384")

        answers: dict[str, tuple[str, dict[str, Any]]] = {}
        for kind in issuance.ISSUED:
            issued = fleet(kind, f"answer-{kind}")
            device = issued.devices[0]
            fields = {"csr": issued.csrs[device.registration_id]}

            def keep(rid: str, answer: dict[str, Any], kind: str = kind) -> None:
                answers[kind] = (rid, answer)

            https.register_device(server.port, scope, device, fields, keep)
    rid, answer = answers["p256"]
    issuance.Expect("p256")(rid, answer)  # the real answer passes; each change below fails
    with pytest.raises(https.BenchFailure, match="the issued leaf's CN is"):
        issuance.Expect("p256")("someone-else", answer)
    leaf, ca = answer["registrationState"]["issuedCertificateChain"]
    for chain, reason in (
        ([leaf], "issuedCertificateChain of 1 certificates, not 2"),
        ([leaf, ca, ca], "issuedCertificateChain of 3 certificates, not 2"),
        (
            [leaf, answers["p384"][1]["registrationState"]["issuedCertificateChain"][1]],
            "the leaf's issuer is not the chain's CA",
        ),
    ):
        changed = answer | {
            "registrationState": answer["registrationState"] | {"issuedCertificateChain": chain}
        }
        with pytest.raises(https.BenchFailure, match=reason):
            issuance.Expect("p256")(rid, changed)
