"""One certificate against the device profile (core.conformance): the checks the chain tests
cannot reach through the verifier, because an earlier rule refuses the chain first."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from devprov.core import conformance
from tests import factory as f
from tests.core import chain_factory as cf
from tests.core.wording import assert_plain_words


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        pytest.param(lambda: f.rsa_key(2048), None, id="ok/rsa-2048"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), None, id="ok/p384"),
        pytest.param(lambda: f.rsa_key(1024), "has an RSA-1024 key", id="fail/rsa-1024"),
        pytest.param(
            lambda: ec.generate_private_key(ec.SECP192R1()),
            "has an EC key on secp192r1",
            id="fail/p192",
        ),
        pytest.param(
            ed25519.Ed25519PrivateKey.generate,
            "has an Ed25519 key of a kind CAs may not use",
            id="fail/ed25519",
        ),
    ],
)
def test_issuer_key_breach(key, problem: str | None) -> None:
    issuer = cf.ca("Issuer", key=key()).certificate
    breach = conformance.issuer_key_breach(issuer)
    if problem is None:
        assert breach is None
        return
    assert breach is not None and breach.rule == "P2"
    assert problem in breach.problem
    assert_plain_words(breach.sentence("it"))


def test_subject_of_is_bounded_and_names_an_empty_subject() -> None:
    units = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "u" * 60) for _ in range(5)]
    long = cf.certificate(x509.Name([*units, *cf.name("my-device")])).certificate
    assert len(conformance.subject_of(long)) == conformance.MAX_SUBJECT_IN_MESSAGE + len("...")
    empty = cf.leaf(None, "").certificate
    assert conformance.subject_of(empty) == "(empty subject)"
