from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from devprov.core import possession as p
from devprov.core.error import (
    MalformedVerificationCertificateError,
    NoVerificationCodeError,
    VerificationCertificateExpiredError,
    VerificationCertificateNotYetValidError,
    VerificationCodeExpiredError,
    VerificationCodeMismatchError,
    VerificationCodeSupersededError,
    VerificationCodeUsedError,
    VerificationSignerMismatchError,
)
from tests import factory as f
from tests.core.wording import assert_plain_words

NONCE_A = bytes(range(24))
NONCE_B = bytes(range(1, 25))


@pytest.fixture(scope="module")
def root() -> f.Ca:
    return f.root("PoP Root")


@pytest.fixture(scope="module")
def inter(root: f.Ca) -> f.Ca:
    return f.intermediate(root, "PoP Intermediate")


def issued(now=f.NOW) -> p.VerificationCodes:
    return p.issue_code(p.VerificationCodes(), NONCE_A, now=now)


def test_code_is_48_upper_hex() -> None:
    code = p.build_verification_code(NONCE_A)
    assert len(code) == 48 and code == code.upper() and bytes.fromhex(code) == NONCE_A


@pytest.mark.parametrize("size", [0, 23, 25])
def test_code_needs_24_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="24"):
        p.build_verification_code(b"\0" * size)


def test_issue_supersedes_and_consume_uses() -> None:
    first = issued()
    second = p.issue_code(first, NONCE_B, now=f.NOW)
    assert second.current == NONCE_B.hex().upper() and second.superseded == (first.current,)
    used = p.consume_code(second)
    assert used.current is None and used.issued_at is None and used.used == (second.current,)
    assert p.consume_code(used) == used


def test_remembered_codes_are_bounded() -> None:
    codes = p.VerificationCodes()
    for i in range(p.REMEMBERED_CODES + 5):
        codes = p.issue_code(codes, i.to_bytes(24, "big"), now=f.NOW)
    assert len(codes.superseded) == p.REMEMBERED_CODES


# --- accept ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signer", "encode"),
    [
        pytest.param("root", f.pem, id="ok/root-pem"),
        pytest.param("root", f.der, id="ok/root-der"),
        pytest.param(
            "root", lambda c: base64.b64encode(f.pem(c)).decode(), id="ok/root-base64-pem"
        ),
        pytest.param(
            "root", lambda c: base64.b64encode(f.der(c)).decode(), id="ok/root-base64-der"
        ),
        pytest.param("inter", f.pem, id="ok/intermediate-signs-for-itself"),
    ],
)
def test_verify_accepts(request, signer: str, encode) -> None:
    ca: f.Ca = request.getfixturevalue(signer)
    codes = issued()
    proof = p.verify_possession(
        ca.certificate,
        encode(f.verification(ca, codes.current)),
        codes,
        now=f.NOW + timedelta(minutes=59),
    )
    assert proof.code == codes.current
    assert proof.verification_certificate.common_name == codes.current
    assert proof.verified_at == f.NOW + timedelta(minutes=59)


def test_verify_accepts_rsa_ca() -> None:
    ca = f.root("RSA Root", key=f.rsa_key())
    codes = issued()
    assert p.verify_possession(
        ca.certificate, f.pem(f.verification(ca, codes.current)), codes, now=f.NOW
    )


# --- reject, one twin per rule -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"garbage", "malformed: the data is text, but neither PEM", id="fail/garbage"),
        pytest.param(b"", "malformed: no certificate data was supplied", id="fail/empty"),
    ],
)
def test_rule1_unparseable(root: f.Ca, data: bytes, message: str) -> None:
    with pytest.raises(MalformedVerificationCertificateError) as caught:
        p.verify_possession(root.certificate, data, issued(), now=f.NOW)
    assert message in caught.value.message
    assert_plain_words(caught.value.message)


def test_rule1_pfx_is_named(root: f.Ca) -> None:
    pfx = pkcs12.serialize_key_and_certificates(
        b"proof", root.key, root.certificate, None, serialization.NoEncryption()
    )
    with pytest.raises(MalformedVerificationCertificateError) as caught:
        p.verify_possession(root.certificate, pfx, issued(), now=f.NOW)
    assert "malformed: the DER data is a PKCS#12 (.pfx/.p12) file" in caught.value.message
    assert_plain_words(caught.value.message)


def test_rule1_two_certificates(root: f.Ca) -> None:
    codes = issued()
    proof = f.pem(f.verification(root, codes.current))
    with pytest.raises(MalformedVerificationCertificateError, match="exactly one"):
        p.verify_possession(root.certificate, proof + proof, codes, now=f.NOW)


def test_rule1_private_key(root: f.Ca) -> None:
    with pytest.raises(MalformedVerificationCertificateError, match="private key"):
        p.verify_possession(root.certificate, root.key_pem(), issued(), now=f.NOW)


def test_rule2_no_code_generated(root: f.Ca) -> None:
    proof = f.pem(f.verification(root, NONCE_A.hex().upper()))
    with pytest.raises(NoVerificationCodeError, match="generate one first"):
        p.verify_possession(root.certificate, proof, p.VerificationCodes(), now=f.NOW)


def test_rule2_cn_is_not_the_code(root: f.Ca) -> None:
    codes = issued()
    proof = f.pem(f.verification(root, "0" * 48))
    with pytest.raises(
        VerificationCodeMismatchError,
        match=f"CN is '{'0' * 48}'.*current verification code is '{codes.current}'",
    ):
        p.verify_possession(root.certificate, proof, codes, now=f.NOW)


def test_rule2_lower_case_code_is_a_mismatch(root: f.Ca) -> None:
    codes = issued()
    proof = f.pem(f.verification(root, codes.current.lower()))
    with pytest.raises(VerificationCodeMismatchError):
        p.verify_possession(root.certificate, proof, codes, now=f.NOW)


def test_rule2_no_common_name(root: f.Ca) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    odd = f.raw_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")]),
        issuer_name=root.certificate.subject,
        signer=root.key,
        ca=None,
    )
    with pytest.raises(VerificationCodeMismatchError, match="has no CN"):
        p.verify_possession(root.certificate, f.pem(odd.certificate), issued(), now=f.NOW)


def test_rule2_superseded_code(root: f.Ca) -> None:
    first = issued()
    second = p.issue_code(first, NONCE_B, now=f.NOW)
    proof = f.pem(f.verification(root, first.current))
    with pytest.raises(VerificationCodeSupersededError, match="superseded"):
        p.verify_possession(root.certificate, proof, second, now=f.NOW)
    # its twin: the newest code verifies
    assert p.verify_possession(
        root.certificate, f.pem(f.verification(root, second.current)), second, now=f.NOW
    )


def test_rule2_used_code(root: f.Ca) -> None:
    codes = issued()
    proof = f.pem(f.verification(root, codes.current))
    p.verify_possession(root.certificate, proof, codes, now=f.NOW)
    with pytest.raises(VerificationCodeUsedError, match="already used"):
        p.verify_possession(root.certificate, proof, p.consume_code(codes), now=f.NOW)


def test_rule2_expired_code(root: f.Ca) -> None:
    codes = issued()
    proof = f.pem(f.verification(root, codes.current, now=f.NOW + timedelta(hours=1)))
    with pytest.raises(VerificationCodeExpiredError, match="expired after 3600 s"):
        p.verify_possession(
            root.certificate, proof, codes, now=f.NOW + timedelta(hours=1, seconds=1)
        )
    assert p.verify_possession(root.certificate, proof, codes, now=f.NOW + timedelta(hours=1))


def test_rule2_custom_lifetime(root: f.Ca) -> None:
    codes = issued()
    proof = f.pem(f.verification(root, codes.current))
    with pytest.raises(VerificationCodeExpiredError):
        p.verify_possession(
            root.certificate,
            proof,
            codes,
            now=f.NOW + timedelta(seconds=61),
            code_lifetime=timedelta(seconds=60),
        )


def test_rule3_root_signed_proof_for_uploaded_intermediate(root: f.Ca, inter: f.Ca) -> None:
    codes = issued()
    proof = f.pem(f.verification(root, codes.current))
    with pytest.raises(VerificationSignerMismatchError) as caught:
        p.verify_possession(inter.certificate, proof, codes, now=f.NOW)
    assert caught.value.message == (  # in plain words: no cryptography text appended
        "the verification certificate names issuer 'CN=PoP Root', but the uploaded certificate "
        "is 'CN=PoP Intermediate': sign it with the private key of 'CN=PoP Intermediate'"
    )


def test_rule3_same_name_other_key(root: f.Ca) -> None:
    impostor = f.root("PoP Root")  # same subject, different key
    codes = issued()
    proof = f.pem(f.verification(impostor, codes.current))
    with pytest.raises(VerificationSignerMismatchError, match="signed by a different key"):
        p.verify_possession(root.certificate, proof, codes, now=f.NOW)


def test_rule3_rsa_proof_for_ec_ca(root: f.Ca) -> None:
    rsa_ca = f.root("PoP Root", key=f.rsa_key())
    codes = issued()
    proof = f.pem(f.verification(rsa_ca, codes.current))
    with pytest.raises(VerificationSignerMismatchError) as caught:
        p.verify_possession(root.certificate, proof, codes, now=f.NOW)
    assert caught.value.message == (
        "the verification certificate names issuer 'CN=PoP Root', but its signature algorithm "
        "does not fit the key of the uploaded certificate (an RSA signature for an EC key, or "
        "the reverse): sign it with the private key of 'CN=PoP Root'"
    )
    assert_plain_words(caught.value.message)


def test_rule3_self_signed_proof(root: f.Ca) -> None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    codes = issued()
    own = f.raw_certificate(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, codes.current)]), ca=None
    )
    with pytest.raises(VerificationSignerMismatchError, match=f"names issuer 'CN={codes.current}'"):
        p.verify_possession(root.certificate, f.pem(own.certificate), codes, now=f.NOW)


def test_rule4_expired_proof(root: f.Ca) -> None:
    codes = issued(now=f.NOW)
    proof = f.pem(f.verification(root, codes.current, now=f.NOW - timedelta(days=3), days=1))
    with pytest.raises(VerificationCertificateExpiredError):
        p.verify_possession(root.certificate, proof, codes, now=f.NOW)


def test_rule4_proof_not_yet_valid(root: f.Ca) -> None:
    codes = issued()
    proof = f.pem(f.verification(root, codes.current, now=f.NOW + timedelta(minutes=30)))
    with pytest.raises(VerificationCertificateNotYetValidError):
        p.verify_possession(root.certificate, proof, codes, now=f.NOW)


def test_rules_are_checked_in_order(root: f.Ca, inter: f.Ca) -> None:
    """A proof that breaks rules 2 and 3 reports rule 2 first."""
    codes = issued()
    proof = f.pem(f.verification(root, "F" * 48))
    with pytest.raises(VerificationCodeMismatchError):
        p.verify_possession(inter.certificate, proof, codes, now=f.NOW)


def test_unused_key_type_is_refused(root: f.Ca) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    ca = f.root("P384", key=key)
    codes = issued()
    assert p.verify_possession(
        ca.certificate, f.pem(f.verification(ca, codes.current)), codes, now=f.NOW
    )
