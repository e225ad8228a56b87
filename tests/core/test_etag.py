from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devprov.core.etag import build_etag, build_resource_etag, format_etag, is_etag_match

CURRENT = "AAAAAAExpNs="


def test_build_etag_is_base64_of_8_bytes() -> None:
    assert build_etag(bytes([0, 0, 0, 0, 1, 0x31, 0xA4, 0xDB])) == CURRENT
    with pytest.raises(ValueError, match="8 bytes"):
        build_etag(b"\0" * 7)


@pytest.mark.parametrize(
    "header",
    [CURRENT, f'"{CURRENT}"', "*", f'"other", "{CURRENT}"', f'  "{CURRENT}"  ', '"*"'],
    ids=["ok/bare", "ok/quoted", "ok/star", "ok/list", "ok/spaces", "ok/quoted-star"],
)
def test_match(header: str) -> None:
    assert is_etag_match(header, CURRENT)


@pytest.mark.parametrize(
    "header",
    ["AAAAAAExpNt=", f'W/"{CURRENT}"', "", '""', f'"{CURRENT.lower()}"', f"'{CURRENT}'"],
    ids=[
        "fail/other",
        "fail/weak",
        "fail/empty",
        "fail/empty-quoted",
        "fail/case",
        "fail/single-quotes",
    ],
)
def test_mismatch(header: str) -> None:
    assert not is_etag_match(header, CURRENT)


def test_format_quotes() -> None:
    assert format_etag(CURRENT) == f'"{CURRENT}"'


@settings(max_examples=500)
@given(st.binary(min_size=8, max_size=8))
def test_etags_are_never_weak_looking(nonce: bytes) -> None:
    etag = build_etag(nonce)
    assert etag.startswith("A") and not etag.startswith("W/")
    assert is_etag_match(etag, etag) and is_etag_match(f'"{etag}"', etag)


def test_the_etag_that_broke_the_bench() -> None:
    # base64 of bytes 5a 54 4c ... reads "W/..." and was sent back unquoted as a weak tag
    assert not build_etag(bytes.fromhex("5bf4534cd3a3a0")[:7] + b"\x01").startswith("W")


# docs/management-answers.md#certificate-answers-as-recorded: the real service's etag decodes to
# a double-quoted GUID-shaped string.
RECORDED = "IjA1MDA2YmVhLTAwMDAtMDcwMC0wMDAwLTYyNzE2YjRiMDAwMCI="
QUOTED_GUID = re.compile(r'"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"')


def test_the_recorded_etag_has_the_shape_resource_etags_copy() -> None:
    assert QUOTED_GUID.fullmatch(base64.b64decode(RECORDED).decode("ascii"))


def test_build_resource_etag() -> None:
    etag = build_resource_etag(bytes.fromhex("05006bea00000700000062716b4b0000"))
    assert etag == RECORDED
    with pytest.raises(ValueError, match="16 bytes"):
        build_resource_etag(b"\0" * 8)


@settings(max_examples=300)
@given(st.binary(min_size=16, max_size=16))
def test_resource_etags_have_the_recorded_shape_and_match(nonce: bytes) -> None:
    etag = build_resource_etag(nonce)
    assert len(etag) == len(RECORDED) and etag.startswith("I")
    assert QUOTED_GUID.fullmatch(base64.b64decode(etag, validate=True).decode("ascii"))
    assert is_etag_match(etag, etag) and is_etag_match(f'"{etag}"', etag)
    assert not is_etag_match(RECORDED, etag) or etag == RECORDED
