"""Benchmark of proof-of-possession: the verify endpoint against the raw crypto it needs.

Prints, from one run on this machine:
- verify requests per second and p50/p99 latency over HTTPS keep-alive with C concurrent
  clients against a real ``devprov serve`` process, and the server's CPU time per verify
  (read from /proc before and after);
- beside it, the raw cost in the same run of cryptography's PEM parse plus one signature check
  (``load_pem_x509_certificate`` + ``verify_directly_issued_by``), and the ratio of the two;
- ``devprov ca demo`` time beside the equivalent ``openssl`` command sequence (bench/ca_demo.py).

Usage: .venv/bin/python bench/possession.py [--certificates 200] [--clients 4] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tests.server import running_server

from devprov.cli.main import main as devprov
from devprov.core.certificate import to_pem
from devprov.core.issuance import Issuer, build_root_certificate, build_verification_certificate
from devprov.core.possession import VerificationCodes, verify_possession

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def raw_parse_and_verify(ca: x509.Certificate, proof_pem: bytes, seconds: float = 2.0) -> float:
    """Microseconds per parse plus signature check, in this process."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x509.load_pem_x509_certificate(proof_pem).verify_directly_issued_by(ca)
        count += 1
    return (time.perf_counter() - start) / count * 1e6


def core_verify(ca: x509.Certificate, proof_pem: bytes, seconds: float = 2.0) -> float:
    """Microseconds per devprov's own decision (core.possession.verify_possession), in this
    process: parsing, the code rules, the signature and validity, without HTTP or storage."""
    code = x509.load_pem_x509_certificate(proof_pem).subject.rfc4514_string().removeprefix("CN=")
    codes = VerificationCodes(current=code, issued_at=datetime.now(UTC))
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        verify_possession(ca, proof_pem, codes, now=datetime.now(UTC))
        count += 1
    return (time.perf_counter() - start) / count * 1e6


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_verify(certificates: int, clients: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    ca = build_root_certificate(key, "Bench Root", serial=1, now=now, days=30)
    ca_pem = to_pem(ca)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        with running_server(data) as server:
            assert (
                devprov(
                    [
                        "service",
                        "create",
                        "bench",
                        "--max-certificates",
                        str(certificates),
                        "--data-dir",
                        str(data),
                    ]
                )
                == 0
            )
            base = (
                f"{server.url}/subscriptions/s/resourceGroups/g/providers/Microsoft.Devices"
                f"/provisioningServices/bench/certificates"
            )
            headers = {"Authorization": f"Bearer {server.token}"}
            jobs: list[tuple[str, str, str]] = []
            with httpx.Client(
                verify=ssl.create_default_context(cafile=str(server.ca_file)), headers=headers
            ) as http:
                for i in range(certificates):
                    created = http.put(f"{base}/c{i}", json={"certificate": ca_pem}).json()
                    coded = http.post(
                        f"{base}/c{i}/generateVerificationCode",
                        headers={"If-Match": created["etag"]},
                    ).json()
                    if "properties" not in coded:
                        raise RuntimeError(f"set-up failed: {created} / {coded}")
                    proof = build_verification_certificate(
                        ec.generate_private_key(ec.SECP256R1()).public_key(),
                        coded["properties"]["verificationCode"],
                        Issuer(ca, key),
                        serial=i + 2,
                        now=now,
                    )
                    jobs.append((f"c{i}", coded["etag"], to_pem(proof)))
            raw_us = raw_parse_and_verify(ca, jobs[0][2].encode())
            core_us = core_verify(ca, jobs[0][2].encode())
            latencies: list[float] = []
            failures: list[int] = []
            lock = threading.Lock()
            shares = [jobs[i::clients] for i in range(clients)]
            barrier = threading.Barrier(clients + 1)

            def run(share: list[tuple[str, str, str]]) -> None:
                with httpx.Client(
                    verify=ssl.create_default_context(cafile=str(server.ca_file)), headers=headers
                ) as http:
                    http.get(base)  # open the keep-alive connection before timing
                    barrier.wait()
                    for name, etag, proof in share:
                        start = time.perf_counter()
                        response = http.post(
                            f"{base}/{name}/verify",
                            json={"certificate": proof},
                            headers={"If-Match": etag},
                        )
                        elapsed = time.perf_counter() - start
                        with lock:
                            latencies.append(elapsed)
                            if response.status_code != 200:
                                failures.append(response.status_code)

            threads = [threading.Thread(target=run, args=(share,)) for share in shares]
            for thread in threads:
                thread.start()
            barrier.wait()
            cpu_before, wall_before = cpu_seconds(server.process.pid), time.perf_counter()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - wall_before
            cpu = cpu_seconds(server.process.pid) - cpu_before
    if failures:
        raise RuntimeError(f"{len(failures)} verify calls failed: {sorted(set(failures))}")
    return {
        "requests": len(latencies),
        "rps": len(latencies) / wall,
        "p50_ms": percentile(latencies, 0.50) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
        "server_cpu_us": cpu / len(latencies) * 1e6,
        "raw_us": raw_us,
        "core_us": core_us,
        "proof_pem": jobs[0][2],
    }


def _empty_endpoint_server(pki_dir: str, ports: Any) -> None:
    """A devprov HTTPS server whose one Starlette route reads the body and answers small JSON:
    the floor under any endpoint of this stack (TLS records, h11, Starlette, JSON)."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from devprov.http.server import HttpsServer
    from devprov.transport.tls import build_server_context

    async def verify(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"properties": {"isVerified": True}, "etag": "AAAAAAAAAAA="})

    async def serve() -> None:
        app = Starlette(routes=[Route("/c/{name}/verify", verify, methods=["POST"])])
        context = build_server_context(Path(pki_dir) / "server.pem", Path(pki_dir) / "server.key")
        server = HttpsServer(app, context)
        ports.put(await server.start("127.0.0.1", 0))
        await asyncio.sleep(3600)

    asyncio.run(serve())


def bench_floor(requests: int, clients: int, proof_pem: str) -> float:
    """Server CPU per request of the empty endpoint, same body and client as the verify run."""
    import multiprocessing

    import tls_handshake  # bench/tls_handshake.py

    with tempfile.TemporaryDirectory() as tmp:
        pki = tls_handshake.build_pki(Path(tmp))
        context = multiprocessing.get_context("spawn")
        ports = context.Queue()
        process = context.Process(
            target=_empty_endpoint_server, args=(str(pki.directory), ports), daemon=True
        )
        process.start()
        try:
            port = ports.get(timeout=30)
            pid = process.pid
            assert pid is not None
            verify = ssl.create_default_context(cafile=str(pki.root))
            base = f"https://127.0.0.1:{port}/c"
            barrier = threading.Barrier(clients + 1)

            def run() -> None:
                with httpx.Client(verify=verify) as http:
                    http.post(f"{base}/warm/verify", json={})
                    barrier.wait()
                    for i in range(requests // clients):
                        http.post(
                            f"{base}/c{i}/verify",
                            json={"certificate": proof_pem},
                            headers={"If-Match": "x"},
                        )

            threads = [threading.Thread(target=run) for _ in range(clients)]
            for thread in threads:
                thread.start()
            barrier.wait()
            before = cpu_seconds(pid)
            for thread in threads:
                thread.join()
            return (cpu_seconds(pid) - before) / (requests // clients * clients) * 1e6
        finally:
            process.kill()
            process.join()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--certificates", type=int, default=200, help="verify calls (one per certificate)"
    )
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the ca demo comparison")
    parser.add_argument("--skip-ca-demo", action="store_true")
    args = parser.parse_args()

    result = bench_verify(args.certificates, args.clients)
    print(
        f"verify endpoint, {result['requests']:.0f} requests, {args.clients} clients, HTTPS keep-alive:"
    )
    print(f"  throughput          {result['rps']:8.1f} verifies/s")
    print(f"  latency p50 / p99   {result['p50_ms']:8.2f} ms / {result['p99_ms']:.2f} ms")
    print(f"  server CPU          {result['server_cpu_us']:8.0f} us per verify (whole request)")
    print(f"  raw parse + verify  {result['raw_us']:8.0f} us (cryptography, same run)")
    print(
        f"  devprov's decision  {result['core_us']:8.0f} us (core.possession.verify_possession, same run;"
        f" {result['core_us'] / result['raw_us']:.1f}x raw)"
    )
    floor_us = bench_floor(args.certificates, args.clients, result["proof_pem"])
    print(
        f"  empty endpoint      {floor_us:8.0f} us per request (same HTTPS server, Starlette route, body and"
        " clients; no work): the floor under any endpoint"
    )
    ratio = result["server_cpu_us"] / result["raw_us"]
    verdict = "met" if ratio <= 5 else "NOT met"
    print(f"  whole request / raw {ratio:8.1f}x   (target: within 5x: {verdict})")
    print(
        f"  floor / raw         {floor_us / result['raw_us']:8.1f}x   (what the stack costs before any verify work)"
    )

    if not args.skip_ca_demo:
        import ca_demo  # bench/ca_demo.py

        print()
        ca_demo.report(ca_demo.run(args.rounds), args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
