"""Which enrollment group governs an X.509 device, and whether its chain is trusted: two separate
questions (service.attestation). Every arrangement of verified certificates and groups along a
root -> intermediate -> device chain, each accept with the reject that differs from it in one
fact, over real SQLite."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from cryptography.x509 import DNSName

from devprov.core.registration import RegistrationStatus
from devprov.service.attestation import Credentials
from devprov.service.attestation_error import DeviceAttestationError
from tests import factory as f
from tests.core import chain_factory as cf
from tests.core.wording import assert_plain_words
from tests.service.world import World, chain


@dataclass(frozen=True)
class Pki:
    root: f.Ca
    inter: f.Ca
    leaf: f.Ca

    def presented(self, shape: str) -> tuple[f.Ca, ...]:
        """What the device sends: its own certificate, then the chain as far as ``shape`` says."""
        return {
            "full": (self.leaf, self.inter, self.root),
            "to-intermediate": (self.leaf, self.inter),
            "leaf": (self.leaf,),
        }[shape]


@pytest.fixture
def p() -> Pki:
    root = f.root("Tour Root")
    inter = f.intermediate(root, "Tour Intermediate")
    return Pki(root, inter, f.device(inter, "dev-1"))


def sha256(ca: f.Ca) -> str:
    return hashlib.sha256(ca.der).hexdigest().upper()


def inline(ca: f.Ca) -> dict[str, object]:
    return {"signingCertificates": {"primary": {"certificate": ca.pem.decode()}}}


def reference(name: str) -> dict[str, object]:
    return {"caReferences": {"primary": name}}


@dataclass(frozen=True)
class Arrangement:
    """Registry certificates (name -> verified?) and groups (id -> x509 attestation)."""

    registry: dict[str, bool]
    groups: dict[str, Callable[[Pki], dict[str, object]]] = field(default_factory=dict)


def arrange(world: World, p: Pki, a: Arrangement) -> None:
    for name, verified in a.registry.items():
        ca = {"root": p.root, "inter": p.inter}[name]
        (world.verified_ca if verified else world.unverified_ca)(ca, name)
    for id, x509 in a.groups.items():
        world.group(id, type="x509", x509=x509(p))


ON_ROOT = {"on-root": lambda p: reference("root")}
ON_INTER = {"on-inter": lambda p: reference("inter")}

ACCEPTED = [
    # The README's tour: root proven, then the intermediate verified, then a group on the root.
    pytest.param(
        Arrangement({"root": True, "inter": True}, ON_ROOT),
        "full",
        "on-root",
        id="ok/group-on-root-intermediate-verified-full-chain",
    ),
    pytest.param(
        Arrangement({"root": True, "inter": True}, ON_ROOT),
        "to-intermediate",
        "on-root",
        id="ok/group-on-root-intermediate-verified",
    ),
    # The intermediate is verified: nothing lies between the device and a verified certificate.
    pytest.param(
        Arrangement({"root": True, "inter": True}, ON_ROOT),
        "leaf",
        "on-root",
        id="ok/group-on-root-intermediate-verified-leaf-only",
    ),
    pytest.param(
        Arrangement({"root": True, "inter": True}, ON_ROOT | ON_INTER),
        "full",
        "on-inter",
        id="ok/groups-on-both-intermediate-wins",
    ),
    pytest.param(
        Arrangement({"root": True, "inter": False}, ON_ROOT | ON_INTER),
        "full",
        "on-inter",
        id="ok/groups-on-both-intermediate-wins-only-root-verified",
    ),
    pytest.param(
        Arrangement({"root": True, "inter": False}, ON_INTER),
        "to-intermediate",
        "on-inter",
        id="ok/group-on-intermediate-rolls-up-to-verified-root",
    ),
    pytest.param(
        Arrangement({"root": True}, {"inline-inter": lambda p: inline(p.inter)}),
        "full",
        "inline-inter",
        id="ok/inline-intermediate-rolls-up-to-verified-root",
    ),
    pytest.param(
        Arrangement({"inter": True}, ON_INTER),
        "to-intermediate",
        "on-inter",
        id="ok/verified-intermediate-root-not-uploaded",
    ),
    pytest.param(
        Arrangement({"inter": True}, ON_INTER),
        "full",
        "on-inter",
        id="ok/verified-intermediate-root-not-uploaded-full-chain",
    ),
    pytest.param(
        Arrangement({"inter": True}, ON_INTER),
        "leaf",
        "on-inter",
        id="ok/verified-intermediate-leaf-only",
    ),
    pytest.param(
        Arrangement({"root": True}, ON_ROOT),
        "to-intermediate",
        "on-root",
        id="ok/group-on-verified-root-not-sent",
    ),
]

REFUSED = [
    pytest.param(
        Arrangement({"root": False, "inter": True}, ON_ROOT),
        "full",
        "CA 'root' is not verified (verified 'inter' below it anchors the chain",
        id="fail/group-on-unverified-root-above-verified-intermediate",
    ),
    pytest.param(
        Arrangement({"inter": True}, {"inline-root": lambda p: inline(p.root)}),
        "full",
        "CA 'CN=Tour Root' (not in the certificate registry) is not verified",
        id="fail/group-on-root-not-uploaded-above-verified-intermediate",
    ),
    pytest.param(
        Arrangement({"root": False, "inter": False}, ON_INTER),
        "full",
        "CA 'inter' is not verified; prove possession",
        id="fail/group-on-intermediate-nothing-verified",
    ),
    pytest.param(
        Arrangement({"root": True, "inter": False}, ON_INTER),
        "leaf",
        "the chain does not validate through CA 'inter'",
        id="fail/group-on-intermediate-rolls-up-but-intermediate-not-sent",
    ),
    pytest.param(
        Arrangement({"root": True, "inter": False}, ON_ROOT),
        "leaf",
        "the chain does not validate through CA 'root'",
        id="fail/group-on-root-unverified-intermediate-not-sent",
    ),
    pytest.param(
        Arrangement({"root": True}, ON_ROOT),
        "leaf",
        "it names the issuer 'CN=Tour Intermediate', which was not sent and is not a trust anchor",
        id="fail/group-on-root-intermediate-unknown-and-not-sent",
    ),
    pytest.param(
        Arrangement({"root": True, "inter": True}),
        "full",
        "no enrollment group trusts a certificate of the device's chain "
        "(CN=dev-1 <- CN=Tour Intermediate <- CN=Tour Root)",
        id="fail/no-group-anywhere",
    ),
]


@pytest.mark.parametrize(("arrangement", "sent", "group"), ACCEPTED)
def test_accepted(world: World, p: Pki, arrangement: Arrangement, sent: str, group: str) -> None:
    arrange(world, p, arrangement)
    state = world.register("dev-1", chain(*p.presented(sent))).state
    assert state.status is RegistrationStatus.ASSIGNED and state.enrollment_id == group
    expected_ca = p.inter if "inter" in group else p.root
    assert state.signing_certificate.sha256_thumbprint == sha256(expected_ca)


@pytest.mark.parametrize(("arrangement", "sent", "reason"), REFUSED)
def test_refused(world: World, p: Pki, arrangement: Arrangement, sent: str, reason: str) -> None:
    arrange(world, p, arrangement)
    with pytest.raises(DeviceAttestationError) as refused:
        world.register("dev-1", chain(*p.presented(sent)))
    assert reason in refused.value.message
    assert refused.value.number == 401002  # what the device sees, whatever the reason
    assert world.audit_reasons("dev-1") == [refused.value.message]


def test_verifying_other_certificates_never_changes_an_assignment(world: World, p: Pki) -> None:
    """Uploading or verifying a certificate changes which group governs an assigned device only
    when that certificate is in the device's chain and has a group of its own."""
    world.verified_ca(p.root, "root")
    world.group("on-root", type="x509", x509=reference("root"))
    device = chain(p.leaf, p.inter, p.root)

    def governing() -> str:
        state = world.register("dev-1", device).state
        assert state.status is RegistrationStatus.ASSIGNED
        return state.enrollment_id

    assert governing() == "on-root"
    world.unverified_ca(p.inter, "inter")
    assert governing() == "on-root"
    world.prove("inter", p.inter)
    assert governing() == "on-root"
    other = f.root("Other Root")
    world.verified_ca(other, "other-root")
    world.verified_ca(f.intermediate(other, "Tour Intermediate"), "look-alike")
    world.group("on-other", type="x509", x509=reference("other-root"))
    assert governing() == "on-root"
    world.group("on-inter", type="x509", x509=reference("inter"))
    assert governing() == "on-inter"  # in the chain, with a group of its own: nearest wins


def test_a_look_alike_issuer_does_not_take_the_path(world: World, p: Pki) -> None:
    """A certificate named like the real root but with another key, sent by the device, does not
    hide the real root's group: of two certificates of that name, the one that signed wins."""
    world.verified_ca(p.root, "root")
    world.group("on-root", type="x509", x509=reference("root"))
    look_alike = f.root("Tour Root")
    state = world.register("dev-1", chain(p.leaf, p.inter, look_alike)).state
    assert state.enrollment_id == "on-root"


def test_a_look_alike_alone_is_refused(world: World, p: Pki) -> None:
    """The reject twin: a forged intermediate (the real one's name, the device's own key) leads
    nowhere, since validation checks every signature of the path it trusts."""
    world.verified_ca(p.root, "root")
    world.group("on-root", type="x509", x509=reference("root"))
    forged_inter = f.intermediate(f.root("Tour Root"), "Tour Intermediate")
    forged_leaf = f.device(forged_inter, "dev-1")
    with pytest.raises(DeviceAttestationError, match="does not validate through CA 'root'"):
        world.register("dev-1", chain(forged_leaf, forged_inter))


def test_the_chain_above_a_verified_intermediate_is_validated_in_full(world: World) -> None:
    """A group's CA above the first verified certificate must itself be valid: once the root
    expires, its group refuses the device, while a group on the verified intermediate (valid
    longer than its root, as happens) still accepts it."""
    root = f.root("Short Root", now=world.clock.now - timedelta(days=10), days=20)
    inter = f.intermediate(root, "Long Intermediate", now=world.clock.now, days=100)
    leaf = f.device(inter, "dev-1", now=world.clock.now, days=100)
    world.verified_ca(root, "root")
    world.verified_ca(inter, "inter")
    world.group("on-root", type="x509", x509=reference("root"))
    device = chain(leaf, inter, root)
    assert world.register("dev-1", device).state.enrollment_id == "on-root"
    world.clock.advance(days=15)
    with pytest.raises(DeviceAttestationError, match="does not validate through CA 'root'"):
        world.register("dev-1", device)
    world.group("on-inter", type="x509", x509=reference("inter"))
    assert world.register("dev-1", device).state.enrollment_id == "on-inter"


# --- refusals in plain words ---------------------------------------------------------------------


def test_a_ca_certificate_presented_as_a_device_is_refused_by_rule_e1(world: World, p: Pki) -> None:
    """certGen's create_edge_device_certificate makes CN=<name>.ca with CA extensions; the log
    says which rule refused it and what to use instead."""
    world.verified_ca(p.root, "root")
    world.group("on-root", type="x509", x509=reference("root"))
    edge_ca = f.intermediate(p.inter, "my-edge.ca")
    with pytest.raises(DeviceAttestationError) as refused:
        world.register("my-edge.ca", chain(edge_ca, p.inter, p.root))
    message = refused.value.message
    assert message.startswith(
        "enrollment group 'on-root': the chain does not validate through CA 'root' up to a "
        "verified certificate: device certificate 'CN=my-edge.ca' does not validate: it is a CA "
        "certificate (basicConstraints CA:TRUE)"
    )
    assert "(rule E1, RFC 5280 4.2.1.9)" in message
    assert "certGen's create_edge_device_certificate makes such a certificate" in message
    assert "create_device_certificate, or devprov ca device" in message
    assert_plain_words(message)
    assert world.audit_reasons("my-edge.ca") == [message]


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param(
            b"\x30\x03\x02\x01\x00",
            "certificate 2 of the 2 the device sent: the DER data is not an X.509 certificate",
            id="fail/garbage-intermediate",
        ),
        pytest.param(
            f.root("Tour Root").der[:-20],
            "certificate 2 of the 2 the device sent: the DER data is not an X.509 certificate: "
            "the data ends early (it is truncated)",
            id="fail/truncated-intermediate",
        ),
    ],
)
def test_a_chain_that_does_not_parse_names_the_certificate(
    world: World, p: Pki, second: bytes, expected: str
) -> None:
    world.verified_ca(p.root, "root")
    world.group("on-root", type="x509", x509=reference("root"))
    with pytest.raises(DeviceAttestationError) as refused:
        world.register("dev-1", Credentials(chain_der=(p.leaf.der, second)))
    message = refused.value.message
    assert message.startswith("the presented certificate chain does not parse: ")
    assert expected in message
    assert_plain_words(message)


def test_a_device_certificate_without_cn_is_refused_in_words(world: World, p: Pki) -> None:
    nameless = cf.leaf(p.inter, "", san=[DNSName("dev.example")], san_critical=True)
    with pytest.raises(DeviceAttestationError) as refused:
        world.register("dev-1", chain(nameless, p.inter))
    message = refused.value.message
    assert "registration id 'dev-1' is not the certificate's CN (it has no CN)" in message
    assert_plain_words(message)
