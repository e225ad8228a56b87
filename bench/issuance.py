"""X.509 registrations that are issued an operational certificate, against one real ``devprov
serve``, beside plain registrations on the same server, PKI and client threads, in the same run;
and, in this process, what the certificate's own steps cost as raw ``cryptography`` calls.

Three kinds of registration, each an X.509 device (EC P-256 leaf + intermediate) on a NEW TLS
connection, registering over HTTPS as ``bench/registration.py`` does (register, polls while
assigning; devprov answers at once, so none):

- **plain**: no ``csr``; its enrollment group names no credential policy;
- **issued, P-384 CA**: the register carries ``csr``, base64 of the DER of a PKCS#10 request for
  a fresh EC P-256 key with CN = the registration id; its group names a credential policy whose
  generated CA has an EC P-384 key (``devprov credential-policy create --key-type ec-p384``,
  devprov's default; it signs with SHA-384);
- **issued, P-256 CA**: the same, under a policy with an EC P-256 CA (SHA-256).

The three groups sit on one root, proven with ``devprov certificate prove``: each has its own
intermediate under it, inline (``signingCertificates``), so that a device's chain says which
group it belongs to (docs/attestation.md#which-enrollment-applies: one certificate, one group).
Every issued answer is checked: status assigned to the hub, ``issuedCertificateChain`` of 2
(leaf + issuing CA), the leaf's CN the registration id, issued by that CA, whose key is on the
policy's curve; a plain answer must carry no chain. A device that fails a check is a failure,
and any failure makes the exit status 1.

Each round makes N fresh devices per kind, their keys, certificates and CSRs before anything is
timed, then runs the kinds in a rotating order. Server CPU is the server process's utime + stime
from /proc before and after each run; the client threads share the server's cores
(docs/performance.md#machine-and-method), so CPU per registration is the guide to the server's
ceiling, and an issued kind's extra CPU over plain (paired within a round) is what issuing costs
the server. The baseline beside it, timed in this process after the rounds: cryptography's
``CertificateBuilder`` building and signing a leaf for a CSR's key (devprov's five extensions)
with a P-384 and with a P-256 CA key, loading such a key from PEM (devprov reads the policy's key
file at every issuance), and parsing + verifying a CSR from its base64.

Usage: .venv/bin/python bench/issuance.py [--devices 300] [--clients 4] [--rounds 1]
                                          [--timeout 300]
One round by default, to keep it quick; a single run on this machine can be 30 % off, so use
``--rounds 3`` or more for figures worth quoting.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import io
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tests.server import ServerProcess, running_server

import mqtt  # bench/mqtt.py: the machine line, the revision, the per-run line
import registration as https  # bench/registration.py: PKI, set-up, client threads, HTTPS client
from devprov.cli.main import main as devprov
from devprov.core.issuance import Issuer

KINDS = ("plain", "p384", "p256")
LABELS = {"plain": "plain (no CSR)", "p384": "issued, P-384 CA", "p256": "issued, P-256 CA"}
ISSUED = KINDS[1:]
# The credential policy of each issued kind: its name and its generated CA's key type.
POLICIES = {"p384": ("bench-p384", "ec-p384"), "p256": ("bench-p256", "ec-p256")}
CURVES = {"p384": ec.SECP384R1(), "p256": ec.SECP256R1()}
HASHES = {"p384": hashes.SHA384(), "p256": hashes.SHA256()}  # as devprov signs with each
CHAIN_LENGTH = 2  # the issued leaf and the policy's generated (self-signed) CA
BASELINE_SAMPLES = 200  # CSRs signed, keys loaded and CSRs verified per baseline figure


# --- devices with CSRs, and what their answers must be ---------------------------------------


def build_csr(registration_id: str) -> str:
    """``csr`` as a device sends it: base64 of the DER of a request for a fresh EC P-256 key,
    CN = the registration id (docs/operational-certificates.md#the-wire)."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, registration_id)]))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode("ascii")


@dataclass(frozen=True)
class Expect:
    """What the assigned answer of a ``kind`` registration must carry (an https.Check)."""

    kind: str

    def __call__(self, rid: str, document: dict[str, Any]) -> None:
        chain = document.get("registrationState", {}).get("issuedCertificateChain")
        if self.kind == "plain":
            if chain is not None:
                raise https.BenchFailure(f"{rid}: issuedCertificateChain without a CSR")
            return
        if not isinstance(chain, list) or len(chain) != CHAIN_LENGTH:
            count = len(chain) if isinstance(chain, list) else "no"
            raise https.BenchFailure(
                f"{rid}: issuedCertificateChain of {count} certificates, not {CHAIN_LENGTH}"
                " (leaf + CA)"
            )
        leaf, ca = (x509.load_der_x509_certificate(base64.b64decode(item)) for item in chain)
        names = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [rid]:
            raise https.BenchFailure(f"{rid}: the issued leaf's CN is {names}, not [{rid!r}]")
        if leaf.issuer != ca.subject:
            raise https.BenchFailure(f"{rid}: the leaf's issuer is not the chain's CA")
        key = ca.public_key()
        curve = CURVES[self.kind].name
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
            raise https.BenchFailure(f"{rid}: the issuing CA's key is not EC {curve}")


@dataclass(frozen=True)
class Fleet:
    """One run's devices of one kind, with their CSRs (none for plain), made before timing."""

    kind: str
    devices: list[https.Device]
    csrs: dict[str, str]


def build_fleet(
    pki: https.DevicePki, kind: str, issuer: Issuer, prefix: str, count: int, server_ca: Path
) -> Fleet:
    devices = pki.devices(prefix, count, server_ca, issuer)
    csrs = (
        {}
        if kind == "plain"
        else {d.registration_id: build_csr(d.registration_id) for d in devices}
    )
    return Fleet(kind, devices, csrs)


def register(port: int, scope: str, fleet: Fleet, device: https.Device) -> int:
    """One registration of ``fleet``'s kind over a new connection, its answer checked."""
    csr = fleet.csrs.get(device.registration_id)
    fields = None if csr is None else {"csr": csr}
    return https.register_device(port, scope, device, fields, Expect(fleet.kind))


# --- set-up ---------------------------------------------------------------------------------


def set_up_kinds(server: ServerProcess, pki: https.DevicePki) -> tuple[str, dict[str, Issuer]]:
    """The two credential policies (devprov credential-policy create), an intermediate per kind
    under the root, and a group per kind on its intermediate (bench-plain names no policy);
    https.set_up proves the root and links the hub. The ID scope, and each kind's issuer."""
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        for name, key_type in POLICIES.values():
            made = devprov(
                ["credential-policy", "create", name, "--key-type", key_type, *server.cli_args()]
            )
            if made != 0:
                raise RuntimeError(f"credential policy {name}: exit {made}: {quiet.getvalue()}")
    issuers = {kind: pki.new_intermediate(f"devprov bench {kind} intermediate") for kind in KINDS}
    groups = []
    for kind, issuer in issuers.items():
        pem = issuer.certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        group: dict[str, Any] = {
            "enrollmentGroupId": f"bench-{kind}",
            "attestation": {
                "type": "x509",
                "x509": {"signingCertificates": {"primary": {"certificate": pem}}},
            },
        }
        if kind in POLICIES:
            group["credentialPolicyName"] = POLICIES[kind][0]
        groups.append(group)
    return https.set_up(server, pki, groups), issuers


# --- the baseline: the certificate's steps as raw cryptography calls ------------------------


@dataclass(frozen=True)
class Baseline:
    sign_us: dict[str, float]  # per issued kind: build and sign a leaf for a CSR's key, DER
    load_key_us: dict[str, float]  # per issued kind: load_pem_private_key of the CA's key
    csr_us: float  # base64-decode, parse and verify the signature of a CSR


def _raw_ca(kind: str, now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(CURVES[kind])
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"raw {kind} CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, HASHES[kind])
    )
    return certificate, key


def _raw_leaf(
    csr: x509.CertificateSigningRequest,
    ca: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    algorithm: hashes.HashAlgorithm,
    now: datetime,
) -> bytes:
    """What devprov's issuance builds (docs/operational-certificates.md#the-csr-rules), by hand:
    CN, CA:FALSE and keyUsage digitalSignature (critical), EKU clientAuth, SKI, AKI."""
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise TypeError("the bench's CSRs are EC")
    subject = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(subject))]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(secrets.randbits(159) | 1)
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, algorithm)
    )
    return leaf.public_bytes(serialization.Encoding.DER)


def raw_baseline(samples: int = BASELINE_SAMPLES) -> Baseline:
    """Process CPU time per operation, each over ``samples`` fresh CSRs (made before timing)."""
    now = datetime.now(UTC)
    texts = [build_csr(f"raw-{index:05d}") for index in range(samples)]
    started = time.process_time()
    for text in texts:
        request = x509.load_der_x509_csr(base64.b64decode(text))
        if not request.is_signature_valid:
            raise https.BenchFailure("a raw CSR does not verify")
    csr_us = (time.process_time() - started) / samples * 1e6
    requests = [x509.load_der_x509_csr(base64.b64decode(text)) for text in texts]
    sign_us, load_us = {}, {}
    for kind in ISSUED:
        ca, key = _raw_ca(kind, now)
        started = time.process_time()
        for request in requests:
            _raw_leaf(request, ca, key, HASHES[kind], now)
        sign_us[kind] = (time.process_time() - started) / samples * 1e6
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        started = time.process_time()
        for _ in range(samples):
            serialization.load_pem_private_key(pem, password=None)
        load_us[kind] = (time.process_time() - started) / samples * 1e6
    return Baseline(sign_us, load_us, csr_us)


# --- the run --------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> dict[str, list[https.Run]]:
    runs: dict[str, list[https.Run]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="devprov-bench-issuance-") as tmp:
        (Path(tmp) / "pki").mkdir()
        pki = https.DevicePki(Path(tmp) / "pki")
        with running_server(Path(tmp) / "data") as server:
            scope, issuers = set_up_kinds(server, pki)
            port, pid = server.port, server.process.pid
            for kind in KINDS:  # imports, caches, key files, and a check of each kind
                fleet = build_fleet(
                    pki, kind, issuers[kind], f"warm-{kind}", https.WARM_UP_DEVICES, server.ca_file
                )
                for device in fleet.devices:
                    register(port, scope, fleet, device)
            for number in range(args.rounds):
                fleets = {
                    kind: build_fleet(
                        pki, kind, issuers[kind], f"{kind}-r{number}", args.devices, server.ca_file
                    )
                    for kind in KINDS
                }
                shift = number % len(KINDS)
                for kind in KINDS[shift:] + KINDS[:shift]:
                    work = functools.partial(register, port, scope, fleets[kind])
                    run = https.drive(
                        kind, work, fleets[kind].devices, args.clients, pid, args.timeout
                    )
                    runs[kind].append(run)
                print(f"round {number + 1}:")
                for kind in KINDS:
                    print(mqtt.line(LABELS[kind], runs[kind][-1]))
    return runs


# --- reporting ------------------------------------------------------------------------------


def print_summary(runs: dict[str, list[https.Run]], baseline: Baseline) -> None:
    s = https._summary
    count = len(runs["plain"])
    how = "single figures" if count == 1 else f"median [min-max] over {count} rounds"
    print(f"\nsummary ({how}):")
    for kind in KINDS:
        each = runs[kind]
        print(
            f"  {LABELS[kind]:<17} {s([r.rate for r in each], '.1f')} reg/s"
            f"   p50 / p99 {s([r.latency_ms(0.5) for r in each], '.1f')}"
            f" / {s([r.latency_ms(0.99) for r in each], '.1f')} ms"
            f"   server CPU/reg {s([r.cpu_us for r in each], '.0f')} us"
            f"   failures {sum(len(r.failures) for r in each)}"
        )
    print(
        f"  baseline in this process (raw cryptography, {BASELINE_SAMPLES} each):"
        f" parse + verify a CSR {baseline.csr_us:.0f} us"
    )
    for kind in ISSUED:
        pairs = list(zip(runs[kind], runs["plain"], strict=True))
        extra = [a.cpu_us - b.cpu_us for a, b in pairs]
        ratio = [https.ratio(a.cpu_us, b.cpu_us) for a, b in pairs]
        rate = [https.ratio(a.rate, b.rate) for a, b in pairs]
        raw = baseline.sign_us[kind] + baseline.load_key_us[kind] + baseline.csr_us
        print(
            f"  {LABELS[kind]} over plain: extra server CPU/reg {s(extra, '.0f')} us"
            f" ({s(ratio, '.2f')}x plain), reg/s {s(rate, '.2f')}x plain"
            f"\n    raw: sign a leaf {baseline.sign_us[kind]:.0f} us"
            f" + load the CA key {baseline.load_key_us[kind]:.0f} us"
            f" + parse + verify the CSR {baseline.csr_us:.0f} us = {raw:.0f} us;"
            f" server's extra / raw {s([e / raw for e in extra], '.2f')}x"
        )
    if count == 1:
        print("  (one round; a single run here can be 30 % off: use --rounds 3 or more)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    https.add_load_options(parser, devices=300, rounds=1)
    args = parser.parse_args(argv)
    https.check_load_options(parser, args)

    print(
        f"devprov {mqtt.describe()}, {time.strftime('%Y-%m-%d')}: {args.devices} devices per"
        f" kind and round, {args.clients} client threads, {args.rounds} round(s);"
        " X.509 (EC P-256, leaf + intermediate), a new TLS connection per device;"
        " CSRs for fresh EC P-256 keys"
        f"\nmachine: {mqtt.machine()}"
    )
    runs = bench(args)
    print_summary(runs, raw_baseline())
    failures = [f for each in runs.values() for r in each for f in r.failures]
    for reason in sorted(set(failures))[:5]:
        print(f"  failure: {reason}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
