"""notifier3030's own tests: records in any chunking, each event byte's meaning, a golden capture."""

from __future__ import annotations

from pathlib import Path

import pytest
from firegate.codecs.api import Context, PanelAddress, PointRef
from firegate.codecs.errors import CodecError
from firegate.codecs.gb26875 import ComponentStatus
from firegate.codecs.testing import check_golden

from firegate_codec_notifier3030.codec import Frame, Framer, Notifier3030Codec

DATA = Path(__file__).parent / "data"


def _one(raw: bytes, context: Context | None = None) -> ComponentStatus:
    codec = Notifier3030Codec()
    [frame] = codec.framer().feed(raw)
    assert isinstance(frame, Frame)
    [reading] = codec.decode(frame, context or Context("panel-1"))
    [obj] = reading.objects
    assert reading.type_flag == 2 and isinstance(obj, ComponentStatus)
    return obj


def test_capture_matches_golden() -> None:
    # after a deliberate change: FIREGATE_REGEN_GOLDEN=1 python -m pytest, then review the diff
    items = check_golden(Notifier3030Codec(), DATA / "capture.hex", DATA / "capture.golden.json")
    kinds = [item.get("type") or item.get("error") for item in items]
    assert kinds == [
        "fire_alarm",
        "unknown_event",
        "fault_raised",
        "status_changed",  # disabled
        "status_changed",  # feedback
        "fault_cleared",
        "status_changed",  # enabled again
        "address",
    ], kinds


@pytest.mark.parametrize(
    ("code", "flag"),
    [(0x6B, "fire"), (0x45, "fault"), (0xD1, "feedback"), (0xF2, "disabled"), (0x05, None)],
)
def test_event_byte_meanings(code: int, flag: str | None) -> None:
    obj = _one(bytes([code]) + b"L1D023\n")
    assert obj.status_flags == (("normal", flag) if flag else ("normal",))


def test_address_kind_and_zone() -> None:
    obj = _one(b"\x45P2 L3M012 " + "二层配电间".encode("gb18030") + b"\n")
    assert (obj.system_address, obj.component_address) == (2, 12 << 16 | 3)
    assert obj.component_type == 84  # a module
    assert obj.description == "二层配电间"


def test_point_table_wins_over_the_letter() -> None:
    class Table:
        def lookup(self, address: PanelAddress) -> PointRef:
            assert address == PanelAddress(1, 1, 23)
            return PointRef(system_address=9, component_type=42, component_address=5, description="大厅")

    obj = _one(b"\x6bL1D023\n", Context("panel-1", Table()))
    assert (obj.system_address, obj.component_type, obj.component_address) == (9, 42, 5)
    assert obj.description == "大厅"


def test_records_split_anywhere() -> None:
    data = b"\x6bL1D023 hall\n\x05L1D023\n"
    framer = Framer()
    items = [item for b in data for item in framer.feed(bytes([b]))]
    assert items == [Frame(b"\x6bL1D023 hall\n"), Frame(b"\x05L1D023\n")]


def test_runaway_record_is_dropped_once_and_bounded() -> None:
    framer = Framer()
    items = framer.feed(b"\x6b" + b"x" * 1000)
    items += framer.feed(b"y" * 1000 + b"\n\x05L1D023\n")
    errors = [i for i in items if isinstance(i, CodecError)]
    assert [e.reason for e in errors] == ["length"]
    assert items[-1] == Frame(b"\x05L1D023\n")
    assert len(framer.buffer) == 0


def test_unknown_event_byte() -> None:
    codec = Notifier3030Codec()
    [frame] = codec.framer().feed(b"\x99L1D023\n")
    assert isinstance(frame, Frame)
    with pytest.raises(CodecError) as info:
        codec.decode(frame, Context("panel-1"))
    assert info.value.reason == "unknown_event"
