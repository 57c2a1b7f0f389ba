"""Round trips: build -> parse -> build is byte-exact, and Construct (the definition) agrees."""

from __future__ import annotations

import pytest
from construct import Container
from hypothesis import given, settings
from hypothesis import strategies as st

from firegate.codecs.gb26875 import (
    ComponentStatus,
    DataUnitError,
    TimeLayout,
    TimeTag,
    UitdOperation,
    UitdSoftwareVersion,
    decode_data_unit,
    encode_data_unit,
    parse_frame,
    rebuild,
    reencode,
)
from firegate.codecs.gb26875.structs import BODIES, DATA_UNIT_HEAD, FRAME, TIMED
from tests.codecs.strategies import data_units, frames, objects


@settings(max_examples=400)
@given(data_units())
def test_data_unit_round_trip(case: tuple[int, list, bytes]) -> None:
    type_flag, objs, data = case
    unit = decode_data_unit(data)
    assert unit is not None
    assert unit.type == type_flag
    assert list(unit.objects) == objs
    assert reencode(unit) == data


@settings(max_examples=300)
@given(frames())
def test_frame_round_trip(raw: bytes) -> None:
    frame = parse_frame(raw)
    assert frame.raw == raw
    assert rebuild(frame) == raw


@settings(max_examples=300)
@given(frames())
def test_construct_definition_agrees_with_fast_path(raw: bytes) -> None:
    parsed = FRAME.parse(raw)
    frame = parse_frame(raw)
    assert parsed.serial == frame.serial
    assert (parsed.version_major, parsed.version_minor) == frame.version
    assert parsed.time == frame.time.raw
    assert parsed.source == frame.source_raw and parsed.destination == frame.destination_raw
    assert parsed.command == frame.command and parsed.data == frame.data
    assert parsed.checksum == frame.checksum
    # and Construct builds the same bytes from the same fields
    fields = Container({k: v for k, v in parsed.items() if not k.startswith("_")})
    assert FRAME.build(fields) == raw


@pytest.mark.parametrize("type_flag", sorted(BODIES))
@settings(max_examples=60)
@given(data=st.data())
def test_construct_bodies_agree(type_flag: int, data: st.DataObject) -> None:
    objs = data.draw(st.lists(objects(type_flag), min_size=1, max_size=3))
    raw = encode_data_unit(type_flag, objs)
    head = DATA_UNIT_HEAD.parse(raw)
    assert (head.type, head.count) == (type_flag, len(objs))
    offset = 2
    body = BODIES[type_flag]
    for obj in objs:
        parsed = body.parse(raw[offset:])
        size = len(body.build(parsed))
        offset += size + (6 if type_flag in TIMED else 0)
        for name, value in parsed.items():
            if name.startswith("_"):
                continue
            ours = getattr(obj, "description_raw" if name == "description" else name)
            assert (ours.raw if isinstance(ours, TimeTag) else ours) == value, name
    assert offset == len(raw)


def test_vendor_time_tags_on_untimed_types_are_kept() -> None:
    tag = TimeTag.from_bytes(bytes([1, 2, 3, 4, 5, 26]))
    plain = encode_data_unit(25, [UitdSoftwareVersion(1, 2)])
    per_object = plain + tag.raw
    unit = decode_data_unit(per_object)
    assert unit is not None and unit.layout is TimeLayout.PER_OBJECT and unit.vendor_times == (tag,)
    assert reencode(unit) == per_object


def test_timed_type_without_tags_is_tolerated() -> None:
    obj = ComponentStatus.make(1, 1, 42, 7, 3, "x", None)
    data = encode_data_unit(2, [obj], layout=TimeLayout.NONE)
    unit = decode_data_unit(data)
    assert unit is not None and unit.layout is TimeLayout.NONE
    assert unit.objects[0] == obj and reencode(unit) == data


def test_trailing_time_tag_variant() -> None:
    tag = TimeTag.from_bytes(bytes([0, 0, 8, 1, 2, 26]))
    data = bytes([24, 2, 0x20, 1, 0x01, 2]) + tag.raw  # two objects, one tag after both (a vendor variant)
    unit = decode_data_unit(data)
    assert unit is not None and unit.layout is TimeLayout.TRAILING
    assert unit.objects == (UitdOperation(0x20, 1, tag), UitdOperation(1, 2, tag))
    assert reencode(unit) == data


def test_length_mismatch_is_a_data_unit_error_with_the_bytes() -> None:
    data = bytes([2, 1]) + bytes(41)
    with pytest.raises(DataUnitError) as info:
        decode_data_unit(data)
    assert info.value.data == data and info.value.reason == "data_unit"


def test_count_zero_and_unknown_types() -> None:
    assert decode_data_unit(bytes([1, 0])).objects == ()  # type: ignore[union-attr]
    unit = decode_data_unit(bytes([200, 9, 1, 2, 3]))
    assert unit is not None and not unit.known and unit.raw == bytes([200, 9, 1, 2, 3])
    assert decode_data_unit(bytes([0x16])).heartbeat  # type: ignore[union-attr]
    assert decode_data_unit(b"") is None
