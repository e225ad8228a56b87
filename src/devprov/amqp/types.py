"""The AMQP 1.0 type system (OASIS AMQP 1.0 part 1, section 1.6), without I/O: Python values in,
bytes out, and back (docs/amqp-protocol.md#the-type-system).

Python types stand for AMQP types where that is unambiguous: None is null, bool is boolean, int
is long, float is double, str is string, bytes is binary, uuid.UUID is uuid, list is list, dict
is map. The subclasses below name the other types (a :class:`Symbol` is a str, a :class:`UInt`
an int), so that an encoder can be told exactly what to write and a decoder says exactly what it
read: every decoded value is of the class that encodes it back to the same type.

Decoding is strict and bounded: a truncated value, a size or a count that overruns its buffer,
an unknown constructor, text that is not UTF-8 (ASCII for a symbol), nesting deeper than
:data:`MAX_DEPTH`, a map with an odd count or a repeated or unhashable key raise
:class:`MalformedFrame`, and nothing else, whatever the bytes.

The module runs past the usual 400 lines on purpose: it is one section of the specification,
and encoding and decoding share its tables of constructors, widths and ranges.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import TypeAlias

# Lists, maps, arrays and described values nest at most this deep in what a peer sends. A
# transfer's message is a described list holding a map of simple values (three levels); eight
# leaves room for any field the specification defines and stops a deeply nested value from
# exhausting the decoder's stack.
MAX_DEPTH = 8


class MalformedFrame(Exception):
    """Bytes that are not the AMQP value, frame or message the receiver expects."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # a plain sentence naming what was wrong


class Symbol(str):
    """An AMQP symbol: ASCII text naming something (section 1.6.21)."""

    __slots__ = ()


class Char(str):
    """An AMQP char: one Unicode code point (section 1.6.16)."""

    __slots__ = ()


class UByte(int):
    __slots__ = ()


class UShort(int):
    __slots__ = ()


class UInt(int):
    __slots__ = ()


class ULong(int):
    __slots__ = ()


class Byte(int):
    __slots__ = ()


class Short(int):
    __slots__ = ()


class Int(int):
    __slots__ = ()


class Timestamp(int):
    """Milliseconds since the Unix epoch (section 1.6.17)."""

    __slots__ = ()


class Float(float):
    """A 32-bit IEEE 754 float; a plain float is a double."""

    __slots__ = ()


@dataclass(frozen=True)
class Described:
    """A described type (section 1.2): a descriptor (a ulong code or a symbol) and a value."""

    descriptor: Value
    value: Value


@dataclass(frozen=True)
class Array:
    """An AMQP array (section 1.6.24): values of one type, encoded with one constructor. The
    type is taken from the first item; an empty array is one of symbols."""

    items: tuple[Value, ...] = ()


Value: TypeAlias = (
    bool
    | int
    | float
    | str
    | bytes
    | uuid.UUID
    | list["Value"]
    | dict["Value", "Value"]
    | Described
    | Array
    | None
)

# --- encoding ------------------------------------------------------------------------------

_RANGES: dict[type, tuple[int, int]] = {
    UByte: (0, 0xFF),
    UShort: (0, 0xFFFF),
    UInt: (0, 0xFFFF_FFFF),
    ULong: (0, 0xFFFF_FFFF_FFFF_FFFF),
    Byte: (-0x80, 0x7F),
    Short: (-0x8000, 0x7FFF),
    Int: (-0x8000_0000, 0x7FFF_FFFF),
    Timestamp: (-(2**63), 2**63 - 1),
    int: (-(2**63), 2**63 - 1),
}
# Integer types: (constructor of the full width, struct format, 0-value form, 1-byte form).
_INTEGERS: dict[type, tuple[int, str, int | None, int | None]] = {
    UByte: (0x50, ">B", None, None),
    UShort: (0x60, ">H", None, None),
    UInt: (0x70, ">I", 0x43, 0x52),
    ULong: (0x80, ">Q", 0x44, 0x53),
    Byte: (0x51, ">b", None, None),
    Short: (0x61, ">h", None, None),
    Int: (0x71, ">i", None, 0x54),
    Timestamp: (0x83, ">q", None, None),
    int: (0x81, ">q", None, 0x55),
}


def encode(value: Value) -> bytes:
    """The bytes of ``value`` with its constructor, in the smallest form its type allows.
    Raises ValueError for a value no AMQP type holds (an int out of its type's range, a
    non-ASCII symbol, an array of mixed types): the caller's mistake, not the peer's."""
    out = bytearray()
    _encode(value, out, wide=False)
    return bytes(out)


def _encode(value: Value, out: bytearray, *, wide: bool) -> None:  # noqa: PLR0912
    # ``wide``: the widest form of the type, valid for any value of it (an array's elements
    # share one constructor, section 1.2).
    if value is None:
        out.append(0x40)
    elif isinstance(value, bool):
        out += bytes([0x56, value]) if wide else bytes([0x41 if value else 0x42])
    elif isinstance(value, int):
        _encode_int(value, out, wide=wide)
    elif isinstance(value, Float):
        out += b"\x72" + struct.pack(">f", value)
    elif isinstance(value, float):
        out += b"\x82" + struct.pack(">d", value)
    elif isinstance(value, Symbol):
        _encode_variable(_ascii(value), 0xA3, 0xB3, out, wide=wide)
    elif isinstance(value, Char):
        if len(value) != 1:
            raise ValueError(f"a char is one code point, not {value!r}")
        out += b"\x73" + struct.pack(">I", ord(value))
    elif isinstance(value, str):
        _encode_variable(value.encode("utf-8"), 0xA1, 0xB1, out, wide=wide)
    elif isinstance(value, bytes):
        _encode_variable(value, 0xA0, 0xB0, out, wide=wide)
    elif isinstance(value, uuid.UUID):
        out += b"\x98" + value.bytes
    elif isinstance(value, list):
        items = [encode(item) for item in value]
        _encode_compound(items, 0xC0, 0xD0, out, wide=wide, empty=0x45)
    elif isinstance(value, dict):
        items = [encode(part) for pair in value.items() for part in pair]
        _encode_compound(items, 0xC1, 0xD1, out, wide=wide)
    elif isinstance(value, Described):
        out.append(0x00)
        _encode(value.descriptor, out, wide=False)
        _encode(value.value, out, wide=wide)
    elif isinstance(value, Array):
        _encode_array(value, out, wide=wide)
    else:
        raise ValueError(f"no AMQP type holds a {type(value).__name__}")


def _encode_int(value: int, out: bytearray, *, wide: bool) -> None:
    kind = type(value) if type(value) in _RANGES else int
    low, high = _RANGES[kind]
    if not low <= value <= high:
        raise ValueError(f"{value} is out of range for an AMQP {kind.__name__}")
    code, fmt, zero, small = _INTEGERS[kind]
    if wide or (zero is None and small is None):
        out += bytes([code]) + struct.pack(fmt, value)
    elif zero is not None and value == 0:
        out.append(zero)
    elif small is not None and (0 if zero is not None else -128) <= value <= (
        255 if zero is not None else 127
    ):
        out += bytes([small]) + struct.pack(">B" if zero is not None else ">b", value)
    else:
        out += bytes([code]) + struct.pack(fmt, value)


def _ascii(text: str) -> bytes:
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"a symbol is ASCII, not {text!r}") from None


def _encode_variable(data: bytes, small: int, large: int, out: bytearray, *, wide: bool) -> None:
    if len(data) <= 0xFF and not wide:
        out += bytes([small, len(data)]) + data
    else:
        out += bytes([large]) + struct.pack(">I", len(data)) + data


def _encode_compound(
    items: list[bytes],
    small: int,
    large: int,
    out: bytearray,
    *,
    wide: bool,
    empty: int | None = None,
) -> None:
    if not items and empty is not None and not wide:
        out.append(empty)
        return
    body = b"".join(items)
    if len(body) + 1 <= 0xFF and len(items) <= 0xFF and not wide:
        out += bytes([small, len(body) + 1, len(items)]) + body
    else:
        out += bytes([large]) + struct.pack(">II", len(body) + 4, len(items)) + body


def _encode_array(array: Array, out: bytearray, *, wide: bool) -> None:
    # One constructor for every element: the widest form of the first item's type (section
    # 1.2), whose constructor is the first byte(s) of the item's wide encoding.
    constructor = _constructor_of(array.items[0] if array.items else Symbol())
    bodies = []
    for item in array.items:
        encoded = _wide(item)
        if not encoded.startswith(constructor):
            raise ValueError("an array holds values of one type")
        bodies.append(encoded[len(constructor) :])
    body = constructor + b"".join(bodies)
    if len(body) + 1 <= 0xFF and len(bodies) <= 0xFF and not wide:
        out += bytes([0xE0, len(body) + 1, len(bodies)]) + body
    else:
        out += b"\xf0" + struct.pack(">II", len(body) + 4, len(bodies)) + body


def _wide(value: Value) -> bytes:
    out = bytearray()
    _encode(value, out, wide=True)
    return bytes(out)


def _constructor_of(value: Value) -> bytes:
    encoded = _wide(value)
    if isinstance(value, Described):
        return encoded[: 1 + len(encode(value.descriptor)) + len(_constructor_of(value.value))]
    return encoded[:1]


# --- decoding ------------------------------------------------------------------------------

# Fixed-width constructors: (width, struct format or None, the class of the value).
_FIXED: dict[int, tuple[int, str, type]] = {
    0x50: (1, ">B", UByte),
    0x60: (2, ">H", UShort),
    0x70: (4, ">I", UInt),
    0x52: (1, ">B", UInt),
    0x80: (8, ">Q", ULong),
    0x53: (1, ">B", ULong),
    0x51: (1, ">b", Byte),
    0x61: (2, ">h", Short),
    0x71: (4, ">i", Int),
    0x54: (1, ">b", Int),
    0x81: (8, ">q", int),
    0x55: (1, ">b", int),
    0x83: (8, ">q", Timestamp),
    0x72: (4, ">f", Float),
    0x82: (8, ">d", float),
}
# Constructors whose value is in the constructor itself.
_CONSTANTS: dict[int, Value] = {
    0x40: None,
    0x41: True,
    0x42: False,
    0x43: UInt(0),
    0x44: ULong(0),
    0x45: [],
}
_VARIABLE = {0xA0: 1, 0xA1: 1, 0xA3: 1, 0xB0: 4, 0xB1: 4, 0xB3: 4}
_COMPOUND = {0xC0: 1, 0xC1: 1, 0xD0: 4, 0xD1: 4, 0xE0: 1, 0xF0: 4}


def decode(data: bytes) -> Value:
    """The one value ``data`` holds, all of it; raises :class:`MalformedFrame`."""
    value, end = decode_from(data, 0)
    if end != len(data):
        raise MalformedFrame(f"{len(data) - end} bytes after the value")
    return value


def decode_from(data: bytes, offset: int) -> tuple[Value, int]:
    """The value that starts at ``offset`` of ``data``, and the offset after it."""
    reader = _Reader(data, offset, len(data))
    value = reader.value(0)
    return value, reader.pos


class _Reader:
    """Reads values from ``data[pos:end]``; every read is checked against ``end``."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def take(self, count: int) -> bytes:
        if count > self.end - self.pos:
            raise MalformedFrame(
                f"a value needs {count} bytes at offset {self.pos}; {self.end - self.pos} remain"
            )
        start = self.pos
        self.pos += count
        return self.data[start : self.pos]

    def byte(self) -> int:
        return self.take(1)[0]

    def size(self, width: int) -> int:
        raw = self.take(width)
        return raw[0] if width == 1 else int(struct.unpack(">I", raw)[0])

    def value(self, depth: int) -> Value:
        code = self.byte()
        if code == 0x00:
            return self.described(depth)
        return self.body(code, depth)

    def described(self, depth: int) -> Described:
        if depth >= MAX_DEPTH:
            raise MalformedFrame(f"values nest deeper than {MAX_DEPTH}")
        descriptor = self.value(depth + 1)
        if not isinstance(descriptor, (ULong, Symbol)):
            raise MalformedFrame("a descriptor is a ulong or a symbol")
        return Described(descriptor, self.value(depth + 1))

    def body(self, code: int, depth: int) -> Value:  # noqa: PLR0911
        if code in _CONSTANTS:
            constant = _CONSTANTS[code]
            return [] if isinstance(constant, list) else constant
        if code in _FIXED:
            width, fmt, cls = _FIXED[code]
            return cls(struct.unpack(fmt, self.take(width))[0])  # type: ignore[no-any-return]
        if code in _VARIABLE:
            return self.variable(code, self.take(self.size(_VARIABLE[code])))
        if code in _COMPOUND:
            return self.compound(code, depth)
        if code == 0x56:
            flag = self.byte()
            if flag > 1:
                raise MalformedFrame(f"a boolean byte is 0 or 1, not {flag}")
            return flag == 1
        if code == 0x73:
            return _char(int(struct.unpack(">I", self.take(4))[0]))
        if code == 0x98:
            return uuid.UUID(bytes=self.take(16))
        raise MalformedFrame(f"unknown or unsupported constructor 0x{code:02x}")

    @staticmethod
    def variable(code: int, raw: bytes) -> Value:
        if code in (0xA0, 0xB0):
            return raw
        try:
            if code in (0xA3, 0xB3):
                return Symbol(raw.decode("ascii"))
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            kind = "ASCII symbol" if code in (0xA3, 0xB3) else "UTF-8 string"
            raise MalformedFrame(f"a {kind} holds other bytes") from None

    def compound(self, code: int, depth: int) -> Value:
        if depth >= MAX_DEPTH:
            raise MalformedFrame(f"values nest deeper than {MAX_DEPTH}")
        width = _COMPOUND[code]
        size = self.size(width)
        if size < width or size > self.end - self.pos:
            raise MalformedFrame(
                f"a compound value of {size} bytes at offset {self.pos} overruns its buffer"
            )
        inner = _Reader(self.data, self.pos, self.pos + size)
        count = inner.size(width)
        # Every element takes at least one byte (an array's at least none, past its
        # constructor): a count beyond the bytes left is a lie, refused before any work.
        if count > size - width:
            raise MalformedFrame(f"{count} elements cannot fit in {size - width} bytes")
        if code in (0xE0, 0xF0):
            value: Value = inner.array(count, depth + 1)
        elif code in (0xC0, 0xD0):
            value = [inner.value(depth + 1) for _ in range(count)]
        else:
            value = inner.map(count, depth + 1)
        if inner.pos != inner.end:
            raise MalformedFrame(f"{inner.end - inner.pos} bytes left over in a compound value")
        self.pos = inner.end
        return value

    def map(self, count: int, depth: int) -> dict[Value, Value]:
        if count % 2:
            raise MalformedFrame(f"a map holds an even count of keys and values, not {count}")
        result: dict[Value, Value] = {}
        for _ in range(count // 2):
            key = self.value(depth)
            try:
                if key in result:
                    raise MalformedFrame(f"the map key {key!r} appears twice")
            except TypeError:
                raise MalformedFrame(f"a map key of type {type(key).__name__}") from None
            result[key] = self.value(depth)
        return result

    def array(self, count: int, depth: int) -> Array:
        code = self.byte()
        if code == 0x00:
            descriptor = self.value(depth)
            if not isinstance(descriptor, (ULong, Symbol)):
                raise MalformedFrame("a descriptor is a ulong or a symbol")
            element = self.byte()
            return Array(
                tuple(Described(descriptor, self.body(element, depth)) for _ in range(count))
            )
        return Array(tuple(self.body(code, depth) for _ in range(count)))


def _char(point: int) -> Char:
    if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
        raise MalformedFrame(f"0x{point:x} is not a Unicode code point")
    return Char(chr(point))
