from __future__ import annotations

import pytest

from devprov.core.etag import build_etag, format_etag, is_etag_match

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
