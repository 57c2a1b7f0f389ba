"""Printer-port text: both default formats (GB18030 + ESC/POS) as golden captures, options,
unparsed and runaway lines counted, random bytes never crash."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firegate.codecs.api import Context
from firegate.codecs.errors import CodecError
from firegate.codecs.gb26875 import ComponentStatus, SystemStatus
from firegate.codecs.printer import MAX_RECORD, PrinterCodec, PrintRecord
from firegate.codecs.registry import discover
from firegate.codecs.replay import read_capture
from firegate.codecs.testing import check_golden, replay_capture

DATA = Path(__file__).parent.parent / "data" / "printer"


def gb(text: str) -> bytes:
    return text.encode("gb18030")


def records(data: bytes) -> list[PrintRecord | CodecError]:
    return PrinterCodec().framer().feed(data)


def test_registered_as_printer() -> None:
    assert isinstance(discover().line_codec("printer"), PrinterCodec)


def test_sanjiang_9108_golden() -> None:
    items = check_golden(PrinterCodec(), DATA / "sanjiang-9108.hex", DATA / "sanjiang-9108.golden.json")
    said = [(i.get("type") or i["error"], i.get("occurred_at")) for i in items]
    assert said == [
        ("fire_alarm", "2024-05-01T12:30:45+08:00"),  # the printed time, in the device zone
        ("fault_raised", "2024-05-01T12:31:02+08:00"),
        ("fault_cleared", "2024-05-01T12:40:00+08:00"),
        ("fault_raised", "2024-05-01T13:00:00+08:00"),  # main power: the panel's system status
        ("unparsed_line", None),
    ]
    data = read_capture((DATA / "sanjiang-9108.hex").read_bytes())
    assert items[-1]["offset"] == data.rfind(b"\x1b@")  # where the unreadable record starts
    fire = items[0]
    assert fire["point"]["description"] == "一层大厅"
    assert (fire["point"]["system_address"], fire["point"]["component_address"]) == (1, 15 << 16 | 2)


def test_lida_ld128en_golden() -> None:
    items = check_golden(PrinterCodec(), DATA / "lida-ld128en.hex", DATA / "lida-ld128en.golden.json")
    said = [i.get("type") for i in items]
    assert said == ["fire_alarm", "fault_raised", "fault_cleared", "status_changed", "status_changed"]
    assert items[1]["condition"] == "backup_power_fault"
    assert items[3]["set"] == ["supervisory"] and items[3]["point"]["description"] == "水流指示器"
    assert items[4]["set"] == ["reset"]


def test_control_codes_are_stripped_and_records_cut() -> None:
    data = (
        b"\x1c\x2e\x1b\x40"
        + gb("2024.05.01 12:00:00 1号机 1回路 2号")
        + b"\x0a\x1c\x26"
        + gb("火警")
        + b"\x0d"
    )
    data += b"\x1b\x36\x1b\x21\x08" + gb("故障 3回路 4号") + b"\x0a\x0a"
    got = records(data)
    assert [r.text.decode("gb18030") for r in got if isinstance(r, PrintRecord)] == [
        "",  # FS . before the reset: the panel's poll answer, a record that stores nothing
        "2024.05.01 12:00:00 1号机 1回路 2号\n火警",
        "故障 3回路 4号",  # ESC ! 8 (print mode and its argument) stripped
    ]
    assert isinstance(got[0], PrintRecord) and got[0].raw == b"\x1c\x2e"
    assert PrinterCodec().decode(got[0], Context("p")) == []


def test_unparsed_and_unknown_words_are_codec_errors() -> None:
    codec = PrinterCodec()
    [record] = records(gb("打印机缺纸") + b"\r")
    assert isinstance(record, PrintRecord)
    with pytest.raises(CodecError) as info:
        codec.decode(record, Context("p"))
    assert info.value.reason == "unparsed_line"


def test_runaway_record_is_dropped_and_counted_once() -> None:
    framer = PrinterCodec().framer()
    out = framer.feed(b"\x1b@" + b"x" * (MAX_RECORD * 3))
    out += framer.feed(b"y" * 100 + b"\r" + gb("火警 1回路 2号") + b"\r")
    assert [type(i).__name__ for i in out] == ["CodecError", "PrintRecord"]
    assert isinstance(out[0], CodecError) and out[0].reason == "length"
    assert len(framer.buffer) == 0


def test_patterns_and_events_options() -> None:
    codec = PrinterCodec()
    [record] = records(b"\x1b6" + b"ALARM C01 L02 P003 LOBBY 24/05/01 09:10\n\n")
    assert isinstance(record, PrintRecord)
    options = {
        "patterns": [
            r"(?P<event>[A-Z]+) C(?P<controller>\d+) L(?P<loop>\d+) P(?P<point>\d+) (?P<zone>\S+)"
            r" (?P<date>\d+/\d+/\d+) (?P<time>\d+:\d+)"
        ],
        "events": {"ALARM": "fire", "TROUBLE": "fault"},
        "encoding": "ascii",
    }
    [reading] = codec.decode(record, Context("p", options=options))
    [obj] = reading.objects
    assert isinstance(obj, ComponentStatus) and obj.fire and obj.description == "LOBBY"
    assert (obj.system_address, obj.component_address) == (1, 3 << 16 | 2)
    assert obj.time is not None and str(obj.time.value) == "2024-05-01 09:10:00"
    with pytest.raises(CodecError) as info:
        codec.decode(record, Context("p", options={"events": {"ALARM": "burning"}}))
    assert info.value.reason == "options"
    with pytest.raises(CodecError) as info:
        codec.decode(record, Context("p", options={"patterns": ["(unclosed"]}))
    assert info.value.reason == "options"


def test_system_event_without_a_loop_names_the_panel() -> None:
    [record] = records(b"\x1b6" + gb("主电故障 3号机 2024-05-02 08:16:00") + b"\n\n")
    assert isinstance(record, PrintRecord)
    [reading] = PrinterCodec().decode(record, Context("p"))
    [obj] = reading.objects
    assert isinstance(obj, SystemStatus) and obj.system_address == 3
    assert obj.status_flags == ("normal", "main_power_fault")


def test_a_date_a_time_tag_cannot_carry_falls_back_to_the_clock() -> None:
    [record] = records(b"\x1b6" + gb("火警 1回路 2号 1999-12-31 23:59:59") + b"\n\n")
    assert isinstance(record, PrintRecord)
    [reading] = PrinterCodec().decode(record, Context("p", clock=lambda: datetime(2026, 1, 1, 8)))
    [obj] = reading.objects
    assert isinstance(obj, ComponentStatus) and obj.time is not None
    assert obj.time.value == datetime(2026, 1, 1, 8)


def test_not_gb18030_is_an_encoding_error() -> None:
    [record] = records(b"\x1b6\x81\x20\x81\x20\n\n")
    assert isinstance(record, PrintRecord)
    with pytest.raises(CodecError) as info:
        PrinterCodec().decode(record, Context("p"))
    assert info.value.reason == "encoding"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 64))
def test_random_bytes_never_crash_and_stay_bounded(data: bytes, chunk: int) -> None:
    codec = PrinterCodec()
    framer = codec.framer()
    for i in range(0, len(data), chunk):
        for item in framer.feed(data[i : i + chunk]):
            if isinstance(item, PrintRecord):
                try:
                    codec.decode(item, Context("p"))
                except CodecError as e:
                    assert e.reason in ("unparsed_line", "unknown_event", "encoding")
            else:
                assert item.reason == "length"
        assert len(framer.buffer) <= MAX_RECORD


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["火警", "故障", "故障恢复", "主电故障", "备电故障", "复位"]), st.integers(1, 99))
def test_events_replay_the_same_in_any_chunking(word: str, point: int) -> None:
    data = (
        b"\x1b@"
        + gb(f"2024.05.01   12:30:45  1号机 02回路 {point:03d}号 大厅")
        + b"\n\x1c&"
        + gb(word)
        + b"\r"
    )
    whole = replay_capture(PrinterCodec(), data)
    assert all("error" not in i for i in whole)
    assert whole or word == "故障恢复"  # a restore of a point never seen faulty says nothing new
    assert replay_capture(PrinterCodec(), data, chunk=1) == whole
