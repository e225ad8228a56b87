"""service.pki.ca: key generation, serials, names and the use cases.

Real keys and real files under ``tmp_path``. RSA-4096 is generated exactly once (it takes ~0.5 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.error import AlreadyExistsError, InvalidRegistrationIdError
from devprov.core.issuance import MAX_SERIAL_BITS
from devprov.service.pki.ca import (
    KeyType,
    NewKey,
    build_demo,
    create_device,
    create_root,
    create_verification,
    describe_key_type,
    generate_private_key,
    new_serial,
    validate_registration_id,
)
from devprov.service.pki.error import InvalidCommonNameError
from devprov.service.pki.file import PkiFiles, load_private_key, write_private_key
from tests.service.pki.factory import CODE, NOW, load, make_root, mode, public_der

# --- keys and serials -------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KeyType), ids=lambda k: k.value)
def test_every_key_type_generates_and_round_trips(key_type: KeyType, tmp_path: Path) -> None:
    key = generate_private_key(key_type)
    assert describe_key_type(key) == key_type.value
    write_private_key(tmp_path / "k.key", key, None)
    loaded = load_private_key(tmp_path / "k.key", None)
    assert public_der(loaded) == public_der(key)
    assert describe_key_type(loaded) == key_type.value


def test_default_key_type_is_ec_p256() -> None:
    key = generate_private_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_serials_are_positive_below_2_159_and_distinct() -> None:
    serials = [new_serial() for _ in range(2000)]
    assert all(0 < s < 2**MAX_SERIAL_BITS for s in serials)
    assert len(set(serials)) == len(serials)
    assert max(s.bit_length() for s in serials) > 150  # the full range is drawn, not 64 bits


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        pytest.param("my-device", True, id="ok/plain"),
        pytest.param("Dev.1_a:b-", True, id="ok/every-allowed-character-ends-with-dash"),
        pytest.param("a" * 64, True, id="ok/64-characters"),
        pytest.param("", False, id="fail/empty"),
        pytest.param("a" * 65, False, id="fail/65-characters"),
        pytest.param("ends.", False, id="fail/ends-with-dot"),
        pytest.param("ends_", False, id="fail/ends-with-underscore"),
        pytest.param("ends:", False, id="fail/ends-with-colon"),
        pytest.param("has space", False, id="fail/space"),
        pytest.param("ünï", False, id="fail/non-ascii"),
        pytest.param("a/b", False, id="fail/slash"),
        pytest.param("-starts", False, id="fail/starts-with-dash"),
    ],
)
def test_registration_id_follows_dps_rules(value: str, accepted: bool) -> None:
    if accepted:
        assert validate_registration_id(value) == value
    else:
        with pytest.raises(InvalidRegistrationIdError):
            validate_registration_id(value)


@given(st.text(max_size=80))
def test_registration_id_validation_raises_only_its_input_error(value: str) -> None:
    try:
        validate_registration_id(value)
    except InvalidRegistrationIdError:
        return
    assert 1 <= len(value) <= 64
    assert value.isascii()
    assert value[0].isalnum()
    assert value[-1].isalnum() or value[-1] == "-"


# --- use cases ------------------------------------------------------------------------------


def test_demo_writes_a_chain_without_warnings(tmp_path: Path) -> None:
    demo = build_demo(tmp_path, key_type=KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    assert demo.root.warnings == demo.intermediate.warnings == demo.device.warnings == ()
    full_chain = x509.load_pem_x509_certificates((tmp_path / "dev-full-chain.pem").read_bytes())
    assert full_chain == [
        demo.device.certificate,
        demo.intermediate.certificate,
        demo.root.certificate,
    ]
    for child, parent in [(0, 1), (1, 2), (2, 2)]:
        full_chain[child].verify_directly_issued_by(full_chain[parent])


def test_device_pfx_holds_key_leaf_and_chain(tmp_path: Path) -> None:
    build_demo(tmp_path, key_type=KeyType.EC_P256, days=30, device_name="dev", now=NOW)
    issuer = load(tmp_path, "intermediate")
    issued = create_device(
        PkiFiles(tmp_path / "pfx-dev"),
        issuer,
        NewKey(days=1),
        registration_id="pfx-dev",
        now=NOW,
        pfx=True,
        pfx_password=b"pfx-secret",
    )
    assert issued.pfx_encrypted is True
    assert mode(tmp_path / "pfx-dev.pfx") == 0o600
    bundle = pkcs12.load_pkcs12((tmp_path / "pfx-dev.pfx").read_bytes(), b"pfx-secret")
    assert bundle.key is not None
    assert public_der(bundle.key) == public_der(issued.key)  # type: ignore[arg-type]
    assert bundle.cert is not None
    assert bundle.cert.certificate == issued.certificate
    assert bundle.cert.friendly_name == b"pfx-dev"
    assert [c.certificate for c in bundle.additional_certs] == list(issuer.chain)
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12((tmp_path / "pfx-dev.pfx").read_bytes(), b"wrong")


def test_unencrypted_pfx_loads_without_password(tmp_path: Path) -> None:
    issued = create_device(
        PkiFiles(tmp_path / "d"),
        None,
        NewKey(days=1),
        registration_id="d",
        now=NOW,
        pfx=True,
    )
    assert issued.pfx_encrypted is False
    bundle = pkcs12.load_pkcs12((tmp_path / "d.pfx").read_bytes(), None)
    assert bundle.cert is not None
    assert bundle.cert.certificate == issued.certificate
    assert bundle.additional_certs == []


def test_outputs_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    """The chain file exists: neither the certificate nor the key may be written."""
    (tmp_path / "root-chain.pem").write_text("occupied")
    with pytest.raises(AlreadyExistsError, match=r"root-chain\.pem"):
        make_root(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["root-chain.pem"]


@pytest.mark.parametrize(
    ("code", "warned"),
    [
        pytest.param(CODE, False, id="ok/dps-shaped"),
        pytest.param("my-own-code", True, id="warn/not-48-hex"),
    ],
)
def test_verification_certificate_carries_the_code(tmp_path: Path, code: str, warned: bool) -> None:
    make_root(tmp_path)
    issuer = load(tmp_path, "root")
    issued = create_verification(
        tmp_path / "v.pem", issuer, NewKey(days=1), code=code, key_path=None, now=NOW
    )
    assert issued.certificate.subject.rfc4514_string() == f"CN={code}"
    issued.certificate.verify_directly_issued_by(issuer.issuer.certificate)
    assert bool(issued.warnings) == warned
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("v.")] == ["v.pem"]


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("", id="fail/empty"),
        pytest.param("A" * 65, id="fail/65-characters"),
        pytest.param("tab\there", id="fail/unprintable"),
    ],
)
def test_verification_code_must_be_a_usable_common_name(tmp_path: Path, code: str) -> None:
    make_root(tmp_path)
    with pytest.raises(InvalidCommonNameError):
        create_verification(
            tmp_path / "v.pem",
            load(tmp_path, "root"),
            NewKey(days=1),
            code=code,
            key_path=None,
            now=NOW,
        )


def test_issued_keys_come_from_the_requested_type(tmp_path: Path) -> None:
    issued = create_root(
        PkiFiles(tmp_path / "r"),
        NewKey(days=1, key_type=KeyType.RSA_2048),
        common_name="R",
        path_length=None,
        now=NOW,
    )
    assert isinstance(issued.key, rsa.RSAPrivateKey)
    assert issued.key_type == "rsa-2048"
    assert issued.certificate.public_key() == issued.key.public_key()
