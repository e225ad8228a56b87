"""The issuing CA's building blocks: key types, serials, the pathLen rule of an imported chain,
and the parsers of what an operator imports, which turn arbitrary input into input errors only."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devprov.core.credential_policy import InvalidCredentialPolicyError
from devprov.core.error import InvalidInputError
from devprov.core.issuance import MAX_SERIAL_BITS, build_intermediate_certificate
from devprov.service.issuing_ca import (
    check_imported_ca,
    load_issuing_key,
    parse_key_type,
    random_serial,
    verify_path_lengths,
)
from devprov.service.pki.ca import KeyType
from devprov.service.pki.error import PathLengthExceededError
from devprov.service.revocation import InvalidSerialNumberError, parse_serial
from tests import factory as f

ROOT = f.root("Parser Root")
ISSUING = f.intermediate(ROOT, "Parser Issuing CA")


@pytest.mark.parametrize("value", [k.value for k in KeyType])
def test_every_cli_key_type_is_known(value: str) -> None:
    assert parse_key_type(value).value == value
    assert parse_key_type(KeyType(value)) is KeyType(value)


@pytest.mark.parametrize("value", ["EC-P384", "ec-p521", "ed25519", ""])
def test_other_key_types_are_refused_with_the_known_ones(value: str) -> None:
    with pytest.raises(InvalidCredentialPolicyError, match="ec-p256, ec-p384, rsa-2048"):
        parse_key_type(value)


def source(*chunks: bytes):
    """A random source that answers ``chunks`` in turn: the injected randomness, scripted."""
    answers: Iterator[bytes] = iter(chunks)

    def random_bytes(n: int) -> bytes:
        chunk = next(answers)
        assert len(chunk) == n
        return chunk

    return random_bytes


def test_a_serial_is_159_bits_at_most_and_never_zero() -> None:
    # Twenty zero octets would make serial 0 (RFC 5280 4.1.2.2: positive): drawn again.
    serial = random_serial(source(bytes(20), b"\xff" * 20))
    assert serial == 2**MAX_SERIAL_BITS - 1
    assert random_serial(source(bytes(19) + b"\x02")) == 1


def ca_below(parent: f.Ca, name: str, *, path_length: int | None = None) -> f.Ca:
    key = f.ec_key()
    certificate = build_intermediate_certificate(
        key.public_key(),
        name,
        parent.issuer,
        serial=f.serial(),
        now=f.NOW,
        days=30,
        path_length=path_length,
    )
    return f.Ca(certificate, key)


def test_path_lengths_count_the_cas_below_each_one() -> None:
    middle = ca_below(ROOT, "Middle", path_length=0)
    issuing = ca_below(middle, "Issuing")
    # Middle may have no CA below it, and the issuing CA is one.
    with pytest.raises(PathLengthExceededError, match="'CN=Middle'"):
        verify_path_lengths([issuing.certificate, middle.certificate, ROOT.certificate])
    # The accepted twins: a middle CA allowing one below it, and the issuing CA's own pathLen 0,
    # which limits CAs under it, not the leaves it issues.
    roomy = ca_below(ROOT, "Roomy", path_length=1)
    tight = ca_below(roomy, "Tight", path_length=0)
    verify_path_lengths([tight.certificate, roomy.certificate, ROOT.certificate])


@given(st.binary(max_size=400))
def test_arbitrary_key_bytes_raise_only_input_errors(data: bytes) -> None:
    for passphrase in (None, b"pass"):
        with contextlib.suppress(InvalidInputError):
            load_issuing_key(data, passphrase)


@given(st.binary(max_size=400))
def test_arbitrary_chain_bytes_raise_only_input_errors(data: bytes) -> None:
    try:
        check_imported_ca(data, ISSUING.key_pem(), None, now=f.NOW)
    except InvalidInputError:
        return


@given(st.text(max_size=60))
def test_arbitrary_serial_text_is_hex_or_refused(text: str) -> None:
    try:
        serial = parse_serial(text)
    except InvalidSerialNumberError:
        return
    assert serial == serial.upper() and int(serial, 16) >= 0
    assert serial == "0" or not serial.startswith("0")
