"""AMQP composite types (OASIS AMQP 1.0 part 1, section 1.4) as frozen dataclasses: a described
list whose items are the fields, in order, each of a declared type.

A class declares its descriptor (code and symbolic name) and, for each field, a :class:`Kind`
through :func:`item`. Decoding accepts a list shorter than the fields (the missing ones take
their defaults, section 1.4) and refuses one longer, a mandatory field that is null or missing,
and an item of the wrong type, with :class:`MalformedFrame`. Encoding writes each field with its
declared type and leaves trailing nulls out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from devprov.amqp.application import AmqpError, Scalar
from devprov.amqp.types import (
    Array,
    Char,
    Described,
    MalformedFrame,
    Symbol,
    UByte,
    UInt,
    ULong,
    UShort,
    Value,
)

C = TypeVar("C", bound="Composite")


@dataclass(frozen=True)
class Kind:
    """How one field's Python value is read from and written as an AMQP value."""

    name: str
    read: Callable[[Value], Any]  # raises MalformedFrame (or TypeError/ValueError) if wrong
    write: Callable[[Any], Value]


def item(kind: Kind, *, mandatory: bool = False, default: Any = None) -> Any:
    """A dataclass field of ``kind``; a mandatory one has no default."""
    metadata = {"kind": kind, "mandatory": mandatory}
    if mandatory:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Composite:
    """A composite type; subclasses are frozen keyword-only dataclasses."""

    CODE: ClassVar[int]
    NAME: ClassVar[str]

    def to_value(self) -> Described:
        items: list[Value] = []
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, spec.name)
            items.append(None if value is None else spec.metadata["kind"].write(value))
        while items and items[-1] is None:
            items.pop()
        return Described(ULong(self.CODE), items)

    @classmethod
    def from_value(cls: type[C], value: Value) -> C:
        """The instance ``value`` (the described list) holds; the descriptor is not checked."""
        items = value.value if isinstance(value, Described) else value
        if not isinstance(items, list):
            raise MalformedFrame(f"{cls.NAME} is a list, not a {type(items).__name__}")
        specs = dataclasses.fields(cls)  # type: ignore[arg-type]
        if len(items) > len(specs):
            raise MalformedFrame(f"{cls.NAME} has {len(specs)} fields, not {len(items)}")
        arguments: dict[str, Any] = {}
        for index, spec in enumerate(specs):
            raw = items[index] if index < len(items) else None
            if raw is None:
                if spec.metadata["mandatory"]:
                    raise MalformedFrame(f"{cls.NAME}: the mandatory field {spec.name} is missing")
                continue
            kind: Kind = spec.metadata["kind"]
            try:
                arguments[spec.name] = kind.read(raw)
            except (TypeError, ValueError):
                raise MalformedFrame(
                    f"{cls.NAME}: {spec.name} must be a {kind.name}, not {raw!r:.60}"
                ) from None
        return cls(**arguments)


def descriptor_of(value: Described) -> int | str:
    """The code or symbolic name of a described value's descriptor."""
    descriptor = value.descriptor
    return int(descriptor) if isinstance(descriptor, ULong) else str(descriptor)


def read_composite(value: Value, classes: Mapping[int | str, type[C]], what: str) -> C:
    """The composite among ``classes`` (keyed by code and by name) that ``value`` holds."""
    if not isinstance(value, Described):
        raise MalformedFrame(f"{what} must be a described list, not {type(value).__name__}")
    cls = classes.get(descriptor_of(value))
    if cls is None:
        raise MalformedFrame(f"{what}: unknown descriptor {value.descriptor!r:.60}")
    return cls.from_value(value)


def by_descriptor(*classes: type[C]) -> dict[int | str, type[C]]:
    """Classes keyed by code and by symbolic name (section 1.5: either may describe a value)."""
    return {key: cls for cls in classes for key in (cls.CODE, cls.NAME)}


# --- kinds ---------------------------------------------------------------------------------


def _typed(cls: type, low: int, high: int) -> Callable[[Value], int]:
    def read(value: Value) -> int:
        if type(value) is not cls or not low <= value <= high:  # type: ignore[operator]
            raise TypeError(cls.__name__)
        return int(value)  # type: ignore[arg-type]

    return read


def _read_bool(value: Value) -> bool:
    if not isinstance(value, bool):
        raise TypeError("boolean")
    return value


def _read_str(value: Value) -> str:
    # A string field, or a symbol where a peer writes one for an address (both are text).
    if not isinstance(value, str) or isinstance(value, Char):
        raise TypeError("string")
    return str(value)


def _read_symbol(value: Value) -> str:
    if not isinstance(value, Symbol):
        raise TypeError("symbol")
    return str(value)


def _read_binary(value: Value) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError("binary")
    return value


def _read_symbols(value: Value) -> tuple[str, ...]:
    # A field declared multiple="true" (section 1.3): one value, or an array of them.
    values = value.items if isinstance(value, Array) else (value,)
    return tuple(_read_symbol(v) for v in values)


def _read_map(value: Value) -> dict[Value, Value]:
    if not isinstance(value, dict):
        raise TypeError("map")
    return value


def _read_fields(value: Value) -> dict[str, Value]:
    # fields: a map with symbol keys (section 2.8.18, "fields").
    return {_read_symbol(key): v for key, v in _read_map(value).items()}


def _write_fields(fields: Mapping[str, Value]) -> Value:
    return {Symbol(key): value for key, value in fields.items()}


UINT = Kind("uint", _typed(UInt, 0, 0xFFFF_FFFF), UInt)
USHORT = Kind("ushort", _typed(UShort, 0, 0xFFFF), UShort)
UBYTE = Kind("ubyte", _typed(UByte, 0, 0xFF), UByte)
ULONG = Kind("ulong", _typed(ULong, 0, 2**64 - 1), ULong)
BOOL = Kind("boolean", _read_bool, bool)
STRING = Kind("string", _read_str, str)
SYMBOL = Kind("symbol", _read_symbol, Symbol)
BINARY = Kind("binary", _read_binary, bytes)
SYMBOLS = Kind("symbol or array of symbols", _read_symbols, lambda v: Array(tuple(map(Symbol, v))))
MAP = Kind("map", _read_map, lambda v: v)
FIELDS = Kind("map of symbol keys", _read_fields, _write_fields)
ANY = Kind("value", lambda v: v, lambda v: v)


def _scalar_info(info: Mapping[str, Value]) -> dict[str, Scalar]:
    # AmqpError's info holds the scalar values; others (lists, maps) are not kept.
    scalars = (str, bool, int, bytes, type(None))
    return {key: value for key, value in info.items() if isinstance(value, scalars)}


@dataclass(frozen=True, kw_only=True)
class ErrorFrame(Composite):
    """error (section 2.8.14), read into and written from :class:`AmqpError`."""

    CODE: ClassVar[int] = 0x1D
    NAME: ClassVar[str] = "amqp:error:list"
    condition: str = item(SYMBOL, mandatory=True)
    description: str | None = item(STRING)
    info: dict[str, Value] | None = item(FIELDS)


def _read_error(value: Value) -> AmqpError:
    frame = read_composite(value, by_descriptor(ErrorFrame), "error")
    return AmqpError(frame.condition, frame.description, _scalar_info(frame.info or {}))


def _write_error(error: AmqpError) -> Value:
    info: dict[str, Value] = {key: _scalar_value(v) for key, v in error.info.items()}
    return ErrorFrame(
        condition=error.condition, description=error.description, info=info or None
    ).to_value()


def _scalar_value(value: Scalar) -> Value:
    return value  # every Scalar is a Value: uuid.UUID, str, bool, int, bytes, None


ERROR = Kind("error", _read_error, _write_error)
