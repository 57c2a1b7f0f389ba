"""The Construct definitions run as a decoder: the oracle the fast paths are held to.

`decode_data_unit_reference` and `parse_frame_reference` return what `decode_data_unit` and
`parse_frame` return (equal objects, or the same error class) and share no parsing code with them:
every field is read by name by the interpreted Construct structs of `structs.py`, a layout is a
whole-unit Construct struct (type, count, an Array of objects, `Terminated`), objects are built by
keyword, texts and time tags are decoded here from the spec's rules. Slow (~10k frames/s) and
meant for tests, `bench/codec.py` and anyone auditing the hot path; not for traffic.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from construct import (
    Array,
    Construct,
    ConstructError,
    Container,
    Int8ul,
    SizeofError,
    Struct,
    Terminated,
    this,
)

from firegate.codecs.gb26875.dataunit import DataUnit, TimeLayout
from firegate.codecs.gb26875.errors import (
    ChecksumError,
    CommandError,
    DataUnitError,
    DelimiterError,
    FrameError,
    HeaderInfo,
    LengthError,
)
from firegate.codecs.gb26875.frame import MAX_DATA, OVERHEAD, Frame
from firegate.codecs.gb26875.objects import OBJECT_CLASSES, InfoObject
from firegate.codecs.gb26875.structs import BODIES, CONTROL_UNIT, FRAME, TIME_TAG, TIMED, TimeTagBytes
from firegate.codecs.gb26875.tables import Command
from firegate.codecs.gb26875.timetag import TimeTag


def time_tag(raw: bytes) -> TimeTag:
    """Spec §5: second, minute, hour, day, month, year - 2000; not a date gives value None."""
    t = TIME_TAG.parse(raw)
    try:
        value: datetime | None = datetime(2000 + t.year, t.month, t.day, t.hour, t.minute, t.second)
    except ValueError:
        value = None
    return TimeTag(bytes(raw), value)


def text(raw: bytes) -> str:
    """Spec §3 "Text fields": cut at the first NUL, GB18030 with replacement, strip trailing spaces."""
    return bytes(raw).split(b"\x00", 1)[0].decode("gb18030", "replace").rstrip(" ")


def _unit(objects: Construct, *tail: Construct) -> Struct:
    return Struct(
        "type" / Int8ul, "count" / Int8ul, "objects" / Array(this.count, objects), *tail, Terminated
    )


def _layouts(type_flag: int) -> list[tuple[TimeLayout, Struct]]:
    """The layouts to try, in the order the codec prefers them when more than one fits."""
    body = BODIES[type_flag]
    per_object = _unit(Struct("body" / body, "tag" / TimeTagBytes))
    none = _unit(Struct("body" / body))
    trailing = _unit(Struct("body" / body), "tag" / TimeTagBytes)
    try:
        body.sizeof()
    except SizeofError:  # length-prefixed texts (6, 26): the plain reading first
        return [(TimeLayout.NONE, none), (TimeLayout.PER_OBJECT, per_object), (TimeLayout.TRAILING, trailing)]
    return [(TimeLayout.PER_OBJECT, per_object), (TimeLayout.NONE, none), (TimeLayout.TRAILING, trailing)]


LAYOUTS: dict[int, list[tuple[TimeLayout, Struct]]] = {t: _layouts(t) for t in BODIES}


def _object(type_flag: int, body: Container, tag: TimeTag | None) -> InfoObject:
    kwargs: dict[str, Any] = {}
    for sub in BODIES[type_flag].subcons:
        name = str(sub.name)
        value = body[name]
        if name == "description":
            kwargs["description"] = text(value)
            kwargs["description_raw"] = bytes(value)
        elif sub.subcon is TimeTagBytes:
            kwargs[name] = time_tag(value)
        else:
            kwargs[name] = value
    if type_flag in TIMED:
        kwargs["time"] = tag
    return OBJECT_CLASSES[type_flag](**kwargs)


def decode_data_unit_reference(adu: bytes) -> DataUnit | None:
    """What `dataunit.decode_data_unit` returns, by Construct (spec §2, §3; vendor-added time tags
    by trial layouts)."""
    adu = bytes(adu)
    if not adu:
        return None
    type_flag = adu[0]
    if len(adu) == 1:
        return DataUnit(type=type_flag, objects=(), raw=adu, heartbeat=True)
    if type_flag not in OBJECT_CLASSES:
        return DataUnit(type=type_flag, objects=(), raw=adu)
    timed = type_flag in TIMED
    for layout, definition in LAYOUTS[type_flag]:
        try:
            parsed = definition.parse(adu)
        except ConstructError:
            continue
        if layout is TimeLayout.TRAILING and parsed.count == 0:
            continue  # one tag after no objects is not a layout
        objects: list[InfoObject] = []
        vendor: list[TimeTag] = []
        trailing = time_tag(parsed.tag) if layout is TimeLayout.TRAILING else None
        for item in parsed.objects:
            own = time_tag(item.tag) if layout is TimeLayout.PER_OBJECT else trailing
            objects.append(_object(type_flag, item.body, own if timed else None))
            if not timed and layout is TimeLayout.PER_OBJECT and own is not None:
                vendor.append(own)
        if not timed and trailing is not None:
            vendor.append(trailing)
        return DataUnit(type_flag, tuple(objects), adu, layout, tuple(vendor))
    raise DataUnitError(f"type {type_flag}: no layout fits {len(adu)} bytes", data=adu, offset=2)


def parse_frame_reference(data: bytes, *, verify_checksum: bool = True) -> Frame:
    """What `frame.parse_frame` returns or raises, by Construct (spec §1; checks of STD §6.5.3 in
    the codec's order: size, start, length, end, checksum, command)."""
    data = bytes(data)
    if len(data) < OVERHEAD:
        raise FrameError("shorter than the smallest frame", data=data)
    if data[:2] != b"@@":
        raise DelimiterError("no '@@' at the start", data=data)
    c = CONTROL_UNIT.parse(data[2:27])
    header = HeaderInfo(
        c.serial, (c.version_major, c.version_minor), c.source, c.destination, c.length, c.command
    )
    if c.length > MAX_DATA or len(data) != OVERHEAD + c.length:
        raise LengthError("length field and frame size disagree", data=data, header=header)
    try:
        f = FRAME.parse(data)
    except ConstructError as e:  # only the end can be wrong by now
        raise DelimiterError(f"no '##' at the end: {e}", data=data, header=header) from None
    expected = sum(data[2 : 27 + c.length]) % 256
    checksum_ok = expected == f.checksum
    if not checksum_ok and verify_checksum:
        raise ChecksumError("checksum", expected=expected, actual=f.checksum, data=data, header=header)
    if checksum_ok and not (f.command in Command.__members__.values() or f.command >= 128):
        raise CommandError(f"unknown command byte {f.command}", data=data, header=header)
    return Frame(
        f.serial,
        (f.version_major, f.version_minor),
        time_tag(f.time),
        f.source,
        f.destination,
        f.command,
        f.data,
        f.checksum,
        checksum_ok,
        data,
    )
