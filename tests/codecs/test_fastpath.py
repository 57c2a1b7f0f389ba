"""The hot path against the Construct oracle (firegate/codecs/gb26875/reference.py).

Every decoder the gateway runs per frame (`decode_data_unit` with its hand-written decoders,
`parse_frame`, the framer's `sound` check, `checksum`, `decode_text`, `TimeTag.now`, `answer`) must
give what the Construct definitions give: equal objects of the same classes with fields of the
same types, or the same error class; and random bytes raise nothing but the typed errors.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from firegate.codecs.gb26875 import (
    DataUnit,
    DataUnitError,
    EncodeError,
    Frame,
    FrameError,
    TimeLayout,
    TimeTag,
    answer,
    build_frame,
    checksum,
    decode_data_unit,
    encode_data_unit,
    parse_frame,
)
from firegate.codecs.gb26875.dataunit import _FAST, CODECS
from firegate.codecs.gb26875.frame import sound, validate
from firegate.codecs.gb26875.reference import (
    decode_data_unit_reference,
    parse_frame_reference,
    text,
)
from firegate.codecs.gb26875.structs import BODIES, TIMED
from firegate.codecs.gb26875.text import decode_text
from firegate.devicetime import device_now
from tests.codecs.strategies import frames, max_objects, objects, texts, time_tags

DATA = Path(__file__).resolve().parents[1] / "data"
CASES = json.loads((DATA / "gb26875_golden.json").read_text("utf-8")) + json.loads(
    (DATA / "gb26875_vendor.json").read_text("utf-8")
)
FAST_TYPES = sorted(_FAST)
TYPES = sorted(BODIES)


def outcome(fn: Callable[[bytes], Any], arg: bytes) -> Any:
    """The value, or the error's class and header (what a caller can act on)."""
    try:
        return fn(arg)
    except FrameError as e:
        return (type(e), e.header)


def assert_same(fast: Any, oracle: Any) -> None:
    assert fast == oracle
    if isinstance(oracle, DataUnit):
        assert isinstance(fast, DataUnit)
        _same_field_types(fast, oracle)
        for ours, theirs in zip(fast.objects, oracle.objects, strict=True):
            _same_field_types(ours, theirs)
            assert hash(ours) == hash(theirs)
        for ours_tag, their_tag in zip(fast.vendor_times, oracle.vendor_times, strict=True):
            _same_field_types(ours_tag, their_tag)
    elif isinstance(oracle, Frame):
        _same_field_types(fast, oracle)
        _same_field_types(fast.time, oracle.time)


def _same_field_types(ours: Any, theirs: Any) -> None:
    """`b"x" == memoryview(b"x")`: equality alone would let a view or a subclass through."""
    assert type(ours) is type(theirs)
    for f in dataclasses.fields(theirs):
        a, b = getattr(ours, f.name), getattr(theirs, f.name)
        assert type(a) is type(b), (type(theirs).__name__, f.name, type(a), type(b))
        if isinstance(b, TimeTag):
            assert type(a.raw) is bytes and type(a.value) is type(b.value)


def check_unit(adu: bytes) -> Any:
    fast = outcome(decode_data_unit, adu)
    assert_same(fast, outcome(decode_data_unit_reference, adu))
    return fast


# ---------------------------------------------------------------- data units


@st.composite
def encoded_units(draw: st.DrawFn, types: list[int] = TYPES) -> bytes:
    """Valid data units of a type, in every layout the codec accepts (vendor time tags too),
    0 to many objects."""
    type_flag = draw(st.sampled_from(types))
    objs = draw(st.lists(objects(type_flag), min_size=0, max_size=max_objects(type_flag)))
    layout = draw(st.sampled_from(list(TimeLayout)))
    if layout is TimeLayout.TRAILING and not objs:
        layout = TimeLayout.NONE
    vendor: list[TimeTag] = []
    if type_flag not in TIMED and layout is not TimeLayout.NONE:
        vendor = draw(st.lists(time_tags, min_size=len(objs), max_size=len(objs)))
        if layout is TimeLayout.TRAILING:
            vendor = vendor[:1]
    try:
        return encode_data_unit(type_flag, objs, layout=layout, vendor_times=vendor)
    except EncodeError:  # over 1024 bytes (max_objects keeps that rare): an empty unit instead
        return b""


@settings(max_examples=600)
@given(encoded_units(FAST_TYPES))
def test_fast_types_decode_as_construct_does(adu: bytes) -> None:
    check_unit(adu)


@settings(max_examples=300)
@given(encoded_units())
def test_every_type_decodes_as_construct_does(adu: bytes) -> None:
    check_unit(adu)


@pytest.mark.parametrize("type_flag", FAST_TYPES)
@settings(max_examples=60)
@given(data=st.data())
def test_standard_layout_takes_the_fast_path(type_flag: int, data: st.DataObject) -> None:
    most = 1 if type_flag == 26 else max_objects(type_flag)  # the standard's n = 1 for type 26
    objs = data.draw(st.lists(objects(type_flag), min_size=1, max_size=most))
    adu = encode_data_unit(type_flag, objs)
    assert _FAST[type_flag](adu) is not None  # really the hand-written decoder, not the fallback
    unit = check_unit(adu)
    assert isinstance(unit, DataUnit) and list(unit.objects) == objs


@st.composite
def damaged_units(draw: st.DrawFn) -> bytes:
    """A valid unit, then a wrong count, a byte cut or added, or bytes overwritten."""
    adu = bytearray(draw(encoded_units()) or bytes([2, 0]))
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["count", "cut", "extend", "flip"]))
        if action == "count" and len(adu) > 1:
            adu[1] = draw(st.integers(0, 255))
        elif action == "cut" and adu:
            del adu[draw(st.integers(0, len(adu) - 1)) :]
        elif action == "extend":
            adu += draw(st.binary(min_size=1, max_size=8))
        elif adu:
            adu[draw(st.integers(0, len(adu) - 1))] = draw(st.integers(0, 255))
    return bytes(adu)


@settings(max_examples=600)
@given(damaged_units())
def test_damaged_units_fail_or_decode_as_construct_does(adu: bytes) -> None:
    check_unit(adu)


@settings(max_examples=500)
@given(
    st.sampled_from([*TYPES, 0, 9, 22, 27, 128, 200, 255]),
    st.integers(0, 255) | st.integers(0, 3),
    st.binary(max_size=200),
)
@example(2, 1, bytes(45))  # one byte short of a type-2 object with its tag
@example(26, 1, bytes([5]) + b"abcde")
@example(26, 1, bytes([5]) + b"abcd")
@example(26, 2, bytes([0, 0]))
@example(21, 0, b"")
@example(21, 0, bytes(6))  # a "trailing" tag after no objects
@example(25, 0, b"")
def test_random_units_raise_only_data_unit_errors(type_flag: int, count: int, body: bytes) -> None:
    adu = bytes([type_flag, count]) + body
    result = check_unit(adu)
    assert isinstance(result, DataUnit) or result[0] is DataUnitError


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_random_bytes_as_a_data_unit(adu: bytes) -> None:
    result = check_unit(adu)
    assert result is None or isinstance(result, DataUnit) or result[0] is DataUnitError


def test_golden_and_vendor_frames_agree_with_the_oracle() -> None:
    for case in CASES:
        raw = bytes.fromhex(case["hex"])
        for verify in (True, False):
            fast = outcome(partial(parse_frame, verify_checksum=verify), raw)
            oracle = outcome(partial(parse_frame_reference, verify_checksum=verify), raw)
            assert_same(fast, oracle)
            if isinstance(fast, Frame):
                check_unit(fast.data)


def test_the_fast_decoders_read_the_derived_formats() -> None:
    """What `_derived` checks at import, restated: unpack order = Construct field order + tag."""
    for type_flag in FAST_TYPES:
        codec = CODECS[type_flag]
        names = [str(sub.name) for sub in BODIES[type_flag].subcons]
        flat = codec.tagged if codec.timed else codec.plain
        if flat is not None:
            assert list(flat.names) == names + (["time"] if codec.timed else [])


# ---------------------------------------------------------------- frames


@st.composite
def damaged_frames(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(frames()))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["flip", "cut", "extend", "length", "command", "end"]))
        if not raw:
            break
        if action == "flip":
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        elif action == "cut":
            del raw[draw(st.integers(0, len(raw) - 1)) :]
        elif action == "extend":
            raw += draw(st.binary(min_size=1, max_size=4))
        elif action == "length" and len(raw) >= 26:
            raw[24:26] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "little")
        elif action == "command" and len(raw) >= 27:
            raw[26] = draw(st.integers(0, 255))
        elif action == "end":
            raw[-1] = draw(st.integers(0, 255))
    return bytes(raw)


@st.composite
def any_command_frames(draw: st.DrawFn) -> bytes:
    """Sound framing and checksum around any command byte: 0 and 7-127 are check errors."""
    return build_frame(
        serial=draw(st.integers(0, 0xFFFF)),
        command=draw(st.integers(0, 255)),
        source=draw(st.integers(0, (1 << 48) - 1)),
        destination=1,
        data=draw(st.binary(max_size=12)),
        time=draw(time_tags),
    )


@settings(max_examples=500)
@given(damaged_frames() | any_command_frames(), st.booleans())
def test_parse_frame_as_construct_does(raw: bytes, verify: bool) -> None:
    fast = outcome(lambda b: parse_frame(b, verify_checksum=verify), raw)
    assert_same(fast, outcome(lambda b: parse_frame_reference(b, verify_checksum=verify), raw))
    if isinstance(fast, Frame):
        check_unit(fast.data)


@settings(max_examples=300)
@given(st.binary(min_size=30, max_size=80).map(lambda b: b"@@" + b[2:]), st.booleans())
def test_random_frames_raise_only_frame_errors(raw: bytes, verify: bool) -> None:
    fast = outcome(lambda b: parse_frame(b, verify_checksum=verify), raw)
    assert isinstance(fast, Frame) or issubclass(fast[0], FrameError)
    assert_same(fast, outcome(lambda b: parse_frame_reference(b, verify_checksum=verify), raw))


@settings(max_examples=400)
@given(damaged_frames() | any_command_frames(), st.binary(max_size=5))
def test_sound_is_exactly_validate_passing(raw: bytes, before: bytes) -> None:
    buf = bytearray(before + raw)
    at = len(before)
    if len(raw) < 27:
        return
    length = buf[at + 24] | buf[at + 25] << 8
    if length <= 1024 and len(raw) < 30 + length:
        return  # the framer waits for the rest before asking
    assert sound(buf, at, length) is (validate(buf, at) is None)
    assert sound(bytes(buf), at, length) is (validate(bytes(buf), at) is None)


@settings(max_examples=300)
@given(st.binary(max_size=2100), st.integers(0, 3))
@example(b"\xff" * 256, 0)
@example(b"\xff" * 257, 0)
@example(b"\xff" * 2100, 0)
@example(b"", 0)
def test_checksum_is_the_byte_sum(data: bytes, kind: int) -> None:
    buf: bytes | bytearray | memoryview = (
        data,
        bytearray(data),
        memoryview(data),
        memoryview(bytearray(b"x" + data))[1:],
    )[kind]
    assert checksum(buf) == sum(data) % 256


# ---------------------------------------------------------------- text, time, answers


@settings(max_examples=500)
@given(texts(31) | texts(None) | st.binary(max_size=40))
def test_decode_text_follows_the_spec_rule(raw: bytes) -> None:
    assert decode_text(raw) == text(raw)


def test_time_tag_now_is_now_and_shared_within_a_second() -> None:
    before = device_now().replace(microsecond=0, tzinfo=None)
    tag = TimeTag.now()  # in the device time zone, not the host's (a UTC host here)
    assert tag.value is not None and before <= tag.value <= device_now().replace(tzinfo=None)
    for _ in range(100):
        second = int(time.time())
        first, again = TimeTag.now(), TimeTag.now()
        if int(time.time()) == second:
            assert again is first
            break


@settings(max_examples=300)
@given(
    frames(),
    st.sampled_from([3, 6]) | st.integers(-1, 256),
    st.none() | st.binary(min_size=6, max_size=6) | st.binary(max_size=8),
    st.none() | time_tags,
)
def test_answer_is_build_frame_with_swapped_addresses(
    raw: bytes, command: int, center: bytes | None, tag: TimeTag | None
) -> None:
    frame = parse_frame(raw)
    header = frame.header
    fixed = tag or TimeTag.from_bytes(bytes([1, 2, 3, 4, 5, 26]))

    def expected() -> bytes:
        return build_frame(
            serial=frame.serial,
            command=command,
            source=center if center is not None else frame.destination_raw,
            destination=frame.source_raw,
            time=fixed,
            version=frame.version,
        )

    try:
        want = expected()
    except EncodeError:
        for to in (frame, header):
            with pytest.raises(EncodeError):
                answer(to, command, center_address=center, time=fixed)
        return
    for to in (frame, header):
        got = answer(to, command, center_address=center, time=fixed)
        assert got == want
    if command in (3, 6):
        back = parse_frame(want)
        assert (back.serial, back.version, back.data) == (frame.serial, frame.version, b"")
        assert back.destination_raw == frame.source_raw and back.time == fixed
    head = struct.pack(
        "<HBB6s6s6sHB",
        frame.serial,
        *frame.version,
        fixed.raw,
        center if center is not None else frame.destination_raw,
        frame.source_raw,
        0,
        command,
    )
    assert want == b"@@" + head + bytes([sum(head) % 256]) + b"##"  # by hand, from the spec


def test_answer_without_a_time_uses_now() -> None:
    frame = parse_frame(build_frame(serial=7, command=2, source=889, destination=88888))
    before = device_now().replace(microsecond=0, tzinfo=None)
    back = parse_frame(answer(frame, 3))  # the center's answers carry now in the device time zone
    assert back.time.value is not None and before <= back.time.value <= device_now().replace(tzinfo=None)
