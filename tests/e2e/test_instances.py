"""Two ``devprov serve`` processes on one PostgreSQL database (skipped, with the reason, where no
PostgreSQL server answers): racing requests on both keep the rules, and a trust change made
through one instance holds on the other's next request
(docs/storage.md#instances-sharing-one-database).

The second instance's data directory is a copy of the first's server TLS material and admin
token, as an operator sets up instances behind one load balancer: devices then trust one server
CA, and one admin token opens both.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from devprov.bootstrap import open_container
from devprov.cli.main import main
from devprov.core.sas import build_sas_token
from tests import factory as f
from tests.database import fresh_postgresql_database
from tests.e2e.test_device_https import device_client, register, scope, service_client
from tests.instances import running_pair
from tests.server import ServerProcess

pytestmark = pytest.mark.e2e

T = TypeVar("T")

ROUNDS = 20
ARM = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Devices/provisioningServices/default"
CERTIFICATES = f"{ARM}/certificates"
ARM_VERSION = "api-version=2025-02-01-preview"
HUB = "hub-a.azure-devices.net"
KEY = "dGhpcyBpcyBhIHRlc3Qga2V5IGZvciB0d28gaW5zdGFuY2VzIQ=="


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with fresh_postgresql_database() as database:
        root = tmp_path_factory.mktemp("instances")
        with running_pair(root, database) as (a, b):
            assert main(["hub", "add", HUB, *a.cli_args()]) == 0
            yield a, b


def admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        verify=ssl.create_default_context(cafile=str(server.ca_file)),
        headers={"Authorization": f"Bearer {server.token}"},
    )


def together(*calls: Callable[[], T]) -> list[T]:
    """Run the calls on threads released at once."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_the_instances_share_the_service_the_token_and_the_server_ca(pair) -> None:
    a, b = pair
    assert a.token == b.token
    assert a.ca_file.read_bytes() == b.ca_file.read_bytes()
    assert scope(a) == scope(b)
    with admin(a) as on_a, admin(b) as on_b:
        assert on_a.get(f"{CERTIFICATES}?{ARM_VERSION}").status_code == 200
        assert on_b.get(f"{CERTIFICATES}?{ARM_VERSION}").status_code == 200


def test_exactly_one_of_two_racing_verifies_wins(pair) -> None:
    a, b = pair
    now = datetime.now(UTC)
    with admin(a) as on_a, admin(b) as on_b:
        for round in range(ROUNDS):
            ca = f.root(f"Instance Race {round}", now=now)
            url = f"{CERTIFICATES}/verify-race-{round}"
            made = on_a.put(f"{url}?{ARM_VERSION}", json={"certificate": ca.pem.decode()})
            assert made.status_code in (200, 201), made.text
            coded = on_a.post(
                f"{url}/generateVerificationCode?{ARM_VERSION}",
                headers={"If-Match": made.json()["etag"]},
            )
            code = coded.json()["properties"]["verificationCode"]
            proof = {"certificate": f.pem(f.verification(ca, code, now=now)).decode()}
            headers = {"If-Match": coded.json()["etag"]}
            answers = together(
                partial(on_a.post, f"{url}/verify?{ARM_VERSION}", json=proof, headers=headers),
                partial(on_b.post, f"{url}/verify?{ARM_VERSION}", json=proof, headers=headers),
            )
            assert sorted(r.status_code for r in answers) == [200, 412], [r.text for r in answers]
            shown = on_b.get(f"{url}?{ARM_VERSION}").json()
            assert shown["properties"]["isVerified"] is True
            # The code is spent: the same proof with the current etag is refused on either.
            for client in (on_a, on_b):
                again = client.post(
                    f"{url}/verify?{ARM_VERSION}", json=proof, headers={"If-Match": shown["etag"]}
                )
                assert again.status_code == 400, again.text
            on_a.delete(f"{url}?{ARM_VERSION}", headers={"If-Match": "*"})


def test_a_device_registering_on_both_at_once_gets_one_assignment(pair) -> None:
    a, b = pair
    id_scope = scope(a)
    with service_client(a) as svc:
        for round in range(ROUNDS):
            rid = f"both-{round}"
            enrollment = {
                "registrationId": rid,
                "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": KEY}},
            }
            assert svc.put(f"/enrollments/{rid}", json=enrollment).status_code == 200
            token = build_sas_token(KEY, f"{id_scope}/registrations/{rid}", 2**31 - 1)
            headers = {"Authorization": token}
            with device_client(a) as on_a, device_client(b) as on_b:
                # The outcomes the registers were answered with (a poll would show the state
                # the other one wrote, when it wrote last).
                answers = together(
                    *(
                        partial(register, on, id_scope, rid, poll=False, headers=headers)
                        for on in (on_a, on_b)
                    )
                )
            assert [answer.status_code for answer, _ in answers] == [200, 200], answers
            results = [result for _, result in answers]
            assert all(r is not None and r["status"] == "assigned" for r in results), answers
            assert {
                (r["registrationState"]["assignedHub"], r["registrationState"]["deviceId"])
                for r in results
                if r
            } == {(HUB, rid)}
            stored = svc.get(f"/registrations/{rid}")
            assert stored.status_code == 200
            assert (stored.json()["assignedHub"], stored.json()["deviceId"]) == (HUB, rid)
            assert stored.json()["etag"] in {r["registrationState"]["etag"] for r in results if r}


def test_the_certificate_limit_holds_under_parallel_uploads(pair) -> None:
    a, b = pair
    limit = 5
    container = open_container(a.data_dir, database=a.database)
    try:
        held = len(container.registry.list("default"))
        container.directory.update("default", max_certificates=held + limit)
    finally:
        container.engine.dispose()
    now = datetime.now(UTC)
    cas = [f.root(f"Limit {i}", now=now) for i in range(2 * limit)]
    with admin(a) as on_a, admin(b) as on_b:

        def upload(i: int) -> Callable[[], httpx.Response]:
            client = on_a if i % 2 else on_b
            body = {"certificate": cas[i].pem.decode(), "isVerified": True}
            return lambda: client.put(f"{CERTIFICATES}/limit-{i}?{ARM_VERSION}", json=body)

        answers = together(*(upload(i) for i in range(2 * limit)))
        refused = [r for r in answers if r.status_code == 409]
        assert len(refused) == limit, [r.text for r in answers]
        assert {r.json()["error"]["code"] for r in refused} == {"CertificateLimitExceeded"}
        listed = on_b.get(f"{CERTIFICATES}?{ARM_VERSION}").json()["value"]
        assert len([c for c in listed if c["name"].startswith("limit-")]) == limit
        for c in listed:
            if c["name"].startswith("limit-"):
                on_a.delete(f"{CERTIFICATES}/{c['name']}?{ARM_VERSION}", headers={"If-Match": "*"})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("instances-pki")
    assert main(["ca", "demo", str(directory)]) == 0
    return directory


def test_trust_changed_through_one_instance_holds_on_the_other_at_once(pair, pki: Path) -> None:
    a, b = pair
    id_scope = scope(a)
    chain = (pki / "my-device-full-chain.pem", pki / "my-device.key")
    cert = ["--cert", str(pki / "root.pem")]
    assert main(["certificate", "upload", "shared-root", *cert, *a.cli_args()]) == 0
    group = {
        "enrollmentGroupId": "shared",
        "attestation": {"type": "x509", "x509": {"caReferences": {"primary": "shared-root"}}},
    }
    with service_client(a) as svc, device_client(b, *chain) as on_b:
        assert svc.put("/enrollmentGroups/shared", json=group).status_code == 200
        refused, _ = register(on_b, id_scope, "my-device")
        assert refused.status_code == 401
        # Verified through A (the CLI talks to A's endpoint): B accepts on its next request.
        key = ["--key", str(pki / "root.key")]
        assert main(["certificate", "prove", "shared-root", *cert, *key, *a.cli_args()]) == 0
        accepted, result = register(on_b, id_scope, "my-device")
        assert accepted.status_code == 200 and result is not None
        assert result["status"] == "assigned"
        # Disabled through A: B answers "disabled" on its next request.
        etag = svc.get("/enrollmentGroups/shared").json()["etag"]
        disabled = {**group, "provisioningStatus": "disabled"}
        put = svc.put("/enrollmentGroups/shared", json=disabled, headers={"If-Match": etag})
        assert put.status_code == 200
        _, result = register(on_b, id_scope, "my-device")
        assert result is not None and result["status"] == "disabled"
        # Enabled again, then the CA deleted through A: B refuses the device at once.
        etag = put.json()["etag"]
        assert (
            svc.put("/enrollmentGroups/shared", json=group, headers={"If-Match": etag}).status_code
            == 200
        )
        _, result = register(on_b, id_scope, "my-device")
        assert result is not None and result["status"] == "assigned"
        with admin(a) as on_a:
            gone = on_a.delete(
                f"{CERTIFICATES}/shared-root?{ARM_VERSION}", headers={"If-Match": "*"}
            )
            assert gone.status_code == 200, gone.text
        refused, _ = register(on_b, id_scope, "my-device")
        assert refused.status_code == 401
