"""x509-limbo conformance: every case of the suite through devprov's device profile.

The suite (C2SP/x509-limbo, 208 cases, vendored unmodified in ``tests/conformance/x509-limbo/``,
whose README names the upstream commit and the licence) is the upstream contract for path
validators. Each case becomes one test
named by its id that asserts devprov agrees with ``expected_result``, except:

* ``SKIPS``: cases devprov cannot run meaningfully, each with its reason (CRLs; a peer-name check
  that a device profile does not make).
* ``DEVIATIONS``: cases where devprov's device profile deliberately decides otherwise, each with
  its reason. For these the test asserts the *deviating* result, so the list cannot go stale: a
  deviation that disappears fails until it is removed from the list.

How a case maps onto :func:`devprov.core.chain.validate_device_chain`:

* ``trusted_certs`` are the anchors, ``untrusted_intermediates`` the chain the device sent and
  ``peer_certificate`` the device certificate.
* ``extended_key_usage`` becomes ``required_eku`` (limbo's names mapped to OIDs). A case that
  names none is validated for its kind's natural purpose, serverAuth for SERVER cases and
  clientAuth for CLIENT cases, as upstream harnesses and cryptography's verifiers do.
* SERVER cases run without their ``expected_peer_name``: devprov validates device certificates,
  which are named by their subject CN and matched to enrollments elsewhere.
* ``validation_time`` is ``at``; a case without one is validated now (its certificates were made
  to be valid for years). ``max_chain_depth`` is passed when given.
* ``key_usage`` (two cases ask for digitalSignature) is not passed: the device profile always
  requires digitalSignature when keyUsage is present (rule E2), and both leaves assert it.
* ``denial-of-service`` cases run in a child process killed after ``DOS_TIME_LIMIT_SECONDS``.

Set ``DEVPROV_LIMBO_RESULTS=path`` to also write the results in the upstream harness format.
Run with ``-s`` to see the summary table.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID

from devprov.core.chain import validate_device_chain
from devprov.core.error import DevprovError
from tests.core.wording import assert_plain_words

REPO = Path(__file__).resolve().parents[2]
LIMBO_PATH = Path(__file__).resolve().parent / "x509-limbo" / "limbo.json"
EXPECTED_CASES = 208
RESULTS_ENV = "DEVPROV_LIMBO_RESULTS"
PARSE = "does not parse: "  # the harness's own outcome for a case whose PEM does not load

# Upstream's harnesses treat anything slower as a hang; a child process also pays ~0.5 s of
# interpreter and import start-up inside this budget.
DOS_TIME_LIMIT_SECONDS = 5.0

EKU_BY_NAME = {
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
}
DEFAULT_EKU_BY_KIND = {
    "SERVER": ExtendedKeyUsageOID.SERVER_AUTH,
    "CLIENT": ExtendedKeyUsageOID.CLIENT_AUTH,
}

# --- skipped: cases devprov cannot run meaningfully --------------------------------------------

SKIP_FEATURES = {
    "has-crl": "devprov does not check revocation (no CRL or OCSP input); a device is cut off by "
    "disabling its enrollment or deleting its registration",
}

_PEER_NAME_ONLY = (
    "the chain is valid and the case fails only because expected_peer_name does not match the "
    "leaf's SAN (RFC 6125 / CA/B wildcard rules); devprov matches devices by subject CN against "
    "enrollments and makes no host-name check"
)
SKIPS: dict[str, str] = {
    case_id: _PEER_NAME_ONLY
    for case_id in (
        "webpki::san::mismatch-domain-san",
        "webpki::san::mismatch-subdomain-san",
        "webpki::san::mismatch-subdomain-apex-san",
        "webpki::san::mismatch-apex-subdomain-san",
        "webpki::san::public-suffix-wildcard-san",
        "webpki::san::public-suffix-multi-label-wildcard-san",
        "webpki::san::public-suffix-private-namespace-wildcard-san",
        "webpki::san::wildcard-embedded-leftmost-san",
        "webpki::san::wildcard-not-in-leftmost-san",
        "webpki::san::wildcard-match-across-labels-san",
        "webpki::san::wildcard-embedded-ulabel-san",
        "webpki::san::unicode-emoji-san",
        "webpki::san::san-wildcard-only",
        "webpki::san::san-wildcard-only-tld",
    )
}

# --- deviations: devprov's device profile decides otherwise, on purpose ----------------------

_CA_AS_DEVICE = (
    "E1: a CA certificate is never accepted as a device certificate (RFC 5280 permits a CA in "
    "the leaf position; CA/B and cryptography forbid it, and DPS devices present client "
    "certificates, see docs/chain-validation.md)"
)
_SELF_ISSUED_COUNT = (
    "P6 (cryptography): self-issued intermediates count towards pathLenConstraint and the depth "
    "limit, as in Go and rustls-webpki; RFC 5280 6.1.4(l) exempts them"
)
_LENIENT_KEY_IDS = (
    "cryptography accepts CA certificates without AKI or SKI (RFC 5280 4.2.1.1/4.2.1.2 oblige the "
    "issuing CA, path validation in 6.1 uses neither), as Go and rustls-webpki do"
)
_ROOT_AKI_FIELDS = (
    "cryptography accepts a root AKI with authorityCertIssuer/serial or a key id differing from "
    "the SKI (CA/B 7.1.2.1.3 forbids it); certGen.sh roots carry exactly keyid+issuer+serial"
)
_CN_NOT_HOSTNAME = (
    "CA/B 7.1.4.3 ties a server certificate's CN to its SAN; a device certificate's CN is its "
    "registration ID (docs/attestation.md#registration-id-and-the-certificate-cn) and is not "
    "compared with the SAN"
)
_SAN_NOT_INTERPRETED = (
    "E4: the SAN of a device certificate is optional and only name constraints read it; its "
    "dNSName syntax is not checked (RFC 5280 4.2.1.6 obliges the issuing CA)"
)
DEVIATIONS: dict[str, str] = {
    "rfc5280::ca-as-leaf": _CA_AS_DEVICE,
    "pathlen::validation-ignores-pathlen-in-leaf": _CA_AS_DEVICE,
    "pathlen::self-issued-certs-pathlen": _SELF_ISSUED_COUNT,
    "pathlen::max-chain-depth-1-self-issued": _SELF_ISSUED_COUNT,
    "webpki::san::no-san": "E4: device certificates need no SAN; certGen.sh device certificates "
    "carry only a CN (docs/sdk-clients.md#certgensh-keys-extensions-and-validity; CA/B "
    "7.1.2.7.12 requires a SAN, RFC 5280 4.2.1.6 does not)",
    "rfc5280::san::underscore-dns": _SAN_NOT_INTERPRETED,
    "rfc5280::san::ip-in-dns": _SAN_NOT_INTERPRETED,
    "webpki::eku::ee-without-eku": "E3: a device certificate without extendedKeyUsage is accepted "
    "(RFC 5280 4.2.1.12: absent means unrestricted); CA/B 7.1.2.7.6 requires it for TLS servers",
    "webpki::eku::ee-anyeku": "E3: anyExtendedKeyUsage beside the required purpose is accepted "
    "(RFC 5280 4.2.1.12; cryptography does the same); CA/B 7.1.2.7.10 forbids it for TLS servers",
    "webpki::eku::root-has-eku": "C3: an EKU on a CA constrains the purposes below it and is "
    "accepted when it allows the required one (cryptography does the same); CA/B 7.1.2.1.2 "
    "forbids EKUs on WebPKI roots",
    "rfc5280::aki::leaf-missing-aki": "E5: device certificates need no AKI; path validation "
    "(RFC 5280 6.1) does not use it and self-signed device certificates rarely carry one",
    "rfc5280::aki::intermediate-missing-aki": _LENIENT_KEY_IDS,
    "rfc5280::aki::cross-signed-root-missing-aki": _LENIENT_KEY_IDS,
    "rfc5280::ski::root-missing-ski": _LENIENT_KEY_IDS,
    "rfc5280::ski::intermediate-missing-ski": _LENIENT_KEY_IDS,
    "webpki::aki::root-with-aki-authoritycertissuer": _ROOT_AKI_FIELDS,
    "webpki::aki::root-with-aki-authoritycertserialnumber": _ROOT_AKI_FIELDS,
    "webpki::aki::root-with-aki-all-fields": _ROOT_AKI_FIELDS,
    "webpki::aki::root-with-aki-ski-mismatch": _ROOT_AKI_FIELDS,
    "webpki::cn::ipv4-hex-mismatch": _CN_NOT_HOSTNAME,
    "webpki::cn::ipv4-leading-zeros-mismatch": _CN_NOT_HOSTNAME,
    "webpki::cn::ipv6-uppercase-mismatch": _CN_NOT_HOSTNAME,
    "webpki::cn::ipv6-uncompressed-mismatch": _CN_NOT_HOSTNAME,
    "webpki::cn::ipv6-non-rfc5952-mismatch": _CN_NOT_HOSTNAME,
    "webpki::cn::punycode-not-in-san": _CN_NOT_HOSTNAME,
    "webpki::cn::utf8-vs-punycode-mismatch": _CN_NOT_HOSTNAME,
    "webpki::cn::not-in-san": _CN_NOT_HOSTNAME,
    "webpki::cn::case-mismatch": _CN_NOT_HOSTNAME,
    "rfc5280::nc::permitted-dns-match-noncritical": "P7 (cryptography): a non-critical "
    "nameConstraints extension is honoured as CA/B 7.1.2.10.8 allows; RFC 5280 4.2.1.10 says "
    "it MUST be critical",
    "rfc5280::nc::permitted-dn-match": "N1 (cryptography): directoryName name constraints are "
    "not implemented and a critical one fails closed, so a chain RFC 5280 accepts is refused",
    "pathological::nc-dos-3": "P7: name constraints apply to SANs, not to subject CNs; the chain "
    "is valid by the case's own description (validators refuse it only for the quadratic cost) "
    "and devprov validates it in milliseconds",
    "rfc5280::pc::ica-noncritical-pc": "cryptography processes no certificate policies "
    "(RFC 5280 6.1.3(d)-(f)); a non-critical policyConstraints extension is ignored",
    "rfc5280::serial::zero": "P8 (cryptography): a zero serial is accepted because trust stores "
    "still hold such roots; RFC 5280 4.1.2.2 requires a positive one",
    "webpki::forbidden-rsa-not-divisible-by-8-in-root": "P2 (cryptography): issuer RSA moduli "
    "need not be a multiple of 8 (CA/B 6.1.5); devprov checks that only for device keys (E7)",
}


# --- running a case ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    actual: str  # SUCCESS, FAILURE or SKIPPED
    context: str
    seconds: float = 0.0
    timed_out: bool = False


def load_suite() -> dict[str, dict[str, Any]]:
    """The suite by case id; empty when the file is missing (test_suite_is_present says so)."""
    if not LIMBO_PATH.is_file():
        return {}
    document = json.loads(LIMBO_PATH.read_text(encoding="utf-8"))
    return {case["id"]: case for case in document["testcases"]}


SUITE = load_suite()


def skip_reason(case: dict[str, Any]) -> str | None:
    for feature in case["features"] or ():
        if feature in SKIP_FEATURES:
            return SKIP_FEATURES[feature]
    return SKIPS.get(case["id"])


def _load(pem: str) -> x509.Certificate:
    # cryptography warns (and will one day refuse) when parsing a zero or negative serial; the
    # suite has such certificates on purpose and the verdict is the validator's, not the parser's.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_pem_x509_certificate(pem.encode("ascii"))


def evaluate_inline(case: dict[str, Any]) -> Outcome:
    """Run one case through validate_device_chain in this process."""
    if case["signature_algorithms"]:
        raise AssertionError(f"{case['id']}: signature_algorithms is not supported by the harness")
    names = case["extended_key_usage"] or ()
    if len(names) > 1:
        raise AssertionError(f"{case['id']}: more than one required EKU: {names}")
    eku = EKU_BY_NAME[names[0]] if names else DEFAULT_EKU_BY_KIND[case["validation_kind"]]
    options: dict[str, Any] = {"required_eku": eku}
    if case["max_chain_depth"] is not None:
        options["max_chain_depth"] = case["max_chain_depth"]
    at = (
        datetime.fromisoformat(case["validation_time"])
        if case["validation_time"]
        else datetime.now(UTC)
    )
    started = time.perf_counter()
    try:
        leaf = _load(case["peer_certificate"])
        intermediates = [_load(pem) for pem in case["untrusted_intermediates"]]
        anchors = [_load(pem) for pem in case["trusted_certs"]]
    except ValueError as exc:
        # A certificate that does not parse never reaches the validator: devprov refuses it.
        return Outcome("FAILURE", f"{PARSE}{exc}", time.perf_counter() - started)
    try:
        validate_device_chain(leaf, intermediates, anchors, at=at, **options)
    except DevprovError as exc:
        return Outcome("FAILURE", exc.message, time.perf_counter() - started)
    return Outcome("SUCCESS", "chain validated", time.perf_counter() - started)


def evaluate_in_child(case: dict[str, Any]) -> Outcome:
    """Run one case in a child process that is killed at DOS_TIME_LIMIT_SECONDS."""
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "tests.conformance.test_limbo"],
            input=json.dumps(case),
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=DOS_TIME_LIMIT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Outcome(
            "FAILURE",
            f"timed out: still running after {DOS_TIME_LIMIT_SECONDS} s",
            time.perf_counter() - started,
            timed_out=True,
        )
    if completed.returncode != 0:
        raise AssertionError(f"{case['id']}: the child failed:\n{completed.stderr}")
    reply = json.loads(completed.stdout)
    return Outcome(reply["actual"], reply["context"], reply["seconds"])


@functools.cache
def evaluate(case_id: str) -> Outcome:
    case = SUITE[case_id]
    reason = skip_reason(case)
    if reason is not None:
        return Outcome("SKIPPED", reason)
    if "denial-of-service" in (case["features"] or ()):
        return evaluate_in_child(case)
    return evaluate_inline(case)


# --- the tests -----------------------------------------------------------------------------------


def test_suite_is_present() -> None:
    assert LIMBO_PATH.is_file(), (
        f"x509-limbo suite not found at {LIMBO_PATH}; it is part of the repository"
    )
    assert len(SUITE) == EXPECTED_CASES


def test_lists_name_real_cases_once() -> None:
    assert SUITE, "the suite is missing"
    for listed in (SKIPS, DEVIATIONS):
        unknown = sorted(set(listed) - set(SUITE))
        assert not unknown, f"listed but not in the suite: {unknown}"
    assert not set(SKIPS) & set(DEVIATIONS)
    for case_id in DEVIATIONS:
        assert skip_reason(SUITE[case_id]) is None, f"{case_id} is both skipped and a deviation"


@pytest.mark.parametrize("case_id", sorted(SUITE))
def test_case(case_id: str) -> None:
    case = SUITE[case_id]
    outcome = evaluate(case_id)
    if outcome.actual == "SKIPPED":
        pytest.skip(outcome.context)
    assert not outcome.timed_out, f"{case_id}: {outcome.context}"
    expected = case["expected_result"]
    if case_id in DEVIATIONS:
        assert outcome.actual != expected, (
            f"{case_id} now agrees with x509-limbo ({expected}); remove it from DEVIATIONS "
            f"(it said: {DEVIATIONS[case_id]})"
        )
    else:
        assert outcome.actual == expected, f"{case_id}: {outcome.context}"


def test_refusals_name_a_rule_in_plain_words() -> None:
    """Every refusal of the suite, whatever cryptography's reason, reads as devprov's: the device
    first, a rule of docs/chain-validation.md, and no Rust or Python debug output."""
    refused = 0
    for case_id in sorted(SUITE):
        outcome = evaluate(case_id)
        if outcome.actual != "FAILURE" or outcome.timed_out or outcome.context.startswith(PARSE):
            continue
        refused += 1
        assert outcome.context.startswith("device certificate '"), outcome.context
        assert re.search(r"\(rule [PCEN]\d, ", outcome.context), f"{case_id}: {outcome.context}"
        assert_plain_words(outcome.context)
    assert refused > 90


def test_peer_name_skips_are_otherwise_valid() -> None:
    # The reason given for these skips claims the chain itself validates; keep it true.
    for case_id in SKIPS:
        outcome = evaluate_inline(SUITE[case_id])
        assert outcome.actual == "SUCCESS", f"{case_id}: {outcome.context}"


def test_denial_of_service_limit_kills_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    case = next(c for c in SUITE.values() if "denial-of-service" in (c["features"] or ()))
    monkeypatch.setattr(sys.modules[__name__], "DOS_TIME_LIMIT_SECONDS", 0.001)
    outcome = evaluate_in_child(case)
    assert outcome.timed_out and outcome.actual == "FAILURE"


@dataclass(frozen=True)
class Summary:
    agree: int
    deviate: int
    skipped: Counter[str]
    disagree: tuple[str, ...]
    results: tuple[dict[str, str], ...]

    @property
    def total(self) -> int:
        return self.agree + self.deviate + sum(self.skipped.values()) + len(self.disagree)

    def table(self) -> str:
        lines = [
            f"x509-limbo through devprov's device profile: {self.total} cases",
            f"  agree      {self.agree:4d}",
            f"  deviate    {self.deviate:4d}  (DEVIATIONS, each with its reason)",
            f"  skipped    {sum(self.skipped.values()):4d}",
        ]
        lines += [f"    {count:4d}  {reason}" for reason, count in self.skipped.most_common()]
        lines.append(f"  disagree   {len(self.disagree):4d}  {', '.join(self.disagree)}")
        return "\n".join(lines)


def summarize() -> Summary:
    """Every case's outcome, counted: agreement, listed deviation, skip, or disagreement."""
    agree = deviate = 0
    skipped: Counter[str] = Counter()
    disagree: list[str] = []
    results: list[dict[str, str]] = []
    for case_id, case in SUITE.items():
        outcome = evaluate(case_id)
        results.append({"id": case_id, "actual_result": outcome.actual, "context": outcome.context})
        if outcome.actual == "SKIPPED":
            skipped[outcome.context] += 1
        elif outcome.timed_out:
            disagree.append(case_id)
        elif case_id in DEVIATIONS and outcome.actual != case["expected_result"]:
            deviate += 1
        elif case_id not in DEVIATIONS and outcome.actual == case["expected_result"]:
            agree += 1
        else:
            disagree.append(case_id)
    return Summary(agree, deviate, skipped, tuple(disagree), tuple(results))


def test_summary() -> None:
    summary = summarize()
    print()
    print(summary.table())
    if target := os.environ.get(RESULTS_ENV):
        document = {"version": 1, "harness": "devprov", "results": list(summary.results)}
        Path(target).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    assert summary.total == EXPECTED_CASES
    assert not summary.disagree
    assert summary.deviate == len(DEVIATIONS)


def _child_main() -> None:
    """Entry point of the child process that runs one denial-of-service case."""
    outcome = evaluate_inline(json.loads(sys.stdin.read()))
    reply = {"actual": outcome.actual, "context": outcome.context, "seconds": outcome.seconds}
    sys.stdout.write(json.dumps(reply))


if __name__ == "__main__":
    _child_main()
