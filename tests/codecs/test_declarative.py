"""Declarative (YAML) panel dialects: strict validation, the shipped dialects' golden captures,
framers that survive any bytes, and build -> frame -> decode round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firegate.codecs.api import Context, PanelAddress
from firegate.codecs.checksums import CHECKSUMS
from firegate.codecs.declarative import (
    MEANINGS,
    DeclarativeCodec,
    DialectFrame,
    load_dialect,
    parse_dialect,
    shipped,
)
from firegate.codecs.errors import CodecError
from firegate.codecs.gb26875 import ComponentStatus, SystemStatus
from firegate.codecs.registry import discover
from firegate.codecs.testing import check_golden
from firegate.errors import ConfigError

DATA = Path(__file__).parent.parent / "data" / "dialects"
CODECS = {c.name: c for c in shipped()}

MINIMAL = """
name: tiny
framing: {head: "7E", length: 6}
checksum: {kind: sum8, start: 1}
fields:
  event: {offset: 1}
  loop: {offset: 2}
  point: {offset: 3, size: 2, encoding: binary_le}
events: {0x01: fire, 0x02: fault, 0x03: restore, 0x10: main_power_fault, 0x00: none}
acknowledge: "7E 06"
"""
TAILED = """
name: tailed
framing: {tail: "0D 0A", max_length: 32}
fields:
  event: {offset: 0}
  loop: {offset: 1, size: 2, encoding: ascii}
  point: {offset: 3, size: 3, encoding: ascii}
events: {0x46: fire, 0x54: fault, 0x52: restore}
"""


def test_shipped_dialects_register_through_the_entry_point() -> None:
    registry = discover()
    for name in ("gst-jbqb", "forsafe"):
        installed = registry.codecs[name]
        assert installed.kind == "line"
        assert "firegate.codecs.declarative:shipped" in installed.source
        assert f"dialects/{name}.yaml" in installed.source
    gst = registry.line_codec("gst-jbqb")
    assert (gst.line.baudrate, gst.line.parity, gst.line.stopbits) == (2400, "N", 1)
    assert gst.poll() == bytes.fromhex("AA 08 09 20 09 20 04")
    assert isinstance(gst, DeclarativeCodec) and gst.poll_interval == 3.0


@pytest.mark.parametrize("name", ["gst-jbqb", "forsafe"])
def test_golden_capture(name: str) -> None:
    items = check_golden(CODECS[name], DATA / f"{name}.hex", DATA / f"{name}.golden.json")
    assert any(i.get("type") == "fire_alarm" for i in items)


def test_forsafe_capture_means_what_its_comments_say() -> None:
    items = check_golden(CODECS["forsafe"], DATA / "forsafe.hex", DATA / "forsafe.golden.json")
    said = [(i.get("type") or i["error"], (i.get("point") or {}).get("component_address")) for i in items]
    assert said == [
        ("fire_alarm", 34 << 16 | 2),
        ("fault_raised", 5 << 16 | 3),
        ("checksum", None),  # the damaged fire frame
        ("delimiter", None),  # its remains and the garbage
        ("fault_cleared", 5 << 16 | 3),
        ("fault_raised", None),  # main power: a system status, no component
        ("fault_cleared", None),
        ("status_changed", None),  # reset
        ("length", None),
        ("delimiter", None),
    ]
    power = items[5]
    assert power["condition"] == "main_power_fault" and power["point"]["system_address"] == 1


def test_gst_bcd_addresses_and_errors() -> None:
    codec = CODECS["gst-jbqb"]
    [frame] = codec.framer().feed(bytes.fromhex("AA 15 01 02 00 34") + bytes(18))
    assert isinstance(frame, DialectFrame)
    [reading] = codec.decode(frame, Context("p"))
    [obj] = reading.objects
    assert isinstance(obj, ComponentStatus) and obj.fire
    assert (obj.system_address, obj.component_address) == (1, 34 << 16 | 2)
    bad = DialectFrame(bytes.fromhex("AA 15 01 2F 00 34") + bytes(18))
    with pytest.raises(CodecError) as info:
        codec.decode(bad, Context("p"))
    assert info.value.reason == "address"


BASE = "name: x\nframing: {head: AA, length: 4}\nfields: {event: {offset: 1}}\n"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE.replace("name: x", "name: Bad Name") + "events: {1: fire}", "name"),
        (BASE.replace(", length: 4", "") + "events: {1: fire}", "framing"),
        (BASE + "events: {1: burning}", "events.1"),
        (BASE.replace("AA", "ZZ") + "events: {1: fire}", "framing.head"),
        (BASE + "events: {1: fire}\nchecksum: {kind: crc32}", "checksum.kind"),
        (BASE + "events: {1: fire}\nbaud: 9600", "baud"),
        (BASE + "events: {1: fire}\nmode: poll", "(file)"),  # poll mode without a poll frame
        (BASE + "events: {1: fire}\nline: {stopbits: 3}", "line"),
        (BASE + "events: {}", "events"),
        (BASE.replace("offset: 1", "offset: 4") + "events: {1: fire}", "(file)"),  # past the 4 bytes
        ("- just a list", "(file)"),
    ],
)
def test_bad_dialect_file_names_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_dialect(text, "site.yaml")
    keys = [p.key for p in info.value.problems]
    assert key in keys, keys
    assert all(p.where == "site.yaml" for p in info.value.problems)


def test_a_dialect_file_by_path_needs_no_packaging(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(MINIMAL)
    codec = discover().line_codec(str(path))
    assert codec.name == "tiny"
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\n")
    with pytest.raises(ConfigError):
        discover().line_codec(str(broken))


def test_dialect_dirs_load_files_and_name_the_broken_ones(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(MINIMAL)
    (tmp_path / "broken.yml").write_text("name: broken\nframing: {}\n")
    registry = discover(dialect_dirs=[tmp_path])
    assert registry.codecs["tiny"].source == str(tmp_path / "tiny.yaml")
    assert "framing" in registry.broken["broken"].reason
    assert "gst-jbqb" in registry.codecs  # the installed ones are still there


def test_checksum_catalogue_values() -> None:
    # the check values of the CRC catalogue (reveng) over "123456789"
    check = {
        "crc16_modbus": 0x4B37,
        "crc16_ccitt": 0x29B1,
        "crc16_xmodem": 0x31C3,
        "crc16_kermit": 0x2189,
        "crc16_x25": 0x906E,
        "sum8": 0xDD,
        "xor8": 0x31,
        "sum16": 0x1DD,
    }
    assert {name: f(b"123456789") for name, f in CHECKSUMS.items()} == check


def test_system_events_and_restore() -> None:
    codec = parse_dialect(MINIMAL)
    context = Context("p")
    [power] = codec.decode(DialectFrame(codec.build(0x10, PanelAddress(0, 0, 0))), context)
    assert power.type_flag == 1
    assert isinstance(power.objects[0], SystemStatus) and power.objects[0].status_flags == (
        "normal",
        "main_power_fault",
    )
    [restore] = codec.decode(DialectFrame(codec.build(0x03, PanelAddress(0, 4, 513))), context)
    obj = restore.objects[0]
    assert isinstance(obj, ComponentStatus) and obj.status_flags == ("normal",)
    assert obj.component_address == 513 << 16 | 4
    assert codec.decode(DialectFrame(codec.build(0x00)), context) == []  # a keep-alive
    assert codec.acknowledge(DialectFrame(codec.build(0x01))) == b"\x7e\x06"
    assert codec.poll() is None


def test_tail_framing_and_ascii_addresses() -> None:
    codec = parse_dialect(TAILED)
    frame = codec.build(0x46, PanelAddress(0, 12, 345))
    assert frame == b"F12345\r\n"
    items = codec.framer().feed(b"F12345\r\nT99x01\r\n" + b"y" * 40)
    first, second, overflow = items
    assert first == DialectFrame(frame)
    assert isinstance(second, DialectFrame)
    with pytest.raises(CodecError) as info:
        codec.decode(second, Context("p"))
    assert info.value.reason == "address"
    assert isinstance(overflow, CodecError) and overflow.reason == "length"


# --- properties ------------------------------------------------------------------------------


def _feed(codec: DeclarativeCodec, data: bytes, cuts: list[int]) -> list[DialectFrame | CodecError]:
    framer = codec.framer()
    out: list[DialectFrame | CodecError] = []
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        out += framer.feed(data[start:cut] if cut >= start else b"")
        start = max(start, cut)
        # what waits for more bytes is less than one frame, however the bytes came
        assert len(framer.buffer) <= codec.spec.framing.max_length
    return out


ALL = [*CODECS.values(), parse_dialect(MINIMAL), parse_dialect(TAILED)]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ALL), st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8))
def test_random_bytes_never_crash_and_the_buffer_stays_bounded(
    codec: DeclarativeCodec, data: bytes, cuts: list[int]
) -> None:
    for item in _feed(codec, data, cuts):
        if isinstance(item, DialectFrame):
            try:
                codec.decode(item, Context("p"))
            except CodecError as e:
                assert e.reason in ("unknown_event", "address", "length")
        else:
            assert isinstance(item, CodecError) and item.reason in ("delimiter", "length", "checksum")


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(ALL),
    st.data(),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 255),
    st.binary(max_size=30),
    st.lists(st.integers(0, 200), max_size=6),
)
def test_built_frames_frame_and_decode_back(
    codec: DeclarativeCodec,
    data: st.DataObject,
    controller: int,
    loop: int,
    point: int,
    noise: bytes,
    cuts: list[int],
) -> None:
    code = data.draw(st.sampled_from(sorted(codec.spec.events)))
    fields = codec.spec.fields
    address = PanelAddress(
        controller if fields.controller else 0, loop if fields.loop else 0, point if fields.point else 0
    )
    frame = codec.build(code, address)
    head, tail = codec.spec.framing.head, codec.spec.framing.tail
    # noise without a false start; with tail framing alone, noise is ended like a line
    noise = noise.replace(head, b"") if head else noise + tail
    items = _feed(codec, noise + frame + frame, cuts)
    frames = [i for i in items if isinstance(i, DialectFrame)]
    if head:
        assert frames == [DialectFrame(frame)] * 2
    else:
        assert frames[-2:] == [DialectFrame(frame)] * 2
    kind, status = MEANINGS[codec.spec.events[code]]
    readings = codec.decode(frames[-1], Context("p"))
    if kind == "none":
        assert readings == []
    elif kind == "system":
        [r] = readings
        assert isinstance(r.objects[0], SystemStatus) and r.objects[0].status == status
        assert r.objects[0].system_address == address.controller
    else:
        [r] = readings
        obj = r.objects[0]
        assert isinstance(obj, ComponentStatus) and obj.status == status
        assert obj.component_address == address.point << 16 | address.loop
        assert obj.system_address == address.controller


def test_damaged_frames_are_counted_then_the_next_is_found() -> None:
    codec = CODECS["forsafe"]
    good = codec.build(0x01, PanelAddress(1, 2, 3))
    for i in range(len(good)):
        damaged = bytearray(good)
        damaged[i] ^= 0x5A
        items = codec.framer().feed(bytes(damaged) + good)
        assert items[-1] == DialectFrame(good), i
        assert all(isinstance(x, CodecError) for x in items[:-1]), i
        assert items[:-1], i  # the damage is reported, never silent


def test_load_dialect_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_dialect(tmp_path / "nope.yaml")
    assert "cannot read" in str(info.value)
