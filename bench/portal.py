"""How the portal's pages scale: the same pages timed on a service with ``--count`` enrollment
groups (100,000 by default), as many registration records and audit events, and on a service
with 100 of each, in one data directory and one run, side by side.

The records are written through devprov's own repositories (``SqlUnitOfWork``), in batches of
``--batch`` per transaction: enrollment groups ``grp-0000000``... (symmetric key, enabled, so
no certificate is parsed), registration records of the first group, and audit events. The group
limit of the use case (100 per attestation type) is bypassed on purpose: the portal must stay
fast however many records a store holds.

Timed in-process over the ASGI app (TestClient, signed in), ``--requests`` GETs each:
the groups list's first page, a page in the middle (by its ``after`` cursor), the page of a
group (its registrations included), the registrations list, and the audit log. Printed: median
and p95 in ms for the large service beside the small one, and their ratio.

Usage: .venv/bin/python bench/portal.py [--count 100000] [--small 100] [--requests 50]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from starlette.testclient import TestClient

from devprov.bootstrap import Container, open_container
from devprov.core.enrollment import Attestation, AttestationType, Enrollment, EnrollmentKind
from devprov.core.registration import AttestationMethod, RegistrationState, RegistrationStatus
from devprov.http.app import build_app
from devprov.service.enrollment import encode_continuation
from devprov.service.model import AuditEvent, Outcome
from devprov.storage.repository import SqlUnitOfWork

KEY = "cG9ydGFsLWJlbmNoLXN5bW1ldHJpYy1rZXktMDAwMDAwMDA="  # base64; these devices never connect
HUB = "hub-a.azure-devices.net"


def group_id(index: int) -> str:
    return f"grp-{index:07d}"


def _records(
    service: str, index: int, now: datetime
) -> tuple[Enrollment, RegistrationState, AuditEvent]:
    at = now + timedelta(microseconds=index)
    group = Enrollment(
        service=service,
        kind=EnrollmentKind.GROUP,
        id=group_id(index),
        attestation=Attestation(AttestationType.SYMMETRIC_KEY, primary_key=KEY, secondary_key=KEY),
        etag=f'"bench-{index}"',
        created_at=at,
        updated_at=at,
    )
    device = f"dev-{index:07d}"
    state = RegistrationState(
        service=service,
        registration_id=device,
        method=AttestationMethod.SYMMETRIC_KEY,
        enrollment_kind=EnrollmentKind.GROUP,
        enrollment_id=group_id(0),
        status=RegistrationStatus.ASSIGNED,
        created_at=at,
        updated_at=at,
        etag=f'"bench-{index}"',
        device_id=device,
        assigned_hub=HUB,
    )
    event = AuditEvent(
        at=at,
        service=service,
        action="register",
        outcome=Outcome.SUCCEEDED if index % 10 else Outcome.FAILED,
        actor=f"device:{device}",
        registration_id=device,
    )
    return group, state, event


def fill(container: Container, service: str, count: int, batch: int) -> float:
    """Write ``count`` of each record kind into ``service``; the seconds it took."""
    started = time.perf_counter()
    container.directory.create(service)
    container.hubs.add(service, HUB, actor="test")
    now = datetime.now(UTC)
    for start in range(0, count, batch):
        with SqlUnitOfWork(container.engine) as unit:
            for index in range(start, min(start + batch, count)):
                group, state, event = _records(service, index, now)
                unit.enrollments.add(group)
                unit.registrations.add(state)
                unit.audit.record(event)
            unit.commit()
    return time.perf_counter() - started


def timed(client: TestClient, path: str, requests: int) -> list[float]:
    client.get(path)  # warm: templates compiled, statements cached
    spent = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = client.get(path)
        spent.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"GET {path}: {answer.status_code}")
    return spent


def pages(service: str, count: int) -> dict[str, str]:
    base = f"/portal/s/{service}"
    middle = encode_continuation(group_id(count // 2).lower())
    return {
        "groups, first page": f"{base}/groups",
        "groups, middle page": f"{base}/groups?after={middle}",
        "a group's page": f"{base}/groups/{group_id(0)}",
        "registrations": f"{base}/registrations",
        "audit log": f"{base}/audit",
    }


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000, help="records of the large service")
    parser.add_argument("--small", type=int, default=100, help="records of the baseline service")
    parser.add_argument("--requests", type=int, default=50, help="GETs per page")
    parser.add_argument("--batch", type=int, default=5_000, help="records per transaction")
    args = parser.parse_args(argv)
    if min(args.count, args.small, args.requests, args.batch) < 2:
        parser.error("every number must be at least 2")
    with tempfile.TemporaryDirectory(prefix="devprov-portal-bench-") as directory:
        container = open_container(Path(directory) / "data", initialize=True)
        try:
            loaded = fill(container, "large", args.count, args.batch)
            fill(container, "small", args.small, args.batch)
            print(f"filled {args.count:,} records of each kind in {loaded:.1f} s (SQLite)")
            run(container, args)
        finally:
            container.engine.dispose()
    return 0


def run(container: Container, args: argparse.Namespace) -> None:
    with TestClient(build_app(container), base_url="https://testserver") as client:
        # As a browser does: the sign-in form first (its token and pre-session cookie), then
        # the post.
        form = re.search(r'name="csrf" value="([^"]+)"', client.get("/portal/sign-in").text)
        if form is None:
            raise SystemExit("the sign-in page has no form token")
        signed = client.post(
            "/portal/sign-in",
            data={"csrf": form.group(1), "token": container.data.admin_token()},
        )
        if signed.status_code != 200:  # followed to the services page
            raise SystemExit(f"sign-in failed: {signed.status_code}")
        large, small = pages("large", args.count), pages("small", args.small)
        head = f"{'page':<22}{f'{args.count:,} median/p95 ms':>24}{f'{args.small:,} median/p95 ms':>22}{'ratio':>8}"
        print(head)
        for name in large:
            big = timed(client, large[name], args.requests)
            base = timed(client, small[name], args.requests)
            ratio = statistics.median(big) / statistics.median(base)
            print(
                f"{name:<22}{statistics.median(big):>15.1f} / {p95(big):>6.1f}"
                f"{statistics.median(base):>13.1f} / {p95(base):>6.1f}{ratio:>8.2f}"
            )


if __name__ == "__main__":
    sys.exit(main())
