"""The walk that explains a refused chain (core.refusal): its limits. Its wording, rule by rule,
is tested through the validator in tests/core/test_chain.py."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devprov.core import chain as c
from devprov.core import refusal
from devprov.core.error import InvalidDeviceCertificateError
from tests import factory as f
from tests.core import chain_factory as cf
from tests.core.wording import assert_plain_words


def test_the_walk_gives_up_after_its_signature_budget() -> None:
    """More look-alikes than the walk may check: the verifier's own reason is given, cleaned."""
    root = cf.ca("Budget Root")
    inter = cf.ca("Budget CA", root)
    leaf = cf.leaf(inter).certificate
    key = ec.generate_private_key(ec.SECP256R1())  # one key for all: generation is the slow part
    alikes = [
        cf.ca("Budget CA", root, key=key).certificate
        for _ in range(refusal.SIGNATURE_CHECK_BUDGET + 1)
    ]
    with pytest.raises(InvalidDeviceCertificateError) as caught:
        c.validate_device_chain(leaf, alikes, [root.certificate], at=f.NOW)
    message = caught.value.message
    assert message.startswith("device certificate 'CN=my-device' does not validate: the verifier ")
    assert "(rule P2, " in message
    assert_plain_words(message)


def test_within_its_budget_the_walk_names_the_look_alike() -> None:
    """The reject twin: with few look-alikes the walk checks each and names the device."""
    root = cf.ca("Budget Root")
    inter = cf.ca("Budget CA", root)
    leaf = cf.leaf(inter).certificate
    alikes = [cf.ca("Budget CA", root).certificate for _ in range(3)]
    with pytest.raises(InvalidDeviceCertificateError) as caught:
        c.validate_device_chain(leaf, alikes, [root.certificate], at=f.NOW)
    message = caught.value.message
    assert "it names 'CN=Budget CA' as its issuer, but its signature does not verify" in message
    assert "(rule P2, RFC 5280 6.1.3(a)(1))" in message
