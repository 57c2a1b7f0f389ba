"""Hypothesis strategies for GB/T 26875.3 objects and frames, built from the Construct bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from firegate.codecs.gb26875 import TimeTag, build_frame, encode_data_unit
from firegate.codecs.gb26875.dataunit import CODECS
from firegate.codecs.gb26875.objects import InfoObject
from firegate.codecs.gb26875.structs import BODIES
from firegate.codecs.gb26875.text import decode_text

u8 = st.integers(0, 255)
time_tags = st.one_of(
    st.binary(min_size=6, max_size=6).map(TimeTag.from_bytes),  # mostly not a date
    st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59))
    .map(lambda when: when.replace(microsecond=0))
    .map(TimeTag.from_datetime),
    st.just(TimeTag.from_bytes(bytes(6))),  # the all-zero tag real devices send
)

# Text fields as devices send them: GB18030 text padded with NULs (SF), spaces then a NUL (VEN),
# NUL then leftover garbage (DG), pure ASCII, and arbitrary bytes (invalid sequences included).
_TEXT_CHARS = st.sampled_from("1号楼大厅感烟探测器手动报警按钮消火栓区层 -#ABCxyz09")


def texts(size: int | None) -> st.SearchStrategy[bytes]:
    """Raw text fields: `size` bytes exactly, or (None) 0 to 60 bytes."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        limit = size if size is not None else draw(st.integers(0, 60))
        kind = draw(st.sampled_from(["text", "ascii", "garbage_after_nul", "random"]))
        if kind == "random":
            return draw(st.binary(min_size=limit, max_size=limit))
        if kind == "ascii":
            head = draw(st.binary(max_size=limit).map(lambda b: bytes(c & 0x7F for c in b)))
        else:
            head = draw(st.text(_TEXT_CHARS, max_size=limit)).encode("gb18030")[:limit]
        pad = draw(st.sampled_from([b"\x00", b" ", b" \x00", b"\xff"]))
        if kind == "garbage_after_nul":
            pad = b"\x00" + draw(st.binary(min_size=limit, max_size=limit))
        return (head + pad * limit)[:limit]

    return build()


_FORMATS = {
    "B": u8,
    "H": st.integers(0, 0xFFFF),
    "h": st.integers(-0x8000, 0x7FFF),
    "L": st.integers(0, 0xFFFFFFFF),
}


def _field_strategy(sub: Any) -> st.SearchStrategy[Any]:
    from construct import Bytes, FormatField, Prefixed

    inner = sub.subcon
    if isinstance(inner, FormatField):
        return _FORMATS[inner.fmtstr[1:]]
    if isinstance(inner, Bytes) and inner.length == 6:
        return time_tags
    if isinstance(inner, Bytes) and sub.name == "description":
        return texts(inner.length)
    if isinstance(inner, Bytes):
        return st.binary(min_size=inner.length, max_size=inner.length)
    if isinstance(inner, Prefixed):
        return texts(None)
    raise AssertionError(f"no strategy for {sub}")


@st.composite
def objects(draw: st.DrawFn, type_flag: int) -> InfoObject:
    codec = CODECS[type_flag]
    args: list[Any] = []
    for sub in BODIES[type_flag].subcons:
        value = draw(_field_strategy(sub))
        if sub.name == "description":
            args += [decode_text(value), value]
        else:
            args.append(value)
    if codec.timed:
        args.append(draw(time_tags))
    return codec.cls(*args)


def max_objects(type_flag: int) -> int:
    codec = CODECS[type_flag]
    body = codec.body_size or 70
    return max(1, min(8, 1022 // (body + 6)))


@st.composite
def data_units(draw: st.DrawFn) -> tuple[int, list[InfoObject], bytes]:
    type_flag = draw(st.sampled_from(sorted(BODIES)))
    objs = draw(st.lists(objects(type_flag), min_size=1, max_size=max_objects(type_flag)))
    return type_flag, objs, encode_data_unit(type_flag, objs)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["heartbeat", "objects", "user", "answer"]))
    data = b""
    command = 2
    if kind == "objects":
        _, _, data = draw(data_units())
        command = draw(st.sampled_from([1, 2, 4, 5]))
    elif kind == "user":
        data = bytes([draw(st.integers(128, 254))]) + draw(st.binary(max_size=40))
    elif kind == "answer":
        command = draw(st.sampled_from([3, 6]))
    return build_frame(
        serial=draw(st.integers(0, 0xFFFF)),
        command=command,
        source=draw(st.integers(0, (1 << 48) - 1)),
        destination=draw(st.integers(0, (1 << 48) - 1)),
        data=data,
        time=draw(time_tags),
        version=(draw(u8), draw(u8)),
    )
