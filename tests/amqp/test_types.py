"""The AMQP 1.0 type system: every type round-trips in each of its encodings, the bytes are the
specification's (section 1.6), and any input, random or mutated, decodes or raises
MalformedFrame, nothing else."""

from __future__ import annotations

import contextlib
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devprov.amqp.types import (
    MAX_DEPTH,
    Array,
    Byte,
    Char,
    Described,
    Float,
    Int,
    MalformedFrame,
    Short,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    UShort,
    Value,
    decode,
    decode_from,
    encode,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, b"\x40", id="null"),
        pytest.param(True, b"\x41", id="true"),
        pytest.param(False, b"\x42", id="false"),
        pytest.param(UByte(7), b"\x50\x07", id="ubyte"),
        pytest.param(UShort(258), b"\x60\x01\x02", id="ushort"),
        pytest.param(UInt(0), b"\x43", id="uint0"),
        pytest.param(UInt(255), b"\x52\xff", id="smalluint"),
        pytest.param(UInt(256), b"\x70\x00\x00\x01\x00", id="uint"),
        pytest.param(ULong(0), b"\x44", id="ulong0"),
        pytest.param(ULong(9), b"\x53\x09", id="smallulong"),
        pytest.param(ULong(2**40), b"\x80" + struct.pack(">Q", 2**40), id="ulong"),
        pytest.param(Byte(-2), b"\x51\xfe", id="byte"),
        pytest.param(Short(-2), b"\x61\xff\xfe", id="short"),
        pytest.param(Int(-2), b"\x54\xfe", id="smallint"),
        pytest.param(Int(2**20), b"\x71\x00\x10\x00\x00", id="int"),
        pytest.param(-2, b"\x55\xfe", id="smalllong"),
        pytest.param(2**40, b"\x81" + struct.pack(">q", 2**40), id="long"),
        pytest.param(Float(1.5), b"\x72" + struct.pack(">f", 1.5), id="float"),
        pytest.param(1.5, b"\x82" + struct.pack(">d", 1.5), id="double"),
        pytest.param(Char("é"), b"\x73\x00\x00\x00\xe9", id="char"),
        pytest.param(Timestamp(1), b"\x83" + struct.pack(">q", 1), id="timestamp"),
        pytest.param(uuid.UUID(int=1), b"\x98" + uuid.UUID(int=1).bytes, id="uuid"),
        pytest.param(b"ab", b"\xa0\x02ab", id="vbin8"),
        pytest.param(b"a" * 256, b"\xb0\x00\x00\x01\x00" + b"a" * 256, id="vbin32"),
        pytest.param("é", b"\xa1\x02\xc3\xa9", id="str8"),
        pytest.param("a" * 256, b"\xb1\x00\x00\x01\x00" + b"a" * 256, id="str32"),
        pytest.param(Symbol("x"), b"\xa3\x01x", id="sym8"),
        pytest.param(Symbol("x" * 256), b"\xb3\x00\x00\x01\x00" + b"x" * 256, id="sym32"),
        pytest.param([], b"\x45", id="list0"),
        pytest.param([None], b"\xc0\x02\x01\x40", id="list8"),
        pytest.param({Symbol("k"): True}, b"\xc1\x05\x02\xa3\x01k\x41", id="map8"),
        pytest.param(Described(ULong(0x10), []), b"\x00\x53\x10\x45", id="described-by-code"),
        pytest.param(
            Described(Symbol("a:b"), None), b"\x00\xa3\x03a:b\x40", id="described-by-symbol"
        ),
        pytest.param(
            Array((Symbol("a"), Symbol("bc"))),
            b"\xe0\x0d\x02\xb3\x00\x00\x00\x01a\x00\x00\x00\x02bc",
            id="array8-of-sym32",
        ),
        pytest.param(Array((True, False)), b"\xe0\x04\x02\x56\x01\x00", id="array-of-boolean"),
    ],
)
def test_values_encode_as_the_specification_says_and_back(value: Value, expected: bytes) -> None:
    assert encode(value) == expected
    decoded = decode(expected)
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"\xd0\x00\x00\x00\x05\x00\x00\x00\x01\x40", [None], id="list32"),
        pytest.param(b"\xd1\x00\x00\x00\x04\x00\x00\x00\x00", {}, id="map32"),
        pytest.param(
            b"\xf0\x00\x00\x00\x06\x00\x00\x00\x01\x52\x07", Array((UInt(7),)), id="array32"
        ),
        pytest.param(b"\x56\x00", False, id="boolean-byte"),
        pytest.param(
            b"\xe0\x06\x02\x00\xa3\x01d\x45",
            Array((Described(Symbol("d"), []),) * 2),
            id="array-of-described",
        ),
    ],
)
def test_every_encoding_a_peer_may_choose_decodes(data: bytes, expected: Value) -> None:
    assert decode(data) == expected


def test_long_compounds_switch_to_32_bit_sizes() -> None:
    value: Value = [b"x" * 300]
    assert encode(value)[0] == 0xD0
    assert decode(encode(value)) == value
    many = Array(tuple(UInt(i) for i in range(300)))
    assert encode(many)[0] == 0xF0
    assert decode(encode(many)) == many


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(UByte(256), id="ubyte-range"),
        pytest.param(UInt(-1), id="uint-negative"),
        pytest.param(2**63, id="long-range"),
        pytest.param(Symbol("é"), id="symbol-not-ascii"),
        pytest.param(Char("ab"), id="char-two"),
        pytest.param(Array((UInt(1), ULong(1))), id="array-mixed"),
        pytest.param(object(), id="no-amqp-type"),
    ],
)
def test_values_no_amqp_type_holds_are_refused_on_encode(value: Value) -> None:
    with pytest.raises(ValueError):
        encode(value)


def _nested(depth: int) -> bytes:
    data = b"\x45"
    for _ in range(depth):
        data = b"\xc0" + bytes([len(data) + 1, 1]) + data
    return data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x70\x00\x01", id="truncated-uint"),
        pytest.param(b"\xa1\x05ab", id="string-overruns"),
        pytest.param(b"\xb0\xff\xff\xff\xff", id="binary-size-overruns"),
        pytest.param(b"\xc0\x05\x02\x40", id="list-size-overruns"),
        pytest.param(b"\xc0\x02\x05\x40", id="list-count-overruns"),
        pytest.param(b"\xd0\x00\x00\x00\x04\xff\xff\xff\xff", id="list32-count-lies"),
        pytest.param(b"\xc0\x03\x01\x40\x40", id="list-bytes-left-over"),
        pytest.param(b"\xc1\x02\x01\x40", id="map-odd-count"),
        pytest.param(b"\xc1\x05\x04\x40\x40\x40\x40", id="map-key-twice"),
        pytest.param(b"\xc1\x05\x02\x45\x40", id="map-unhashable-key"),
        pytest.param(b"\xe0\x02\x05\x40", id="array-count-overruns"),
        pytest.param(b"\x99", id="unknown-constructor"),
        pytest.param(b"\x74" + b"\x00" * 4, id="decimal32-unsupported"),
        pytest.param(b"\xa1\x01\xff", id="string-not-utf8"),
        pytest.param(b"\xa3\x01\xc3", id="symbol-not-ascii"),
        pytest.param(b"\x73\x00\x11\x00\x00", id="char-beyond-unicode"),
        pytest.param(b"\x73\x00\x00\xd8\x00", id="char-surrogate"),
        pytest.param(b"\x56\x02", id="boolean-byte-2"),
        pytest.param(b"\x00\x40\x40", id="descriptor-null"),
        pytest.param(b"\x40\x40", id="bytes-after-the-value"),
        pytest.param(_nested(MAX_DEPTH + 1), id="nested-too-deep"),
    ],
)
def test_malformed_values_raise_malformed_frame(data: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode(data)


def test_nesting_up_to_the_limit_decodes() -> None:
    assert decode(_nested(MAX_DEPTH)) is not None


def test_decode_from_reads_one_value_and_says_where_it_ends() -> None:
    data = encode(UInt(5)) + encode("x")
    first, end = decode_from(data, 0)
    assert (first, decode_from(data, end)) == (5, ("x", len(data)))


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 255).map(UByte),
    st.integers(0, 65535).map(UShort),
    st.integers(0, 2**32 - 1).map(UInt),
    st.integers(0, 2**64 - 1).map(ULong),
    st.integers(-128, 127).map(Byte),
    st.integers(-32768, 32767).map(Short),
    st.integers(-(2**31), 2**31 - 1).map(Int),
    st.integers(-(2**63), 2**63 - 1).map(Timestamp),
    st.floats(allow_nan=False),
    st.floats(allow_nan=False, width=32).map(Float),
    st.characters(blacklist_categories=["Cs"]).map(Char),
    st.uuids(),
    st.binary(max_size=300),
    st.text(max_size=300),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=40).map(Symbol),
)
_keys = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=10).map(Symbol),
    st.integers(0, 2**32 - 1).map(UInt),
)
values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(_keys, children, max_size=5),
        st.tuples(st.integers(0, 2**64 - 1).map(ULong), children).map(lambda t: Described(*t)),
        st.lists(st.integers(0, 2**32 - 1).map(UInt), max_size=5).map(
            lambda items: Array(tuple(items))
        ),
    ),
    max_leaves=20,
)


def _shallow_enough(value: Value, depth: int = 0) -> bool:
    if isinstance(value, list):
        return depth < MAX_DEPTH and all(_shallow_enough(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return depth < MAX_DEPTH and all(_shallow_enough(v, depth + 1) for v in value.values())
    if isinstance(value, Described):
        return depth < MAX_DEPTH and _shallow_enough(value.value, depth + 1)
    if isinstance(value, Array):
        return depth < MAX_DEPTH
    return True


@given(values)
def test_any_value_round_trips_with_its_type(value: Value) -> None:
    if not _shallow_enough(value):
        with pytest.raises(MalformedFrame):
            decode(encode(value))
        return
    decoded = decode(encode(value))
    assert decoded == value
    assert type(decoded) is type(value)


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_random_bytes_decode_or_raise_malformed_frame(data: bytes) -> None:
    with contextlib.suppress(MalformedFrame):
        decode(data)


@given(values, st.data())
@settings(max_examples=300)
def test_mutated_values_decode_or_raise_malformed_frame(value: Value, data: st.DataObject) -> None:
    encoded = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(encoded) - 1))
        encoded[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    with contextlib.suppress(MalformedFrame):
        decode(bytes(encoded[:cut]))
