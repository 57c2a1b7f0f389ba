"""The application data unit (spec §2, §3): type flag, object count, objects.

Parsing is sequential per type (type 6's objects differ in length). Where a peer adds or omits
time tags, the layout is told apart by length arithmetic: remaining = n x body, n x (body + 6),
or n x body + 6.

`decode_data_unit` tries a hand-written decoder for the standard layout of the upload types first
(the hot path, below `CODECS`), then the general path driven by the derived struct codecs.
`reference.py` decodes the same bytes with the Construct definitions: the oracle of both.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import Enum
from itertools import starmap
from typing import Any

from firegate.codecs.gb26875.errors import DataUnitError, EncodeError
from firegate.codecs.gb26875.fastpath import FlatCodec, flat_codec
from firegate.codecs.gb26875.objects import (
    OBJECT_CLASSES,
    AnalogValue,
    ComponentConfig,
    ComponentStatus,
    FacilityOperation,
    FacilitySoftwareVersion,
    FacilitySystemTime,
    InfoObject,
    SystemStatus,
    UitdConfig,
    UitdOperation,
    UitdSoftwareVersion,
    UitdStatus,
    UitdSystemTime,
)
from firegate.codecs.gb26875.structs import BODIES, TIMED
from firegate.codecs.gb26875.tables import TypeFlag, name_of
from firegate.codecs.gb26875.text import decode_text
from firegate.codecs.gb26875.timetag import TimeTag

HEARTBEAT_BYTE = 0x16  # the one-byte "handshake" payload some UITDs send (spec §8)


class TimeLayout(Enum):
    PER_OBJECT = "per_object"  # a tag after every body
    NONE = "none"  # no tags
    TRAILING = "trailing"  # one tag after all bodies (a vendor variant)


@dataclass(frozen=True, slots=True)
class DataUnit:
    """A decoded data unit. `objects` is empty for user-defined and reserved types (see `raw`).

    `vendor_times` holds tags a peer appended to types that have none in the standard.
    """

    type: int
    objects: tuple[InfoObject, ...]
    raw: bytes
    layout: TimeLayout = TimeLayout.NONE
    vendor_times: tuple[TimeTag, ...] = ()
    heartbeat: bool = False

    @property
    def type_name(self) -> str:
        return name_of(TypeFlag, self.type)

    @property
    def known(self) -> bool:
        return self.type in OBJECT_CLASSES


_TIME = object()
_TEXT = object()
_Converter = object | None


@dataclass(frozen=True, slots=True)
class _TypeCodec:
    cls: type[InfoObject]
    body_size: int | None  # None: variable (types 6, 26)
    timed: bool
    plain: FlatCodec | None  # body only
    tagged: FlatCodec | None  # body + time tag
    converters: tuple[_Converter, ...]


def _converter(name: str) -> _Converter:
    if name in ("time", "start_time"):
        return _TIME
    if name == "description":
        return _TEXT
    return None


def _make_codec(type_flag: int) -> _TypeCodec:
    body = BODIES[type_flag]
    plain = flat_codec(body)
    tagged = flat_codec(body, extra="6s", extra_names=("time",)) if plain else None
    names = tuple(str(sub.name) for sub in body.subcons)
    return _TypeCodec(
        cls=OBJECT_CLASSES[type_flag],
        body_size=plain.size if plain else None,
        timed=type_flag in TIMED,
        plain=plain,
        tagged=tagged,
        converters=tuple(_converter(n) for n in names),
    )


CODECS: dict[int, _TypeCodec] = {t: _make_codec(t) for t in BODIES}


def _build_object(codec: _TypeCodec, values: Sequence[Any], tag: bytes | None) -> InfoObject:
    args: list[Any] = []
    for conv, value in zip(codec.converters, values, strict=False):
        if conv is None:
            args.append(value)
        elif conv is _TEXT:
            args.append(decode_text(value))
            args.append(bytes(value))
        else:
            args.append(TimeTag.from_bytes(value))
    if codec.timed:
        args.append(TimeTag.from_bytes(tag) if tag is not None else None)
    return codec.cls(*args)


# ---- the hot path ------------------------------------------------------------------------------
#
# Hand-written decoders for the layouts devices send: every upload type in the standard's layout
# (a tag after each object of 1, 2, 3, 4, 21, 24; none after 5, 7, 8, 25, 26, 28), one or more
# objects. Anything else (no objects, vendor time tags, downstream types) falls through to the
# general path below. They give what the general path gives, object for object: the tests hold
# both to the Construct oracle (reference.py, tests/codecs/test_fastpath.py). The struct formats
# are the ones derived from structs.BODIES, and the field order each row function unpacks is
# checked against them at import.

_FastDecoder = Callable[[bytes], DataUnit | None]
_tag = TimeTag.from_bytes


def _derived(type_flag: int, names: str) -> struct.Struct:
    """The derived codec of `type_flag` (body, plus the time tag for timed types), whose fields
    must be `names` in this order: the rows below unpack them positionally."""
    codec = CODECS[type_flag]
    flat = codec.tagged if codec.timed else codec.plain
    if flat is None or flat.names != tuple(names.split()):
        raise RuntimeError(f"type {type_flag}: fields {flat and flat.names} != {names!r}")
    return flat.codec


def _fixed(type_flag: int, codec: struct.Struct, row: Callable[..., InfoObject]) -> _FastDecoder:
    """A decoder for 1..255 objects of `codec.size` bytes each, `row` building one object."""
    step = codec.size
    unpack = codec.unpack_from
    iter_unpack = codec.iter_unpack
    layout = TimeLayout.PER_OBJECT if type_flag in TIMED else TimeLayout.NONE

    def decode(adu: bytes) -> DataUnit | None:
        count = adu[1]
        if not count or len(adu) != 2 + count * step:
            return None
        if count == 1:
            objects: tuple[InfoObject, ...] = (row(*unpack(adu, 2)),)
        else:
            objects = tuple(starmap(row, iter_unpack(memoryview(adu)[2:])))
        return DataUnit(type_flag, objects, bytes(adu), layout, (), False)

    decode.__name__ = decode.__qualname__ = f"decode_type_{type_flag}"
    return decode


def _row1(st: int, sa: int, status: int, time: bytes) -> InfoObject:
    return SystemStatus(st, sa, status, _tag(time))


def _row2(st: int, sa: int, ct: int, ca: int, status: int, text: bytes, time: bytes) -> InfoObject:
    return ComponentStatus(st, sa, ct, ca, status, decode_text(text), text, _tag(time))


def _row3(st: int, sa: int, ct: int, ca: int, analog_type: int, value: int, time: bytes) -> InfoObject:
    return AnalogValue(st, sa, ct, ca, analog_type, value, _tag(time))


def _row4(st: int, sa: int, operation: int, operator_id: int, time: bytes) -> InfoObject:
    return FacilityOperation(st, sa, operation, operator_id, _tag(time))


def _row7(st: int, sa: int, ct: int, ca: int, text: bytes) -> InfoObject:
    return ComponentConfig(st, sa, ct, ca, decode_text(text), text)


def _row8(st: int, sa: int, time: bytes) -> InfoObject:
    return FacilitySystemTime(st, sa, _tag(time))


def _row21(status: int, time: bytes) -> InfoObject:
    return UitdStatus(status, _tag(time))


def _row24(operation: int, operator_id: int, time: bytes) -> InfoObject:
    return UitdOperation(operation, operator_id, _tag(time))


def _row28(time: bytes) -> InfoObject:
    return UitdSystemTime(_tag(time))


def _decode_26(adu: bytes) -> DataUnit | None:
    """Type 26, one length-prefixed description and no tag (the standard's only layout)."""
    if adu[1] != 1 or len(adu) < 3 or len(adu) != 3 + adu[2]:
        return None
    text = bytes(adu[3:])
    obj = UitdConfig(decode_text(text), text)
    return DataUnit(26, (obj,), bytes(adu), TimeLayout.NONE, (), False)


_FAST: dict[int, _FastDecoder] = {
    1: _fixed(1, _derived(1, "system_type system_address status time"), _row1),
    2: _fixed(
        2,
        _derived(
            2,
            "system_type system_address component_type component_address status description time",
        ),
        _row2,
    ),
    3: _fixed(
        3,
        _derived(3, "system_type system_address component_type component_address analog_type value time"),
        _row3,
    ),
    4: _fixed(4, _derived(4, "system_type system_address operation operator_id time"), _row4),
    5: _fixed(5, _derived(5, "system_type system_address major minor"), FacilitySoftwareVersion),
    7: _fixed(
        7, _derived(7, "system_type system_address component_type component_address description"), _row7
    ),
    8: _fixed(8, _derived(8, "system_type system_address time"), _row8),
    21: _fixed(21, _derived(21, "status time"), _row21),
    24: _fixed(24, _derived(24, "operation operator_id time"), _row24),
    25: _fixed(25, _derived(25, "major minor"), UitdSoftwareVersion),
    26: _decode_26,
    28: _fixed(28, _derived(28, "time"), _row28),
}


def decode_data_unit(adu: bytes) -> DataUnit | None:
    """Decode a data unit. Empty (a heartbeat) gives None; unknown types give raw bytes."""
    size = len(adu)
    if size < 2:
        if size == 0:
            return None
        return DataUnit(type=adu[0], objects=(), raw=bytes(adu), heartbeat=True)
    type_flag = adu[0]
    fast = _FAST.get(type_flag)
    if fast is not None:
        unit = fast(adu)
        if unit is not None:
            return unit
    codec = CODECS.get(type_flag)
    if codec is None:
        return DataUnit(type=type_flag, objects=(), raw=bytes(adu))
    count = adu[1]
    if codec.body_size is None:
        return _decode_variable(codec, type_flag, count, adu)
    return _decode_fixed(codec, type_flag, count, adu)


def _decode_fixed(codec: _TypeCodec, type_flag: int, count: int, adu: bytes) -> DataUnit:
    assert codec.plain is not None and codec.tagged is not None and codec.body_size is not None
    remaining = len(adu) - 2
    body = codec.body_size
    if remaining == count * (body + 6):
        layout = TimeLayout.PER_OBJECT
    elif remaining == count * body:
        layout = TimeLayout.NONE
    elif remaining == count * body + 6 and count > 0:
        layout = TimeLayout.TRAILING
    else:
        raise DataUnitError(
            f"type {type_flag}: {remaining} bytes for {count} objects of {body} bytes "
            f"(with or without 6-byte time tags)",
            data=bytes(adu),
            offset=2,
        )
    objects: list[InfoObject] = []
    vendor: list[TimeTag] = []
    offset = 2
    if layout is TimeLayout.PER_OBJECT:
        unpack = codec.tagged.codec.unpack_from
        step = body + 6
        for _ in range(count):
            values = unpack(adu, offset)
            offset += step
            if codec.timed:
                objects.append(_build_object(codec, values[:-1], values[-1]))
            else:
                objects.append(_build_object(codec, values[:-1], None))
                vendor.append(TimeTag.from_bytes(values[-1]))
    else:
        unpack = codec.plain.codec.unpack_from
        trailing = adu[-6:] if layout is TimeLayout.TRAILING else None
        for _ in range(count):
            values = unpack(adu, offset)
            offset += body
            objects.append(_build_object(codec, values, trailing if codec.timed else None))
        if trailing is not None and not codec.timed:
            vendor.append(TimeTag.from_bytes(trailing))
    return DataUnit(type_flag, tuple(objects), bytes(adu), layout, tuple(vendor))


def _read_variable(codec: _TypeCodec, adu: bytes, count: int, tags: bool) -> tuple[list[Any], int] | None:
    """Parse `count` length-prefixed objects; returns (values per object, end offset) or None."""
    prefix = len(codec.converters) - 1  # fixed single-byte fields before the text
    offset = 2
    rows: list[Any] = []
    for _ in range(count):
        if offset + prefix + 1 > len(adu):
            return None
        head = list(adu[offset : offset + prefix])
        text_len = adu[offset + prefix]
        start = offset + prefix + 1
        end = start + text_len
        tag_end = end + (6 if tags else 0)
        if tag_end > len(adu):
            return None
        rows.append((head, adu[start:end], adu[end:tag_end] if tags else None))
        offset = tag_end
    return rows, offset


def _decode_variable(codec: _TypeCodec, type_flag: int, count: int, adu: bytes) -> DataUnit:
    layout = TimeLayout.NONE
    parsed = _read_variable(codec, adu, count, tags=False)
    if parsed is None or parsed[1] != len(adu):
        tagged = _read_variable(codec, adu, count, tags=True)
        if tagged is not None and tagged[1] == len(adu):
            parsed, layout = tagged, TimeLayout.PER_OBJECT
        elif parsed is not None and parsed[1] + 6 == len(adu) and count > 0:
            layout = TimeLayout.TRAILING
        else:
            raise DataUnitError(
                f"type {type_flag}: {len(adu) - 2} bytes do not hold {count} length-prefixed objects",
                data=bytes(adu),
                offset=2,
            )
    rows, _ = parsed
    objects = tuple(_build_object(codec, [*head, text], None) for head, text, _tag in rows)
    if layout is TimeLayout.PER_OBJECT:
        vendor = tuple(TimeTag.from_bytes(tag) for _h, _t, tag in rows)
    elif layout is TimeLayout.TRAILING:
        vendor = (TimeTag.from_bytes(adu[-6:]),)
    else:
        vendor = ()
    return DataUnit(type_flag, objects, bytes(adu), layout, vendor)


# ---- encoding ---------------------------------------------------------------------------------


def _object_values(obj: InfoObject, timed: bool) -> tuple[list[Any], TimeTag | None]:
    """The body's field values in Construct order, and the trailing time tag of timed types."""
    values: list[Any] = []
    tag: TimeTag | None = None
    for f in fields(obj):
        name = f.name
        value = getattr(obj, name)
        if name == "description":
            continue
        if name == "description_raw":
            values.append(value)
        elif timed and name == "time":
            tag = value
        elif isinstance(value, TimeTag):
            values.append(value.raw)
        else:
            values.append(value)
    return values, tag


def encode_data_unit(
    type_flag: int,
    objects: Sequence[InfoObject],
    *,
    layout: TimeLayout | None = None,
    vendor_times: Sequence[TimeTag] = (),
) -> bytes:
    """Encode objects of one type. Timed types write each object's `time` (now, if None)."""
    codec = CODECS.get(type_flag)
    if codec is None:
        raise EncodeError(f"type {type_flag} has no object layout; send its raw bytes", value=type_flag)
    if len(objects) > 255:
        raise EncodeError(f"{len(objects)} objects do not fit one data unit", value=len(objects))
    if layout is None:
        layout = TimeLayout.PER_OBJECT if codec.timed else TimeLayout.NONE
    out = bytearray((type_flag, len(objects)))
    for index, obj in enumerate(objects):
        if not isinstance(obj, codec.cls):
            raise EncodeError(f"type {type_flag} takes {codec.cls.__name__}, got {obj!r}", value=obj)
        values, tag = _object_values(obj, codec.timed)
        try:
            if codec.plain is not None:
                out += codec.plain.codec.pack(*values)
            else:
                *head, text = values
                if len(text) > 255:
                    raise EncodeError(f"description of {len(text)} bytes exceeds 255", value=text)
                out += bytes(head) + bytes((len(text),)) + text
        except (struct.error, ValueError) as e:
            if isinstance(e, EncodeError):
                raise
            raise EncodeError(f"type {type_flag}: {e}: {obj!r}", value=obj) from e
        if layout is TimeLayout.PER_OBJECT:
            if codec.timed:
                out += (tag or TimeTag.now()).raw
            else:
                out += vendor_times[index].raw
    if layout is TimeLayout.TRAILING:
        out += (vendor_times[0] if vendor_times else _first_tag(objects)).raw
    if len(out) > 1024:
        raise EncodeError(f"data unit of {len(out)} bytes exceeds 1024", value=len(out))
    return bytes(out)


def _first_tag(objects: Sequence[InfoObject]) -> TimeTag:
    tag = getattr(objects[0], "time", None) if objects else None
    return tag if isinstance(tag, TimeTag) else TimeTag.now()


def reencode(unit: DataUnit) -> bytes:
    """Encode a decoded data unit again: identical bytes for every unit that decoded."""
    if not unit.known or unit.heartbeat:
        return unit.raw
    return encode_data_unit(unit.type, unit.objects, layout=unit.layout, vendor_times=unit.vendor_times)


def object_bytes(unit: DataUnit) -> list[bytes]:
    """Each object's own bytes as sent, including its time tag (the basis of event ids)."""
    codec = CODECS.get(unit.type)
    if codec is None or unit.heartbeat:
        return []
    if codec.body_size is None:
        return [
            encode_data_unit(unit.type, [obj], layout=TimeLayout.NONE)[2:] + (tag.raw if tag else b"")
            for obj, tag in zip(unit.objects, _padded(unit.vendor_times, len(unit.objects)), strict=True)
        ]
    body = codec.body_size
    raw = unit.raw
    if unit.layout is TimeLayout.PER_OBJECT:
        step = body + 6
        return [raw[2 + i * step : 2 + (i + 1) * step] for i in range(len(unit.objects))]
    trailing = raw[-6:] if unit.layout is TimeLayout.TRAILING else b""
    return [raw[2 + i * body : 2 + (i + 1) * body] + trailing for i in range(len(unit.objects))]


def _padded(tags: tuple[TimeTag, ...], n: int) -> list[TimeTag | None]:
    if len(tags) == n:
        return list(tags)
    return [tags[0] if tags else None] * n
