"""What the use cases report through the Metrics port: decided registrations by outcome,
attestation and protocol; failed attestations by a reason from a fixed set; possession checks."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from devprov.core.error import DevprovError
from devprov.core.sas import derive_device_key
from devprov.service.attestation import Credentials
from devprov.service.attestation_error import ATTESTATION_FAILURE_REASONS
from devprov.service.refusal_log import Origin
from tests import factory as f
from tests.service.world import KEY, World, chain

OTHER_KEY = base64.b64encode(b"o" * 32).decode()


def test_an_assigned_x509_registration_is_counted(world: World, pki) -> None:
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}})
    world.register("dev-1", chain(leaf, inter))
    assert ("registration", "assigned", "x509", "https") in world.metrics.calls


def test_a_disabled_registration_is_counted_as_disabled(world: World, pki) -> None:
    root, inter, leaf = pki
    world.verified_ca(root, "root")
    world.group(
        "grp",
        type="x509",
        x509={"caReferences": {"primary": "root"}},
        extra={"provisioningStatus": "disabled"},
    )
    world.register("dev-1", chain(leaf, inter))
    assert ("registration", "disabled", "x509", "https") in world.metrics.calls


def test_a_failed_allocation_is_counted_as_failed(world: World) -> None:
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY})
    world.hubs.remove("default", "hub-a.azure-devices.net", actor="test")
    world.register("s-1", world.token("s-1", derive_device_key(KEY, "s-1")))
    assert ("registration", "failed", "symmetricKey", "https") in world.metrics.calls


def test_the_protocol_comes_from_the_origin(world: World) -> None:
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY})
    credentials = world.token("s-2", derive_device_key(KEY, "s-2"))
    world.devices.register(
        world.service.id_scope, "s-2", credentials, None, origin=Origin(protocol="mqtt-ws")
    )
    assert world.metrics.calls[-1] == ("registration", "assigned", "symmetricKey", "mqtt-ws")


def _failure(world: World, rid: str, credentials: Credentials) -> str:
    with pytest.raises(DevprovError):
        world.register(rid, credentials)
    (last,) = [c for c in world.metrics.calls if c[0] == "attestation_failure"][-1:]
    assert not any(c[0] == "registration" for c in world.metrics.calls)
    return last[1]


def test_symmetric_key_failures_have_their_reasons(world: World) -> None:
    assert _failure(world, "s-1", Credentials()) == "no_credentials"
    assert _failure(world, "s-1", world.token("s-1", KEY)) == "no_enrollment"
    world.group("sym", type="symmetricKey", symmetricKey={"primaryKey": KEY})
    assert _failure(world, "s-1", world.token("s-1", OTHER_KEY)) == "bad_signature"
    expired = world.token("s-1", derive_device_key(KEY, "s-1"), expiry=world.epoch() - 60)
    assert _failure(world, "s-1", expired) == "expired"
    other = world.token("s-2", derive_device_key(KEY, "s-2"))
    assert _failure(world, "s-1", other) == "registration_id_mismatch"
    garbage = Credentials(authorization="SharedAccessSignature nonsense")
    assert _failure(world, "s-1", garbage) == "malformed_credentials"
    assert _failure(world, "bad id!", world.token("bad id!", KEY)) == "invalid_registration_id"


def test_x509_failures_have_their_reasons(world: World, pki) -> None:
    root, inter, leaf = pki
    assert _failure(world, "dev-1", chain(leaf, inter)) == "no_enrollment"
    world.unverified_ca(root, "root")
    world.group("grp", type="x509", x509={"caReferences": {"primary": "root"}})
    assert _failure(world, "dev-1", chain(leaf, inter)) == "untrusted_chain"
    assert _failure(world, "dev-2", chain(leaf, inter)) == "registration_id_mismatch"
    stranger = f.device(f.root("Stranger Root"), "ind-1")
    enrolled = f.device(f.root("Other Root"), "ind-1")
    world.individual(
        "ind-1",
        {
            "attestation": {
                "type": "x509",
                "x509": {"clientCertificates": {"primary": {"certificate": enrolled.pem.decode()}}},
            }
        },
    )
    assert _failure(world, "ind-1", chain(stranger)) == "unknown_certificate"


def test_every_reason_is_a_plain_word() -> None:
    """Labels of a metric: a small fixed set, lower case, no client text."""
    assert len(set(ATTESTATION_FAILURE_REASONS)) == len(ATTESTATION_FAILURE_REASONS) < 16
    assert all(r.replace("_", "").isalpha() and r.islower() for r in ATTESTATION_FAILURE_REASONS)


def test_possession_attempts_are_counted_by_outcome(world: World, pki) -> None:
    root, _inter, _leaf = pki
    world.unverified_ca(root, "root")
    coded = world.registry.generate_code("default", "root", if_match="*", actor="t")
    wrong = f.verification(f.root("Impostor"), coded.codes.current or "", now=world.clock.now)
    with pytest.raises(DevprovError):
        world.registry.verify("default", "root", f.pem(wrong), if_match=coded.etag, actor="t")
    assert world.metrics.calls[-1] == ("possession_attempt", "failed")
    world.clock.now += timedelta(seconds=1)
    world.prove("root", root)
    assert world.metrics.calls[-1] == ("possession_attempt", "verified")


def test_a_stale_etag_is_no_possession_attempt(world: World, pki) -> None:
    root, _inter, _leaf = pki
    world.unverified_ca(root, "root")
    with pytest.raises(DevprovError):
        world.registry.verify("default", "root", b"x", if_match='"stale"', actor="t")
    assert not any(c[0] == "possession_attempt" for c in world.metrics.calls)
