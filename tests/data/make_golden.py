#!/usr/bin/env python3
"""Golden frames for the GB/T 26875.3-2011 codec, built by hand from the spec.

Every frame here is assembled with :mod:`struct` from the layouts in the
project spec (/work/shared/spec/gb26875-3.md, cited below as "§n"), and every
expected value is written out literally from the spec's tables. Nothing here
imports or mirrors firegate's own codec: the point is an independent oracle.

Two data files are written next to this script:

* ``gb26875_golden.json``: synthetic frames, one or more per command, type
  flag and field quirk.
* ``gb26875_vendor.json``: frames published by vendors and peer
  implementations (bytes copied from the cited file; expected fields derived
  here from the spec, never taken from the peer's code).

Each case is ``{"name", "spec", "direction", "hex", "expect"}`` (vendor cases
add ``source``). ``expect`` is a subset of the decoded-frame JSON
(the decoded-frame JSON contract); tests/codecs/test_golden.py checks only the keys
given. Two markers are understood by that matcher:
``{"$absent": true}`` (the key must not be present) and
``{"$present": true}`` (the key must be present, any value).

Run from the repository root::

    .venv/bin/python tests/data/make_golden.py
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
GOLDEN_PATH = HERE / "gb26875_golden.json"
VENDOR_PATH = HERE / "gb26875_vendor.json"

ABSENT: dict[str, bool] = {"$absent": True}
PRESENT: dict[str, bool] = {"$present": True}

# --------------------------------------------------------------------------
# Code tables, transcribed from the spec. Used for the command name and to
# cross-check the literal status_flags/operation_flags written in each case.
# --------------------------------------------------------------------------

# §1 Table 2
COMMAND_NAMES = {
    0: "reserved",
    1: "control",
    2: "send_data",
    3: "confirm",
    4: "request",
    5: "reply",
    6: "deny",
}

# §4.1 facility system status, bits 0..13 (14, 15 reserved)
SYSTEM_STATUS_BITS = [
    "normal",
    "fire",
    "fault",
    "disabled",
    "supervisory",
    "started",
    "feedback",
    "delay",
    "main_power_fault",
    "backup_power_fault",
    "bus_fault",
    "manual",
    "config_changed",
    "reset",
]
# §4.2 component status: bits 0..7 as §4.1, bit 8 power fault (9..15 reserved)
COMPONENT_STATUS_BITS = [*SYSTEM_STATUS_BITS[:8], "power_fault"]
# §4.4 UITD running status (bit 7 reserved)
UITD_STATUS_BITS = [
    "normal",
    "fire",
    "fault",
    "main_power_fault",
    "backup_power_fault",
    "center_link_fault",
    "monitor_line_fault",
]
# §4.3 operation flags (bit 7 reserved); type 24 differs only in bit 5
FACILITY_OPERATION_BITS = [
    "reset",
    "silence",
    "manual_alarm",
    "alarm_cleared",
    "self_test",
    "acknowledge",
    "test",
]
UITD_OPERATION_BITS = [*FACILITY_OPERATION_BITS[:5], "duty_check_answered", "test"]


def flag_names(value: int, names: list[str], width: int) -> list[str]:
    """Names of the set bits of ``value`` in bit order; reserved bits as ``bit<N>``."""
    return [(names[i] if i < len(names) else f"bit{i}") for i in range(width) if value >> i & 1]


# --------------------------------------------------------------------------
# Byte builders
# --------------------------------------------------------------------------


def addr6(n: int) -> bytes:
    """A 6-byte address, little-endian (§1)."""
    return struct.pack("<Q", n)[:6]


def addr_int(raw: bytes) -> int:
    """The integer a 6-byte little-endian address decodes to (§1)."""
    return struct.unpack("<Q", raw + b"\x00\x00")[0]


def tt(iso: str) -> bytes:
    """A 6-byte time tag (§5): second, minute, hour, day, month, year - 2000. Binary, not BCD."""
    d = datetime.fromisoformat(iso)
    return struct.pack("6B", d.second, d.minute, d.hour, d.day, d.month, d.year - 2000)


def gb(s: str) -> bytes:
    """Text in GB18030 (§3 "Text fields")."""
    return s.encode("gb18030")


def fixed31(raw: bytes) -> bytes:
    """A fixed 31-byte text field (types 2, 7), NUL-padded (§3 "Text fields")."""
    assert len(raw) <= 31, raw
    return raw + b"\x00" * (31 - len(raw))


def frame(
    *,
    serial: int,
    command: int,
    source: bytes,
    destination: bytes,
    data: bytes = b"",
    time: bytes,
    version: tuple[int, int] = (1, 1),
) -> bytes:
    """A whole frame (§1): '@@', 25-byte control unit, data, checksum, '##'."""
    control = struct.pack(
        "<HBB6s6s6sHB", serial, version[0], version[1], time, source, destination, len(data), command
    )
    assert len(control) == 25
    checksum = sum(control + data) % 256  # §1: sum of offsets 2 .. 26+L
    frame_bytes = b"@@" + control + data + struct.pack("B", checksum) + b"##"
    assert len(frame_bytes) == 30 + len(data)
    return frame_bytes


def du(type_flag: int, *objects: bytes, count: int | None = None) -> bytes:
    """An application data unit (§2): type flag, object count n, objects."""
    n = len(objects) if count is None else count
    return struct.pack("BB", type_flag, n) + b"".join(objects)


# Information objects, one builder per layout in §3. Multi-byte integers are LE.
def o_system_status(st: int, sa: int, status: int, time: bytes) -> bytes:  # type 1: 4 + T
    return struct.pack("<BBH", st, sa, status) + time


def o_component_status(st: int, sa: int, ct: int, ca: int, status: int, desc31: bytes, time: bytes) -> bytes:
    assert len(desc31) == 31  # type 2: 40 + T
    return struct.pack("<BBBIH", st, sa, ct, ca, status) + desc31 + time


def o_analog(st: int, sa: int, ct: int, ca: int, analog_type: int, value: int, time: bytes) -> bytes:
    return struct.pack("<BBBIBh", st, sa, ct, ca, analog_type, value) + time  # type 3: 10 + T, int16


def o_operation(st: int, sa: int, flags: int, operator: int, time: bytes) -> bytes:  # type 4: 4 + T
    return struct.pack("<BBBB", st, sa, flags, operator) + time


def o_version(st: int, sa: int, major: int, minor: int) -> bytes:  # type 5: 4
    return struct.pack("<BBBB", st, sa, major, minor)


def o_system_config(st: int, sa: int, text: bytes) -> bytes:  # type 6: 3 + L
    return struct.pack("<BBB", st, sa, len(text)) + text


def o_component_config(st: int, sa: int, ct: int, ca: int, desc31: bytes) -> bytes:  # type 7: 38
    assert len(desc31) == 31
    return struct.pack("<BBBI", st, sa, ct, ca) + desc31


def o_system_time(st: int, sa: int, time: bytes) -> bytes:  # type 8: 8
    return struct.pack("<BB", st, sa) + time


def o_uitd_status(status: int, time: bytes) -> bytes:  # type 21: 1 + T
    return struct.pack("<B", status) + time


def o_uitd_operation(flags: int, operator: int, time: bytes) -> bytes:  # type 24: 2 + T
    return struct.pack("<BB", flags, operator) + time


def o_uitd_version(major: int, minor: int) -> bytes:  # type 25: 2
    return struct.pack("<BB", major, minor)


def o_uitd_config(text: bytes) -> bytes:  # type 26: 1 + L
    return struct.pack("<B", len(text)) + text


def o_sys(st: int, sa: int) -> bytes:  # types 61, 65, 66, 68: 2
    return struct.pack("<BB", st, sa)


def o_sys_comp(st: int, sa: int, ca: int) -> bytes:  # types 62, 63, 67: 6 (no component-type byte)
    return struct.pack("<BBI", st, sa, ca)


def o_read_records(st: int, sa: int, count: int, start: bytes) -> bytes:  # type 64: 9
    return struct.pack("<BBB", st, sa, count) + start


def o_reserved() -> bytes:  # types 81, 85, 86, 88, 89: 1 byte reserved = 0
    return b"\x00"


# --------------------------------------------------------------------------
# Expected-value helpers
# --------------------------------------------------------------------------

UITD = 74565  # the design doc's example device (fire.alarm.74565): bytes 45 23 01 00 00 00
CENTER = 1000000  # bytes 40 42 0f 00 00 00 (contains 0x40)
T0 = "2024-05-17T08:30:15"  # default header time
TA = "2024-05-17T08:30:10"  # default object time


def command_name(command: int) -> str:
    if command >= 128:
        return "user_defined"
    return COMMAND_NAMES.get(command, "reserved")


def header(
    serial: int,
    command: int,
    source: int,
    destination: int,
    length: int,
    time: str | None = T0,
    version: tuple[int, int] = (1, 1),
) -> dict[str, Any]:
    """The frame-level keys of the decoded-frame JSON."""
    return {
        "serial": serial,
        "version": list(version),
        "time": time,
        "source": source,
        "destination": destination,
        "command": command,
        "command_name": command_name(command),
        "checksum_ok": True,
        "length": length,
    }


Case = dict[str, Any]
GOLDEN: list[Callable[[], Case]] = []


def golden(fn: Callable[[], Case]) -> Callable[[], Case]:
    """Register a golden case; its name is the function name."""
    GOLDEN.append(fn)
    return fn


def case(name: str, spec: str, direction: str, raw: bytes, expect: dict[str, Any]) -> Case:
    assert direction in ("up", "down")
    return {"name": name, "spec": spec, "direction": direction, "hex": raw.hex(), "expect": expect}


def up(
    name: str,
    spec: str,
    *,
    serial: int,
    command: int,
    data: bytes = b"",
    expect: dict[str, Any],
    time: str = T0,
) -> Case:
    """A UITD -> center frame with the default addresses and header time."""
    raw = frame(
        serial=serial,
        command=command,
        source=addr6(UITD),
        destination=addr6(CENTER),
        data=data,
        time=tt(time),
    )
    return case(name, spec, "up", raw, {**header(serial, command, UITD, CENTER, len(data), time), **expect})


def down(
    name: str,
    spec: str,
    *,
    serial: int,
    command: int,
    data: bytes = b"",
    expect: dict[str, Any],
    time: str = T0,
) -> Case:
    """A center -> UITD frame with the default addresses and header time."""
    raw = frame(
        serial=serial,
        command=command,
        source=addr6(CENTER),
        destination=addr6(UITD),
        data=data,
        time=tt(time),
    )
    return case(name, spec, "down", raw, {**header(serial, command, CENTER, UITD, len(data), time), **expect})


# ==========================================================================
# Golden cases
# ==========================================================================

# ---- commands with an empty data unit (§1 Table 2, §6, §8) ---------------


@golden
def heartbeat_empty() -> Case:
    # §8 heartbeat: UITD sends cmd 2 with L = 0.
    return up("heartbeat_empty", "§8 heartbeat", serial=1, command=2, expect={})


@golden
def heartbeat_one_byte_0x16() -> Case:
    # §8 heartbeat variant: cmd 2, L = 1, payload 0x16 (DG "handshake"). type_name is not
    # asserted: Table 3 makes 22 "reserved", but the contract does not say whether the
    # heartbeat variant keeps that name.
    return up(
        "heartbeat_one_byte_0x16",
        "§8 heartbeat variant",
        serial=2,
        command=2,
        data=b"\x16",
        expect={"type": 22, "objects": [], "heartbeat": True},
    )


@golden
def confirm_from_center() -> Case:
    # §6: confirm, same serial, addresses swapped, L = 0.
    return down("confirm_from_center", "§6 confirm", serial=1, command=3, expect={})


@golden
def deny_from_center() -> Case:
    # §6: deny of an upload, L = 0.
    return down("deny_from_center", "§6 deny", serial=2, command=6, expect={})


@golden
def confirm_from_uitd() -> Case:
    # §6: the UITD confirms a control command (cmd 1), L = 0.
    return up("confirm_from_uitd", "§6 confirm", serial=7, command=3, expect={})


@golden
def deny_from_uitd() -> Case:
    # §6 / §6.4.2: the UITD denies a bad request, L = 0.
    return up("deny_from_uitd", "§6 deny", serial=8, command=6, expect={})


@golden
def user_defined_command_0x80() -> Case:
    # §1 Table 2: commands 128-255 are user-defined (not "unrecognised").
    return up("user_defined_command_0x80", "§1 Table 2", serial=9, command=0x80, expect={})


# ---- upstream types, cmd 2 (§3 Upstream) ---------------------------------


@golden
def t1_system_status_one() -> Case:
    # §3 type 1, §4.1: status 0x0003 = normal + fire.
    data = du(1, o_system_status(1, 1, 0x0003, tt(TA)))
    return up(
        "t1_system_status_one",
        "§3 type 1, §4.1",
        serial=10,
        command=2,
        data=data,
        expect={
            "type": 1,
            "type_name": "facility_system_status",
            "objects": [
                {
                    "system_type": 1,
                    "system_address": 1,
                    "status": 3,
                    "status_flags": ["normal", "fire"],
                    "time": TA,
                }
            ],
        },
    )


@golden
def t1_system_status_many() -> Case:
    # §3 type 1 (n <= 102), §4.1: all 14 named bits; reserved bits 14/15 show as bit14/bit15.
    data = du(
        1,
        o_system_status(1, 1, 0x0001, tt("2024-05-17T08:30:01")),
        o_system_status(10, 2, 0x3FFF, tt("2024-05-17T08:30:02")),
        o_system_status(11, 3, 0xC002, tt("2024-05-17T08:30:03")),
    )
    return up(
        "t1_system_status_many",
        "§3 type 1, §4.1",
        serial=11,
        command=2,
        data=data,
        expect={
            "type": 1,
            "type_name": "facility_system_status",
            "objects": [
                {
                    "system_type": 1,
                    "system_address": 1,
                    "status": 1,
                    "status_flags": ["normal"],
                    "time": "2024-05-17T08:30:01",
                },
                {
                    "system_type": 10,
                    "system_address": 2,
                    "status": 0x3FFF,
                    "status_flags": [
                        "normal",
                        "fire",
                        "fault",
                        "disabled",
                        "supervisory",
                        "started",
                        "feedback",
                        "delay",
                        "main_power_fault",
                        "backup_power_fault",
                        "bus_fault",
                        "manual",
                        "config_changed",
                        "reset",
                    ],
                    "time": "2024-05-17T08:30:02",
                },
                {
                    "system_type": 11,
                    "system_address": 3,
                    "status": 0xC002,
                    "status_flags": ["fire", "bit14", "bit15"],
                    "time": "2024-05-17T08:30:03",
                },
            ],
        },
    )


@golden
def t1_fire_with_bit0_clear() -> Case:
    # §4.1 / D4: bit 0 = 0 (test state) with the fire bit set; still a fire.
    data = du(1, o_system_status(1, 1, 0x0002, tt(TA)))
    return up(
        "t1_fire_with_bit0_clear",
        "§4.1, D4",
        serial=12,
        command=2,
        data=data,
        expect={
            "type": 1,
            "objects": [
                {"system_type": 1, "system_address": 1, "status": 2, "status_flags": ["fire"], "time": TA}
            ],
        },
    )


@golden
def t1_zero_objects() -> Case:
    # §3 type 1: n <= 102, so n = 0 is a valid (empty) data unit.
    data = du(1)
    return up(
        "t1_zero_objects",
        "§2, §3 type 1",
        serial=13,
        command=2,
        data=data,
        expect={
            "type": 1,
            "type_name": "facility_system_status",
            "objects": [],
            "data_unit_error": ABSENT,
        },
    )


@golden
def t2_component_status_one() -> Case:
    # §3 type 2, §4.2: smoke detector (40) in fire, NUL-padded GB18030 description.
    desc = "3楼走廊感烟探测器"
    data = du(2, o_component_status(1, 1, 40, 0x00020001, 0x0003, fixed31(gb(desc)), tt(TA)))
    return up(
        "t2_component_status_one",
        "§3 type 2, §4.2",
        serial=14,
        command=2,
        data=data,
        expect={
            "type": 2,
            "type_name": "facility_component_status",
            "objects": [
                {
                    "system_type": 1,
                    "system_address": 1,
                    "component_type": 40,
                    "component_address": 0x00020001,
                    "status": 3,
                    "status_flags": ["normal", "fire"],
                    "description": desc,
                    "time": TA,
                }
            ],
        },
    )


@golden
def t2_component_status_many() -> Case:
    # §3 type 2 (n <= 22), §4.2: power fault is bit 8; bit 9 is reserved for components.
    data = du(
        2,
        o_component_status(1, 1, 23, 0x0000000A, 0x0002, fixed31(gb("1层手报")), tt("2024-05-17T08:29:01")),
        o_component_status(
            1, 1, 42, 0x01020304, 0x0105, fixed31(gb("2层光电感烟")), tt("2024-05-17T08:29:02")
        ),
        o_component_status(
            12, 5, 96, 0xFFFFFFFF, 0x0200, fixed31(gb("喷淋水流指示器")), tt("2024-05-17T08:29:03")
        ),
    )
    return up(
        "t2_component_status_many",
        "§3 type 2, §4.2",
        serial=15,
        command=2,
        data=data,
        expect={
            "type": 2,
            "objects": [
                {
                    "system_type": 1,
                    "system_address": 1,
                    "component_type": 23,
                    "component_address": 10,
                    "status": 2,
                    "status_flags": ["fire"],
                    "description": "1层手报",
                    "time": "2024-05-17T08:29:01",
                },
                {
                    "system_type": 1,
                    "system_address": 1,
                    "component_type": 42,
                    "component_address": 0x01020304,
                    "status": 0x0105,
                    "status_flags": ["normal", "fault", "power_fault"],
                    "description": "2层光电感烟",
                    "time": "2024-05-17T08:29:02",
                },
                {
                    "system_type": 12,
                    "system_address": 5,
                    "component_type": 96,
                    "component_address": 0xFFFFFFFF,
                    "status": 0x0200,
                    "status_flags": ["bit9"],
                    "description": "喷淋水流指示器",
                    "time": "2024-05-17T08:29:03",
                },
            ],
        },
    )


@golden
def t2_description_spaces_then_nul() -> Case:
    # §3 "Text fields": spaces followed by one NUL (as VEN example 1) -> trailing spaces stripped.
    raw_desc = gb("A区1层") + b" " * 24 + b"\x00"
    assert len(raw_desc) == 31
    data = du(2, o_component_status(1, 1, 40, 0x00020001, 0x0003, raw_desc, tt(TA)))
    return up(
        "t2_description_spaces_then_nul",
        "§3 Text fields",
        serial=16,
        command=2,
        data=data,
        expect={
            "type": 2,
            "objects": [{"component_type": 40, "description": "A区1层", "time": TA}],
        },
    )


@golden
def t2_description_nul_then_garbage() -> Case:
    # §3 "Text fields": NUL-terminated, then leftover bytes (DG capture) -> cut at the first NUL.
    raw_desc = gb("1号接口板1回路1号") + b"\x00" + gb("号主机") + bytes.fromhex("f898cfa0") + b"\x00" * 3
    assert len(raw_desc) == 31
    data = du(2, o_component_status(1, 1, 42, 0x00010001, 0x0002, raw_desc, tt(TA)))
    return up(
        "t2_description_nul_then_garbage",
        "§3 Text fields",
        serial=17,
        command=2,
        data=data,
        expect={
            "type": 2,
            "objects": [
                {
                    "component_type": 42,
                    "component_address": 0x00010001,
                    "status": 2,
                    "status_flags": ["fire"],
                    "description": "1号接口板1回路1号",
                    "time": TA,
                }
            ],
        },
    )


@golden
def t2_max_objects_22() -> Case:
    # §3 type 2: n <= 22 (22 x 46 + 2 = 1014 <= 1024). Largest standard data unit for type 2.
    objects = [
        o_component_status(
            1, 1, 40, 1000 + i, 0x0001, fixed31(gb(f"点位{i:02d}")), tt(f"2024-05-17T08:{i:02d}:00")
        )
        for i in range(22)
    ]
    data = du(2, *objects)
    assert len(data) == 1014
    return up(
        "t2_max_objects_22",
        "§1 L <= 1024, §3 type 2",
        serial=18,
        command=2,
        data=data,
        expect={
            "type": 2,
            "objects": [
                {
                    "component_address": 1000 + i,
                    "status_flags": ["normal"],
                    "description": f"点位{i:02d}",
                    "time": f"2024-05-17T08:{i:02d}:00",
                }
                for i in range(22)
            ],
        },
    )


@golden
def t2_truncated_data_unit() -> Case:
    # §1/§2: n says 2 objects but only one follows. The frame parses; the data unit does not.
    data = du(2, o_component_status(1, 1, 40, 1, 0x0003, fixed31(gb("残缺")), tt(TA)), count=2)
    return up(
        "t2_truncated_data_unit",
        "§2 (bad data unit)",
        serial=19,
        command=2,
        data=data,
        expect={
            "type": 2,
            "data_unit_error": PRESENT,
            "objects": ABSENT,
        },
    )


@golden
def t3_analog_one() -> Case:
    # §3 type 3, §4.5: temperature (3), raw 256 x 0.1 = 25.6 degC.
    data = du(3, o_analog(1, 1, 31, 0x00000101, 3, 256, tt(TA)))
    return up(
        "t3_analog_one",
        "§3 type 3, §4.5",
        serial=20,
        command=2,
        data=data,
        expect={
            "type": 3,
            "type_name": "facility_analog_value",
            "objects": [
                {
                    "system_type": 1,
                    "system_address": 1,
                    "component_type": 31,
                    "component_address": 0x00000101,
                    "analog_type": 3,
                    "value": 256,
                    "scaled_value": 25.6,
                    "unit": "°C",
                    "time": TA,
                }
            ],
        },
    )


@golden
def t3_analog_negative() -> Case:
    # §3 type 3: the value is int16 LE. Raw -155 (bytes 65 ff) x 0.1 = -15.5 degC.
    data = du(3, o_analog(1, 1, 31, 0x00000102, 3, -155, tt(TA)))
    assert data[-8:-6] == b"\x65\xff"
    return up(
        "t3_analog_negative",
        "§3 type 3, §4.5",
        serial=21,
        command=2,
        data=data,
        expect={
            "type": 3,
            "objects": [{"analog_type": 3, "value": -155, "scaled_value": -15.5, "unit": "°C", "time": TA}],
        },
    )


@golden
def t3_analog_every_type() -> Case:
    # §4.5 Table 6: every analog type, minimum unit and unit; no scaled value for unused (0),
    # reserved (13-127) or user-defined (128-255) types. Also the int16 extremes.
    rows = [
        # (analog type, raw value, expected scaled value or None, expected unit or None)
        (0, 0, None, None),
        (1, 7, 7, "件"),
        (2, 1234, 12.34, "m"),
        (3, 3200, 320.0, "°C"),
        (4, 16, 1.6, "MPa"),
        (5, 1013, 101.3, "kPa"),
        (6, 250, 25.0, "%LEL"),
        (7, 30, 30, "s"),
        (8, 2200, 220.0, "V"),
        (9, 15, 1.5, "A"),
        (10, 100, 10.0, "L/s"),
        (11, 50, 5.0, "m³/min"),
        (12, 8, 8, "m/s"),
        (13, 5, None, None),
        (200, -1, None, None),
        (3, -32768, -3276.8, "°C"),
        (3, 32767, 3276.7, "°C"),
    ]
    data = du(3, *[o_analog(1, 1, 31, 0x200 + i, a, v, tt(TA)) for i, (a, v, _, _) in enumerate(rows)])
    objects = []
    for i, (a, v, scaled, unit) in enumerate(rows):
        obj: dict[str, Any] = {"component_address": 0x200 + i, "analog_type": a, "value": v}
        obj["scaled_value"] = ABSENT if scaled is None else scaled
        if unit is not None:
            obj["unit"] = unit
        objects.append(obj)
    return up(
        "t3_analog_every_type",
        "§4.5 Table 6",
        serial=22,
        command=2,
        data=data,
        expect={"type": 3, "objects": objects},
    )


@golden
def t4_operation() -> Case:
    # §3 type 4, §4.3 facility column; bit 7 is reserved -> bit7.
    data = du(
        4,
        o_operation(1, 1, 0x01, 5, tt("2024-05-17T08:20:00")),
        o_operation(1, 1, 0x7F, 6, tt("2024-05-17T08:21:00")),
        o_operation(10, 2, 0x88, 0, tt("2024-05-17T08:22:00")),
    )
    return up(
        "t4_operation",
        "§3 type 4, §4.3",
        serial=23,
        command=2,
        data=data,
        expect={
            "type": 4,
            "type_name": "facility_operation",
            "objects": [
                {
                    "system_type": 1,
                    "system_address": 1,
                    "operation": 1,
                    "operation_flags": ["reset"],
                    "operator_id": 5,
                    "time": "2024-05-17T08:20:00",
                },
                {
                    "system_type": 1,
                    "system_address": 1,
                    "operation": 0x7F,
                    "operation_flags": [
                        "reset",
                        "silence",
                        "manual_alarm",
                        "alarm_cleared",
                        "self_test",
                        "acknowledge",
                        "test",
                    ],
                    "operator_id": 6,
                    "time": "2024-05-17T08:21:00",
                },
                {
                    "system_type": 10,
                    "system_address": 2,
                    "operation": 0x88,
                    "operation_flags": ["alarm_cleared", "bit7"],
                    "operator_id": 0,
                    "time": "2024-05-17T08:22:00",
                },
            ],
        },
    )


@golden
def t5_software_version() -> Case:
    # §3 type 5: n = 1, no time tag.
    data = du(5, o_version(1, 1, 2, 13))
    return up(
        "t5_software_version",
        "§3 type 5",
        serial=24,
        command=2,
        data=data,
        expect={
            "type": 5,
            "type_name": "facility_software_version",
            "objects": [{"system_type": 1, "system_address": 1, "major": 2, "minor": 13}],
        },
    )


@golden
def t6_system_config_unequal_lengths() -> Case:
    # §3 type 6 (n <= 3): objects of 3 + L bytes with different L; parse sequentially.
    text1 = gb("JB-QB-5Y 火灾报警控制器")
    data = du(6, o_system_config(1, 1, text1), o_system_config(10, 2, b"ABC  "), o_system_config(13, 3, b""))
    return up(
        "t6_system_config_unequal_lengths",
        "§3 type 6, objects parsed in sequence",
        serial=25,
        command=2,
        data=data,
        expect={
            "type": 6,
            "type_name": "facility_system_config",
            "objects": [
                {"system_type": 1, "system_address": 1, "description": "JB-QB-5Y 火灾报警控制器"},
                {"system_type": 10, "system_address": 2, "description": "ABC"},
                {"system_type": 13, "system_address": 3, "description": ""},
            ],
        },
    )


@golden
def t7_component_config() -> Case:
    # §3 type 7: 38-byte objects, no time tag. A 4-byte GB18030 character (U+1F525 = 94 39 e6 37),
    # and an invalid byte (0xff) that decodes to U+FFFD with replacement.
    d1 = gb("1层手报🔥")
    assert d1.endswith(bytes.fromhex("9439e637"))
    d2 = b"AB\xff"
    data = du(
        7,
        o_component_config(1, 1, 23, 0x0000000A, fixed31(d1)),
        o_component_config(1, 1, 84, 0x00010002, fixed31(d2)),
    )
    return up(
        "t7_component_config",
        "§3 type 7, Text fields",
        serial=26,
        command=2,
        data=data,
        expect={
            "type": 7,
            "type_name": "facility_component_config",
            "objects": [
                {
                    "system_type": 1,
                    "system_address": 1,
                    "component_type": 23,
                    "component_address": 10,
                    "description": "1层手报🔥",
                },
                {
                    "system_type": 1,
                    "system_address": 1,
                    "component_type": 84,
                    "component_address": 0x00010002,
                    "description": "AB\ufffd",
                },
            ],
        },
    )


@golden
def t8_system_time() -> Case:
    # §3 type 8: n = 1, the facility's clock.
    data = du(8, o_system_time(1, 1, tt("2024-05-17T08:29:59")))
    return up(
        "t8_system_time",
        "§3 type 8",
        serial=27,
        command=2,
        data=data,
        expect={
            "type": 8,
            "type_name": "facility_system_time",
            "objects": [{"system_type": 1, "system_address": 1, "time": "2024-05-17T08:29:59"}],
        },
    )


@golden
def t21_uitd_status_normal() -> Case:
    # §3 type 21, §4.4.
    data = du(21, o_uitd_status(0x01, tt(TA)))
    return up(
        "t21_uitd_status_normal",
        "§3 type 21, §4.4",
        serial=28,
        command=2,
        data=data,
        expect={
            "type": 21,
            "type_name": "uitd_status",
            "objects": [{"status": 1, "status_flags": ["normal"], "time": TA}],
        },
    )


@golden
def t21_uitd_status_every_bit() -> Case:
    # §4.4: all seven named bits, plus reserved bit 7 -> bit7.
    data = du(21, o_uitd_status(0xFF, tt(TA)))
    return up(
        "t21_uitd_status_every_bit",
        "§4.4",
        serial=29,
        command=2,
        data=data,
        expect={
            "type": 21,
            "objects": [
                {
                    "status": 0xFF,
                    "status_flags": [
                        "normal",
                        "fire",
                        "fault",
                        "main_power_fault",
                        "backup_power_fault",
                        "center_link_fault",
                        "monitor_line_fault",
                        "bit7",
                    ],
                    "time": TA,
                }
            ],
        },
    )


@golden
def t24_uitd_operation() -> Case:
    # §3 type 24, §4.3 UITD column: bit 5 is the duty-check (patrol) answer.
    data = du(
        24,
        o_uitd_operation(0x20, 1, tt("2024-05-17T08:25:00")),
        o_uitd_operation(0x5F, 2, tt("2024-05-17T08:26:00")),
    )
    return up(
        "t24_uitd_operation",
        "§3 type 24, §4.3",
        serial=30,
        command=2,
        data=data,
        expect={
            "type": 24,
            "type_name": "uitd_operation",
            "objects": [
                {
                    "operation": 0x20,
                    "operation_flags": ["duty_check_answered"],
                    "operator_id": 1,
                    "time": "2024-05-17T08:25:00",
                },
                {
                    "operation": 0x5F,
                    "operation_flags": [
                        "reset",
                        "silence",
                        "manual_alarm",
                        "alarm_cleared",
                        "self_test",
                        "test",
                    ],
                    "operator_id": 2,
                    "time": "2024-05-17T08:26:00",
                },
            ],
        },
    )


@golden
def t25_uitd_version() -> Case:
    # §3 type 25: n = 1, 2 bytes, no time tag.
    data = du(25, o_uitd_version(1, 2))
    return up(
        "t25_uitd_version",
        "§3 type 25",
        serial=31,
        command=2,
        data=data,
        expect={
            "type": 25,
            "type_name": "uitd_software_version",
            "objects": [{"major": 1, "minor": 2}],
        },
    )


@golden
def t25_vendor_time_appended() -> Case:
    # vendor time tags + §2 inference: a peer appends a 6-byte time tag to type 25. Remaining bytes
    # 8 = n x (2 + 6), so length arithmetic still decodes the object.
    data = du(25, o_uitd_version(1, 2) + tt(TA))
    assert len(data) == 10
    spec = "§2 length arithmetic, vendor time tags"
    return up(
        "t25_vendor_time_appended",
        spec,
        serial=32,
        command=2,
        data=data,
        expect={
            "type": 25,
            "objects": [{"major": 1, "minor": 2}],
            "data_unit_error": ABSENT,
        },
    )


@golden
def t26_uitd_config() -> Case:
    # §3 type 26: 1 + L bytes, GB18030.
    text = "UITD-7 A座消控室"
    data = du(26, o_uitd_config(gb(text)))
    return up(
        "t26_uitd_config",
        "§3 type 26",
        serial=33,
        command=2,
        data=data,
        expect={
            "type": 26,
            "type_name": "uitd_config",
            "objects": [{"description": text}],
        },
    )


@golden
def t26_uitd_config_nul_padded() -> Case:
    # §3 "Text fields": L is authoritative and the text itself may be NUL-padded (SF: L = 30).
    raw = gb("用户传输装置V2")
    raw = raw + b"\x00" * (30 - len(raw))
    data = du(26, o_uitd_config(raw))
    assert data[2] == 30
    return up(
        "t26_uitd_config_nul_padded",
        "§3 Text fields",
        serial=34,
        command=2,
        data=data,
        expect={
            "type": 26,
            "objects": [{"description": "用户传输装置V2"}],
        },
    )


@golden
def t28_uitd_system_time() -> Case:
    # §3 type 28: n = 1, the UITD's clock (6 bytes).
    data = du(28, tt("2024-05-17T08:30:14"))
    return up(
        "t28_uitd_system_time",
        "§3 type 28",
        serial=35,
        command=2,
        data=data,
        expect={
            "type": 28,
            "type_name": "uitd_system_time",
            "objects": [{"time": "2024-05-17T08:30:14"}],
        },
    )


# ---- downstream reads, cmd 4 (§3 Downstream) -----------------------------


@golden
def t61_read_system_status() -> Case:
    data = du(61, o_sys(1, 1), o_sys(10, 2))  # §3 type 61: n <= 102, 2 bytes each
    return down(
        "t61_read_system_status",
        "§3 type 61",
        serial=100,
        command=4,
        data=data,
        expect={
            "type": 61,
            "type_name": "read_facility_system_status",
            "objects": [{"system_type": 1, "system_address": 1}, {"system_type": 10, "system_address": 2}],
        },
    )


@golden
def t62_read_component_status() -> Case:
    data = du(62, o_sys_comp(1, 1, 0x00020001), o_sys_comp(12, 5, 0xFFFFFFFF))  # §3 type 62
    return down(
        "t62_read_component_status",
        "§3 type 62, no component-type byte",
        serial=101,
        command=4,
        data=data,
        expect={
            "type": 62,
            "type_name": "read_facility_component_status",
            "objects": [
                {"system_type": 1, "system_address": 1, "component_address": 0x00020001},
                {"system_type": 12, "system_address": 5, "component_address": 0xFFFFFFFF},
            ],
        },
    )


@golden
def t63_read_analog_value() -> Case:
    data = du(63, o_sys_comp(1, 1, 0x00000101))  # §3 type 63, no component-type byte
    return down(
        "t63_read_analog_value",
        "§3 type 63, no component-type byte",
        serial=102,
        command=4,
        data=data,
        expect={
            "type": 63,
            "type_name": "read_facility_analog_value",
            "objects": [{"system_type": 1, "system_address": 1, "component_address": 0x00000101}],
        },
    )


@golden
def t64_read_operation_records() -> Case:
    data = du(64, o_read_records(1, 1, 10, tt("2024-05-01T00:00:00")))  # §3 type 64
    return down(
        "t64_read_operation_records",
        "§3 type 64",
        serial=103,
        command=4,
        data=data,
        expect={
            "type": 64,
            "type_name": "read_facility_operation_records",
            "objects": [
                {
                    "system_type": 1,
                    "system_address": 1,
                    "record_count": 10,
                    "start_time": "2024-05-01T00:00:00",
                }
            ],
        },
    )


@golden
def t65_read_software_version() -> Case:
    data = du(65, o_sys(1, 1))  # §3 type 65
    return down(
        "t65_read_software_version",
        "§3 type 65",
        serial=104,
        command=4,
        data=data,
        expect={
            "type": 65,
            "type_name": "read_facility_software_version",
            "objects": [{"system_type": 1, "system_address": 1}],
        },
    )


@golden
def t66_read_system_config() -> Case:
    data = du(66, o_sys(1, 1), o_sys(10, 2), o_sys(13, 3))  # §3 type 66: n <= 3
    return down(
        "t66_read_system_config",
        "§3 type 66",
        serial=105,
        command=4,
        data=data,
        expect={
            "type": 66,
            "type_name": "read_facility_system_config",
            "objects": [
                {"system_type": 1, "system_address": 1},
                {"system_type": 10, "system_address": 2},
                {"system_type": 13, "system_address": 3},
            ],
        },
    )


@golden
def t67_read_component_config() -> Case:
    data = du(67, o_sys_comp(1, 1, 0x0000000A))  # §3 type 67, no component-type byte
    return down(
        "t67_read_component_config",
        "§3 type 67, no component-type byte",
        serial=106,
        command=4,
        data=data,
        expect={
            "type": 67,
            "type_name": "read_facility_component_config",
            "objects": [{"system_type": 1, "system_address": 1, "component_address": 10}],
        },
    )


@golden
def t68_read_system_time() -> Case:
    data = du(68, o_sys(1, 1))  # §3 type 68
    return down(
        "t68_read_system_time",
        "§3 type 68",
        serial=107,
        command=4,
        data=data,
        expect={
            "type": 68,
            "type_name": "read_facility_system_time",
            "objects": [{"system_type": 1, "system_address": 1}],
        },
    )


@golden
def t81_read_uitd_status() -> Case:
    data = du(81, o_reserved())  # §3 type 81: reserved = 0 (VEN example 6)
    return down(
        "t81_read_uitd_status",
        "§3 type 81",
        serial=108,
        command=4,
        data=data,
        expect={
            "type": 81,
            "type_name": "read_uitd_status",
            "objects": [{"reserved": 0}],
        },
    )


@golden
def t84_read_uitd_operation_records() -> Case:
    data = du(84, struct.pack("<B", 20) + tt("2024-05-16T00:00:00"))  # §3 type 84: count + start time
    return down(
        "t84_read_uitd_operation_records",
        "§3 type 84",
        serial=109,
        command=4,
        data=data,
        expect={
            "type": 84,
            "type_name": "read_uitd_operation_records",
            "objects": [{"record_count": 20, "start_time": "2024-05-16T00:00:00"}],
        },
    )


@golden
def t85_read_uitd_software_version() -> Case:
    data = du(85, o_reserved())  # §3 type 85
    return down(
        "t85_read_uitd_software_version",
        "§3 type 85",
        serial=110,
        command=4,
        data=data,
        expect={
            "type": 85,
            "type_name": "read_uitd_software_version",
            "objects": [{"reserved": 0}],
        },
    )


@golden
def t86_read_uitd_config() -> Case:
    data = du(86, o_reserved())  # §3 type 86
    return down(
        "t86_read_uitd_config",
        "§3 type 86",
        serial=111,
        command=4,
        data=data,
        expect={
            "type": 86,
            "type_name": "read_uitd_config",
            "objects": [{"reserved": 0}],
        },
    )


@golden
def t88_read_uitd_system_time() -> Case:
    data = du(88, o_reserved())  # §3 type 88
    return down(
        "t88_read_uitd_system_time",
        "§3 type 88",
        serial=112,
        command=4,
        data=data,
        expect={
            "type": 88,
            "type_name": "read_uitd_system_time",
            "objects": [{"reserved": 0}],
        },
    )


# ---- replies, cmd 5 (§3 "The reply (cmd 5) to a read carries the matching upload type") ----


@golden
def reply_t1_to_t61() -> Case:
    data = du(1, o_system_status(1, 1, 0x0001, tt(TA)), o_system_status(10, 2, 0x0004, tt(TA)))
    return up(
        "reply_t1_to_t61",
        "§3 61->1",
        serial=100,
        command=5,
        data=data,
        expect={
            "type": 1,
            "type_name": "facility_system_status",
            "objects": [
                {"system_type": 1, "system_address": 1, "status": 1, "status_flags": ["normal"]},
                {"system_type": 10, "system_address": 2, "status": 4, "status_flags": ["fault"]},
            ],
        },
    )


@golden
def reply_t2_to_t62() -> Case:
    data = du(2, o_component_status(1, 1, 40, 0x00020001, 0x0009, fixed31(gb("3楼走廊感烟探测器")), tt(TA)))
    return up(
        "reply_t2_to_t62",
        "§3 62->2",
        serial=101,
        command=5,
        data=data,
        expect={
            "type": 2,
            "type_name": "facility_component_status",
            "objects": [
                {
                    "component_address": 0x00020001,
                    "status": 9,
                    "status_flags": ["normal", "disabled"],
                    "description": "3楼走廊感烟探测器",
                    "time": TA,
                }
            ],
        },
    )


@golden
def reply_t3_to_t63() -> Case:
    data = du(3, o_analog(1, 1, 31, 0x00000101, 8, 2305, tt(TA)))
    return up(
        "reply_t3_to_t63",
        "§3 63->3, §4.5",
        serial=102,
        command=5,
        data=data,
        expect={
            "type": 3,
            "objects": [
                {
                    "component_address": 0x00000101,
                    "analog_type": 8,
                    "value": 2305,
                    "scaled_value": 230.5,
                    "unit": "V",
                    "time": TA,
                }
            ],
        },
    )


@golden
def reply_t4_to_t64() -> Case:
    data = du(4, o_operation(1, 1, 0x02, 3, tt("2024-05-01T10:00:00")))
    return up(
        "reply_t4_to_t64",
        "§3 64->4",
        serial=103,
        command=5,
        data=data,
        expect={
            "type": 4,
            "objects": [
                {
                    "operation": 2,
                    "operation_flags": ["silence"],
                    "operator_id": 3,
                    "time": "2024-05-01T10:00:00",
                }
            ],
        },
    )


@golden
def reply_t21_to_t81() -> Case:
    data = du(21, o_uitd_status(0x09, tt(TA)))
    return up(
        "reply_t21_to_t81",
        "§3 81->21, §4.4",
        serial=108,
        command=5,
        data=data,
        expect={
            "type": 21,
            "type_name": "uitd_status",
            "objects": [{"status": 9, "status_flags": ["normal", "main_power_fault"], "time": TA}],
        },
    )


@golden
def reply_t24_to_t84() -> Case:
    data = du(24, o_uitd_operation(0x10, 4, tt("2024-05-16T12:00:00")))
    return up(
        "reply_t24_to_t84",
        "§3 84->24",
        serial=109,
        command=5,
        data=data,
        expect={
            "type": 24,
            "objects": [
                {
                    "operation": 16,
                    "operation_flags": ["self_test"],
                    "operator_id": 4,
                    "time": "2024-05-16T12:00:00",
                }
            ],
        },
    )


@golden
def reply_t25_to_t85() -> Case:
    data = du(25, o_uitd_version(3, 0))
    return up(
        "reply_t25_to_t85",
        "§3 85->25",
        serial=110,
        command=5,
        data=data,
        expect={
            "type": 25,
            "type_name": "uitd_software_version",
            "objects": [{"major": 3, "minor": 0}],
        },
    )


@golden
def reply_t28_to_t88() -> Case:
    data = du(28, tt("2024-05-17T08:30:13"))
    return up(
        "reply_t28_to_t88",
        "§3 88->28",
        serial=112,
        command=5,
        data=data,
        expect={
            "type": 28,
            "type_name": "uitd_system_time",
            "objects": [{"time": "2024-05-17T08:30:13"}],
        },
    )


# ---- control, cmd 1 (§3 Downstream; control sent as cmd 1 or 4) ---------------------------------


@golden
def t89_init_uitd() -> Case:
    data = du(89, o_reserved())  # §3 type 89, cmd 1 (VEN example 9)
    return down(
        "t89_init_uitd",
        "§3 type 89, control sent as cmd 1 or 4",
        serial=120,
        command=1,
        data=data,
        expect={
            "type": 89,
            "type_name": "init_uitd",
            "objects": [{"reserved": 0}],
        },
    )


@golden
def t89_init_uitd_via_request() -> Case:
    data = du(89, o_reserved())  # control sent as cmd 1 or 4: accept type 89 sent with cmd 4 (SF)
    return down(
        "t89_init_uitd_via_request",
        "control sent as cmd 1 or 4",
        serial=121,
        command=4,
        data=data,
        expect={
            "type": 89,
            "type_name": "init_uitd",
            "objects": [{"reserved": 0}],
        },
    )


@golden
def t90_sync_uitd_clock() -> Case:
    data = du(90, tt("2024-05-17T08:30:00"))  # §3 type 90: 6-byte center time (D8)
    return down(
        "t90_sync_uitd_clock",
        "§3 type 90, D8",
        serial=122,
        command=1,
        data=data,
        expect={
            "type": 90,
            "type_name": "sync_uitd_clock",
            "objects": [{"time": "2024-05-17T08:30:00"}],
        },
    )


@golden
def t91_duty_check() -> Case:
    data = du(91, struct.pack("<B", 10))  # §3 type 91: answer timeout in minutes (D7)
    return down(
        "t91_duty_check",
        "§3 type 91, D7",
        serial=123,
        command=1,
        data=data,
        expect={
            "type": 91,
            "type_name": "duty_check",
            "objects": [{"timeout_minutes": 10}],
        },
    )


# ---- user-defined and reserved type flags (§2 Table 3) -------------------


@golden
def t200_user_defined() -> Case:
    # §2 Table 3: 128-254 user-defined. Arbitrary bytes, including '@@' and '##' inside.
    data = bytes.fromhex("c803deadbeef0040402323")
    return up(
        "t200_user_defined",
        "§2 Table 3",
        serial=40,
        command=2,
        data=data,
        expect={
            "type": 200,
            "type_name": "user_defined",
            "objects": [],
            "raw": "c803deadbeef0040402323",
        },
    )


@golden
def t254_user_defined_empty() -> Case:
    data = bytes.fromhex("fe00")  # §2 Table 3: 254 is the last user-defined value
    return up(
        "t254_user_defined_empty",
        "§2 Table 3",
        serial=41,
        command=2,
        data=data,
        expect={
            "type": 254,
            "type_name": "user_defined",
            "objects": [],
            "raw": "fe00",
        },
    )


@golden
def t30_reserved_type() -> Case:
    data = bytes.fromhex("1e01aabb")  # §2 Table 3: 29-40 reserved (UITD info)
    return up(
        "t30_reserved_type",
        "§2 Table 3",
        serial=42,
        command=2,
        data=data,
        expect={
            "type": 30,
            "type_name": "reserved",
            "objects": [],
            "raw": "1e01aabb",
        },
    )


@golden
def t255_unassigned_type() -> Case:
    data = bytes.fromhex("ff0100")  # §2 Table 3: 255 is not assigned -> reserved
    return up(
        "t255_unassigned_type",
        "§2 Table 3",
        serial=43,
        command=2,
        data=data,
        expect={
            "type": 255,
            "type_name": "reserved",
            "objects": [],
            "raw": "ff0100",
        },
    )


# ---- field quirks (§1, §5, §7, D2) ---------------------------------------


@golden
def version_bytes_10_00() -> Case:
    # D2: DG captures send version bytes 10 00 -> [16, 0]. Never reject on version.
    raw = frame(
        serial=50, command=2, source=addr6(UITD), destination=addr6(CENTER), time=tt(T0), version=(0x10, 0x00)
    )
    return case(
        "version_bytes_10_00", "§1, D2", "up", raw, header(50, 2, UITD, CENTER, 0, T0, version=(16, 0))
    )


@golden
def version_bytes_00_01() -> Case:
    # D2: SF encodes version "1" as 00 01 -> [0, 1].
    raw = frame(
        serial=51, command=3, source=addr6(CENTER), destination=addr6(UITD), time=tt(T0), version=(0x00, 0x01)
    )
    return case(
        "version_bytes_00_01", "§1, D2", "down", raw, header(51, 3, CENTER, UITD, 0, T0, version=(0, 1))
    )


@golden
def time_all_zero() -> Case:
    # §5: all-zero time tags (day 0, month 0) decode with time null, flagged, never dropped.
    zero = b"\x00" * 6
    data = du(21, o_uitd_status(0x01, zero))
    raw = frame(serial=52, command=2, source=addr6(UITD), destination=addr6(CENTER), data=data, time=zero)
    expect = header(52, 2, UITD, CENTER, len(data), None)
    expect.update(
        {
            "time_valid": False,
            "time_raw": "000000000000",
            "type": 21,
            "objects": [
                {
                    "status": 1,
                    "status_flags": ["normal"],
                    "time": None,
                    "time_valid": False,
                    "time_raw": "000000000000",
                }
            ],
        }
    )
    return case("time_all_zero", "§5", "up", raw, expect)


@golden
def time_not_a_date() -> Case:
    # §5: fields in range byte-wise but not a calendar date: 2023-02-30 (header) and hour 24 (object).
    feb30 = struct.pack("6B", 0, 0, 0, 30, 2, 23)
    hour24 = struct.pack("6B", 0, 0, 24, 1, 1, 24)
    data = du(28, hour24)
    raw = frame(serial=53, command=2, source=addr6(UITD), destination=addr6(CENTER), data=data, time=feb30)
    expect = header(53, 2, UITD, CENTER, len(data), None)
    expect.update(
        {
            "time_valid": False,
            "time_raw": "0000001e0217",
            "type": 28,
            "objects": [{"time": None, "time_valid": False, "time_raw": "000018010118"}],
        }
    )
    return case("time_not_a_date", "§5", "up", raw, expect)


@golden
def checksum_byte_0x23() -> Case:
    # §1: a checksum of 0x23 makes the frame end 23 23 23; framing must be length-driven.
    # The header seconds byte is 35 (0x23) too. The serial is chosen to make the sum 0x23.
    time = "2024-05-17T08:30:35"

    def heartbeat(serial: int) -> bytes:
        return frame(serial=serial, command=2, source=addr6(UITD), destination=addr6(CENTER), time=tt(time))

    serial = next(s for s in range(256) if heartbeat(s)[-3] == 0x23)
    raw = heartbeat(serial)
    assert raw.endswith(b"\x23\x23\x23") and raw[6] == 0x23
    return case("checksum_byte_0x23", "§1 framing", "up", raw, header(serial, 2, UITD, CENTER, 0, time))


@golden
def serial_0x4040() -> Case:
    # §1: serial 0x4040 puts '@@' at offsets 2-3.
    data = du(21, o_uitd_status(0x03, tt(TA)))
    raw = frame(
        serial=0x4040, command=2, source=addr6(UITD), destination=addr6(CENTER), data=data, time=tt(T0)
    )
    assert raw[2:4] == b"@@"
    return case(
        "serial_0x4040",
        "§1 framing, §7",
        "up",
        raw,
        {
            **header(0x4040, 2, UITD, CENTER, len(data)),
            "type": 21,
            "objects": [{"status": 3, "status_flags": ["normal", "fire"], "time": TA}],
        },
    )


@golden
def serial_0xffff() -> Case:
    # §7: the serial is uint16 LE; 65535 is the last value before wrapping.
    raw = frame(serial=0xFFFF, command=3, source=addr6(CENTER), destination=addr6(UITD), time=tt(T0))
    return case("serial_0xffff", "§7", "down", raw, header(0xFFFF, 3, CENTER, UITD, 0))


@golden
def address_bytes_with_4040_and_2323() -> Case:
    # §1: address bytes that contain '@@' and '##'; largest 6-byte address as destination.
    src = bytes.fromhex("404023234040")
    dst = bytes.fromhex("ffffffffffff")
    data = du(25, o_uitd_version(1, 0))
    raw = frame(serial=54, command=2, source=src, destination=dst, data=data, time=tt(T0))
    return case(
        "address_bytes_with_4040_and_2323",
        "§1 framing, LE address",
        "up",
        raw,
        {
            **header(54, 2, addr_int(src), addr_int(dst), len(data)),
            "type": 25,
            "objects": [{"major": 1, "minor": 0}],
        },
    )


# ==========================================================================
# Vendor / peer frames. Bytes copied from the cited source; expected fields
# derived from the spec by hand (not from the peer's decoder).
# ==========================================================================

VEN = {
    "repo": "ActorLancer/GB-T-26875.3.2011-rs",
    "path": "GB26875文档.md",
    "commit": "3787f1266a314af532841ceddf426ad383a8b4bc",
}
SF = {
    "repo": "shootingfans/codec_gb26875_3_2011",
    "path": "codec/codec_test.go",
    "commit": "95ff2cc4cd74937eec0848e695b41ea52ad174ae",
}
SF_READER = {**SF, "path": "codec/reader_decoder_test.go"}
DG = {
    "repo": "dgiot/dgiot",
    "path": "apps/dgiot_gb26875/src/protocol/dgiot_gb26875_decoder.erl",
    "commit": None,
}

VEN_UITD, VEN_CENTER = 889, 88888  # 79 03 00 00 00 00 and 38 5b 01 00 00 00
VEN_T_SEND = "2012-09-26T09:58:32"  # 20 3a 09 1a 09 0c
VEN_T_ACK = "2012-09-26T09:58:35"  # 23 3a 09 1a 09 0c (seconds byte 0x23)
VEN_T_EVENT = "2012-09-26T09:58:02"  # 02 3a 09 1a 09 0c


def le6(hex_addr: str) -> int:
    return addr_int(bytes.fromhex(hex_addr))


def vendor(
    name: str,
    source: dict[str, Any],
    locator: str,
    direction: str,
    hex_frame: str,
    expect: dict[str, Any],
    **extra: Any,
) -> Case:
    raw = bytes.fromhex(hex_frame.replace(" ", ""))
    return {
        "name": name,
        "source": {**source, "locator": locator},
        "direction": direction,
        "hex": raw.hex(),
        "expect": expect,
        **extra,
    }


def ven_up(serial: int, command: int, length: int, time: str = VEN_T_SEND) -> dict[str, Any]:
    return header(serial, command, VEN_UITD, VEN_CENTER, length, time)


def ven_down(serial: int, command: int, length: int, time: str = VEN_T_SEND) -> dict[str, Any]:
    return header(serial, command, VEN_CENTER, VEN_UITD, length, time)


def vendor_cases() -> list[Case]:
    cases = [
        # ---- VEN 示例 (2012-09-26, UITD 889 <-> center 88888) ----
        vendor(
            "ven1_t2_smoke_fire",
            VEN,
            "示例 1 传输装置",
            "up",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 30 00 02 02 01 01 01 "
            "28 0A 00 02 00 02 00 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 20 "
            "20 20 20 20 20 20 00 02 3A 09 1A 09 0C 46 23 23",
            {
                **ven_up(1, 2, 48),
                "type": 2,
                "type_name": "facility_component_status",
                "objects": [
                    {
                        "system_type": 1,
                        "system_address": 1,
                        "component_type": 40,
                        "component_address": 0x0002000A,
                        "status": 2,
                        "status_flags": ["fire"],
                        "description": "",
                        "time": VEN_T_EVENT,
                    }
                ],
            },
        ),
        vendor(
            "ven_confirm_from_center",
            VEN,
            "示例 1-5 中心确认",
            "down",
            "40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 03 AB 23 23",
            ven_down(1, 3, 0, VEN_T_ACK),
        ),
        vendor(
            "ven_deny_from_center",
            VEN,
            "示例 1-5 中心否认",
            "down",
            "40 40 01 00 01 01 23 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 00 00 06 AE 23 23",
            ven_down(1, 6, 0, VEN_T_ACK),
        ),
        vendor(
            "ven2_t21_main_power_fault",
            VEN,
            "示例 2 传输装置",
            "up",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 02 15 01 08 "
            "02 3A 09 1A 09 0C 42 23 23",
            {
                **ven_up(1, 2, 9),
                "type": 21,
                "type_name": "uitd_status",
                "objects": [{"status": 8, "status_flags": ["main_power_fault"], "time": VEN_T_EVENT}],
            },
        ),
        vendor(
            "ven3_t24_duty_check_answer",
            VEN,
            "示例 3 传输装置",
            "up",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 0A 00 02 18 01 20 "
            "01 02 3A 09 1A 09 0C 5F 23 23",
            {
                **ven_up(1, 2, 10),
                "type": 24,
                "type_name": "uitd_operation",
                "objects": [
                    {
                        "operation": 0x20,
                        "operation_flags": ["duty_check_answered"],
                        "operator_id": 1,
                        "time": VEN_T_EVENT,
                    }
                ],
            },
        ),
        vendor(
            "ven4_t25_version",
            VEN,
            "示例 4 传输装置",
            "up",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 04 00 02 19 01 01 "
            "01 C7 23 23",
            {**ven_up(1, 2, 4), "type": 25, "objects": [{"major": 1, "minor": 1}]},
        ),
        vendor(
            "ven5_t28_uitd_time",
            VEN,
            "示例 5 传输装置",
            "up",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 08 00 02 1C 01 02 "
            "3A 09 1A 09 0C 40 23 23",
            {**ven_up(1, 2, 8), "type": 28, "objects": [{"time": VEN_T_EVENT}]},
        ),
        vendor(
            "ven6_t81_read_status",
            VEN,
            "示例 6 中心发送",
            "down",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 51 01 00 "
            "FE 23 23",
            {**ven_down(1, 4, 3), "type": 81, "type_name": "read_uitd_status", "objects": [{"reserved": 0}]},
        ),
        vendor(
            "ven6_reply_t21",
            VEN,
            "示例 6 传输装置应答",
            "up",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 09 00 05 15 01 08 "
            "02 3A 09 1A 09 0C 45 23 23",
            {
                **ven_up(1, 5, 9),
                "type": 21,
                "objects": [{"status": 8, "status_flags": ["main_power_fault"], "time": VEN_T_EVENT}],
            },
        ),
        vendor(
            "ven_deny_from_uitd",
            VEN,
            "示例 6-11 传输装置否认",
            "up",
            "40 40 01 00 01 01 23 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 00 00 06 AE 23 23",
            ven_up(1, 6, 0, VEN_T_ACK),
        ),
        vendor(
            "ven7_t85_read_version",
            VEN,
            "示例 7 中心发送",
            "down",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 55 01 00 "
            "02 23 23",
            {**ven_down(1, 4, 3), "type": 85, "objects": [{"reserved": 0}]},
        ),
        vendor(
            "ven7_reply_t25",
            VEN,
            "示例 7 传输装置应答",
            "up",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 04 00 05 19 01 01 "
            "01 CA 23 23",
            {**ven_up(1, 5, 4), "type": 25, "objects": [{"major": 1, "minor": 1}]},
        ),
        vendor(
            "ven8_t88_read_time",
            VEN,
            "示例 8 中心发送",
            "down",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 04 58 01 00 "
            "05 23 23",
            {**ven_down(1, 4, 3), "type": 88, "objects": [{"reserved": 0}]},
        ),
        vendor(
            "ven8_reply_t28",
            VEN,
            "示例 8 传输装置应答",
            "up",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 08 00 05 1C 01 02 "
            "3A 09 1A 09 0C 43 23 23",
            {**ven_up(1, 5, 8), "type": 28, "objects": [{"time": VEN_T_EVENT}]},
        ),
        vendor(
            "ven9_t89_init",
            VEN,
            "示例 9 中心发送",
            "down",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 01 59 01 00 "
            "03 23 23",
            {**ven_down(1, 1, 3), "type": 89, "type_name": "init_uitd", "objects": [{"reserved": 0}]},
        ),
        vendor(
            "ven_confirm_from_uitd",
            VEN,
            "示例 9-11 传输装置确认",
            "up",
            "40 40 01 00 01 01 23 3A 09 1A 09 0C 79 03 00 00 00 00 38 5B 01 00 00 00 00 00 03 AB 23 23",
            ven_up(1, 3, 0, VEN_T_ACK),
        ),
        vendor(
            "ven10_t90_sync_clock",
            VEN,
            "示例 10 中心发送",
            "down",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 08 00 01 5A 01 02 "
            "3A 09 1A 09 0C 7D 23 23",
            {
                **ven_down(1, 1, 8),
                "type": 90,
                "type_name": "sync_uitd_clock",
                "objects": [{"time": VEN_T_EVENT}],
            },
        ),
        vendor(
            "ven11_t91_duty_check_10min",
            VEN,
            "示例 11 中心发送",
            "down",
            "40 40 01 00 01 01 20 3A 09 1A 09 0C 38 5B 01 00 00 00 79 03 00 00 00 00 03 00 01 5B 01 0A "
            "0F 23 23",
            {
                **ven_down(1, 1, 3),
                "type": 91,
                "type_name": "duty_check",
                "objects": [{"timeout_minutes": 10}],
            },
        ),
        # ---- SF whole frames ----
        vendor(
            "sf_decode_success_t2",
            SF,
            "TestDecode / test success",
            "up",
            "40 40 00 00 01 01 18 0d 11 16 0a 14 00 00 00 00 00 00 06 05 04 03 02 01 30 00 02 02 01 01 03 "
            "00 d9 00 06 00 02 00 a3 c1 c7 f8 a3 b1 b2 e3 df c8 b2 b8 d7 df c0 c8 00 00 00 00 00 00 00 00 "
            "00 00 00 00 00 00 00 30 12 13 01 08 14 68 23 23",
            {
                **header(0, 2, 0, 0x010203040506, 48, "2020-10-22T17:13:24"),
                "type": 2,
                "objects": [
                    {
                        "system_type": 1,
                        "system_address": 3,
                        "component_type": 0,
                        "component_address": 0x000600D9,
                        "status": 2,
                        "status_flags": ["fire"],
                        "description": "Ａ区１层呷哺走廊",
                        "time": "2020-08-01T19:18:48",
                    }
                ],
            },
        ),
        vendor(
            "sf_t89_init_via_request_version_00_01",
            SF_READER,
            "TestReaderDecoder / test close",
            "down",
            "40 40 01 00 00 01 05 00 09 02 07 15 05 04 03 02 01 00 0b 0a 09 08 07 06 03 00 04 59 01 00 "
            "d1 23 23",
            {
                **header(1, 4, 0x000102030405, 0x060708090A0B, 3, "2021-07-02T09:00:05", version=(0, 1)),
                "type": 89,
                "type_name": "init_uitd",
                "objects": [{"reserved": 0}],
            },
        ),
        vendor(
            "sf_confirm_empty",
            SF_READER,
            "TestReaderDecoder / test close when C not empty "
            "(checksum computed by the test with utils.Sum; value here recomputed)",
            "down",
            "40 40 00 00 01 01 18 0d 11 16 0a 14 00 00 00 00 00 00 06 05 04 03 02 01 00 00 03 "
            + format(sum(bytes.fromhex("00000101180d11160a14000000000000060504030201000003")) % 256, "02x")
            + " 23 23",
            header(0, 3, 0, 0x010203040506, 0, "2020-10-22T17:13:24"),
        ),
        # ---- DG captures (older stored versions of the decoder, in comments) ----
        vendor(
            "dg_heartbeat_0x16",
            DG,
            "comment above parse_frame: '4040 F809 1000 081E09030316 ...'",
            "up",
            "4040 F809 1000 081E09030316 000000000000 C0A801046D1D 0100 02 16 6C 2323",
            {
                **header(0x09F8, 2, 0, le6("c0a801046d1d"), 1, "2022-03-03T09:30:08", version=(16, 0)),
                "type": 22,
                "objects": [],
                "heartbeat": True,
            },
        ),
        vendor(
            "dg_handshake_0x16",
            DG,
            "comment '握手请求'",
            "up",
            "4040 6900 1000 0a110e030615 000000000000 ac103cd56d1d 0100 02 16 30 2323",
            {
                **header(0x0069, 2, 0, le6("ac103cd56d1d"), 1, "2021-06-03T14:17:10", version=(16, 0)),
                "type": 22,
                "objects": [],
                "heartbeat": True,
            },
        ),
        vendor(
            "dg_handshake_ack_bad_checksum",
            DG,
            "comment '应答' (DG reuses the request's checksum: 0x30 given, 0x32 computed)",
            "down",
            "4040 6900 1000 0a110e030615 ac103cd56d1d 000000000000 0100 03 17 30 2323",
            {},
            expect_error="ChecksumError",
        ),
        vendor(
            "dg_t24_silence",
            DG,
            "comment '火警' above parse_userzone (it is type 24, silence)",
            "up",
            "4040 3113 1000 160F11030316 000000000000 C0A801046D1D 0A00 02 18010200160F11030316 16 2323",
            {
                **header(0x1331, 2, 0, le6("c0a801046d1d"), 10, "2022-03-03T17:15:22", version=(16, 0)),
                "type": 24,
                "objects": [
                    {
                        "operation": 2,
                        "operation_flags": ["silence"],
                        "operator_id": 0,
                        "time": "2022-03-03T17:15:22",
                    }
                ],
            },
        ),
        vendor(
            "dg_t2_smoke_fire_nul_garbage",
            DG,
            "comment '光电探测器火警(光电感烟)'",
            "up",
            "40 40 14 00 10 00 05 09 09 1b 07 15 2c 31 2c 32 00 00 78 4d 07 91 8e 23 30 00 02 02 01 01 01 "
            "2a 01 00 01 00 02 00 31 ba c5 bd d3 bf da b0 e5 31 bb d8 c2 b7 31 ba c5 00 ba c5 d6 f7 bb fa "
            "f8 98 cf a0 00 00 00 25 11 03 01 06 0c 47 23 23",
            {
                **header(
                    20,
                    2,
                    le6("2c312c320000"),
                    le6("784d07918e23"),
                    48,
                    "2021-07-27T09:09:05",
                    version=(16, 0),
                ),
                "type": 2,
                "objects": [
                    {
                        "system_type": 1,
                        "system_address": 1,
                        "component_type": 42,
                        "component_address": 0x00010001,
                        "status": 2,
                        "status_flags": ["fire"],
                        "description": "1号接口板1回路1号",
                        "time": "2012-06-01T03:17:37",
                    }
                ],
            },
        ),
    ]
    return cases + sf_wrapped_cases()


# SF TestDecodeAppData / TestNew*AppData give data units only. They are wrapped here in a
# synthesized header (SF's own test addresses); only the data unit is vendor data.
SF_SRC, SF_DST = 0x000102030405, 0x060708090A0B
SF_T = "2021-07-02T09:00:05"
SF_DESC = "d5e2cac7d2bbb8f6d7aac2ebb2e2cad4"  # "这是一个转码测试", 16 bytes GB18030
SF_TEXT = "这是一个转码测试"
SF_T4 = "2021-07-02T09:00:04"  # 04 00 09 02 07 15


def sf_wrapped(name: str, locator: str, command: int, data_hex: str, expect: dict[str, Any]) -> Case:
    data = bytes.fromhex(data_hex.replace(" ", ""))
    downstream = command in (1, 4)
    src, dst = (SF_DST, SF_SRC) if downstream else (SF_SRC, SF_DST)
    raw = frame(
        serial=1, command=command, source=addr6(src), destination=addr6(dst), data=data, time=tt(SF_T)
    )
    return {
        "name": name,
        "source": {**SF, "locator": locator},
        "direction": "down" if downstream else "up",
        "wrapped": "header synthesized by make_golden.py; the data unit is copied from the source",
        "hex": raw.hex(),
        "expect": {**header(1, command, src, dst, len(data), SF_T), **expect},
    }


def sf_wrapped_cases() -> list[Case]:
    pad15, pad14 = "00" * 15, "00" * 14
    return [
        sf_wrapped(
            "sf_du_t1_two",
            "TestDecodeAppData / upload more system state",
            2,
            "01 02 01 02 04 02 04 00 09 02 07 15 0d 03 05 01 05 00 09 02 07 15",
            {
                "type": 1,
                "objects": [
                    {
                        "system_type": 1,
                        "system_address": 2,
                        "status": 0x0204,
                        "status_flags": ["fault", "backup_power_fault"],
                        "time": SF_T4,
                    },
                    {
                        "system_type": 13,
                        "system_address": 3,
                        "status": 0x0105,
                        "status_flags": ["normal", "fault", "main_power_fault"],
                        "time": SF_T,
                    },
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t2_two",
            "TestDecodeAppData / upload more system state (equipment)",
            2,
            f"02 02 01 02 79 01 02 03 04 04 02 {SF_DESC} {pad15} 04 00 09 02 07 15 "
            f"0d 03 79 03 04 05 06 05 01 {SF_DESC} {pad15} 05 00 09 02 07 15",
            {
                "type": 2,
                "objects": [
                    {
                        "system_type": 1,
                        "system_address": 2,
                        "component_type": 121,
                        "component_address": 0x04030201,
                        "status": 0x0204,
                        "status_flags": ["fault", "bit9"],
                        "description": SF_TEXT,
                        "time": SF_T4,
                    },
                    {
                        "system_type": 13,
                        "system_address": 3,
                        "component_type": 121,
                        "component_address": 0x06050403,
                        "status": 0x0105,
                        "status_flags": ["normal", "fault", "power_fault"],
                        "description": SF_TEXT,
                        "time": SF_T,
                    },
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t3_two",
            "TestDecodeAppData / upload more equipment parameter",
            2,
            "03 02 01 02 28 01 02 03 04 03 20 03 04 00 09 02 07 15 "
            "0d 03 79 03 04 05 06 02 01 50 05 00 09 02 07 15",
            {
                "type": 3,
                "objects": [
                    {
                        "system_type": 1,
                        "system_address": 2,
                        "component_type": 40,
                        "component_address": 0x04030201,
                        "analog_type": 3,
                        "value": 800,
                        "scaled_value": 80.0,
                        "unit": "°C",
                        "time": SF_T4,
                    },
                    {
                        "system_type": 13,
                        "system_address": 3,
                        "component_type": 121,
                        "component_address": 0x06050403,
                        "analog_type": 2,
                        "value": 0x5001,
                        "scaled_value": 204.81,
                        "unit": "m",
                        "time": SF_T,
                    },
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t4_two",
            "TestDecodeAppData / upload system operation (more)",
            2,
            "04 02 01 02 84 fa 04 00 09 02 07 15 0d 03 73 fb 05 00 09 02 07 15",
            {
                "type": 4,
                "objects": [
                    {
                        "system_type": 1,
                        "system_address": 2,
                        "operation": 0x84,
                        "operation_flags": ["manual_alarm", "bit7"],
                        "operator_id": 250,
                        "time": SF_T4,
                    },
                    {
                        "system_type": 13,
                        "system_address": 3,
                        "operation": 0x73,
                        "operation_flags": ["reset", "silence", "self_test", "acknowledge", "test"],
                        "operator_id": 251,
                        "time": SF_T,
                    },
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t5_one",
            "TestDecodeAppData / upload one system software version",
            2,
            "05 01 01 02 03 04",
            {"type": 5, "objects": [{"system_type": 1, "system_address": 2, "major": 3, "minor": 4}]},
        ),
        sf_wrapped(
            "sf_du_t6_two_nul_padded",
            "TestDecodeAppData / upload more system configure",
            2,
            f"06 02 01 02 1e {SF_DESC} {pad14} 0d 03 1e {SF_DESC} {pad14}",
            {
                "type": 6,
                "objects": [
                    {"system_type": 1, "system_address": 2, "description": SF_TEXT},
                    {"system_type": 13, "system_address": 3, "description": SF_TEXT},
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t7_two",
            "TestDecodeAppData / upload more equipment configure",
            2,
            f"07 02 01 02 28 01 02 03 04 {SF_DESC} {pad15} 0d 03 55 03 04 05 06 {SF_DESC} {pad15}",
            {
                "type": 7,
                "objects": [
                    {
                        "system_type": 1,
                        "system_address": 2,
                        "component_type": 40,
                        "component_address": 0x04030201,
                        "description": SF_TEXT,
                    },
                    {
                        "system_type": 13,
                        "system_address": 3,
                        "component_type": 85,
                        "component_address": 0x06050403,
                        "description": SF_TEXT,
                    },
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t8_one",
            "TestDecodeAppData / upload one system time",
            2,
            "08 01 01 02 04 00 09 02 07 15",
            {"type": 8, "objects": [{"system_type": 1, "system_address": 2, "time": SF_T4}]},
        ),
        sf_wrapped(
            "sf_du_t21_one",
            "TestDecodeAppData / upload one transmission state",
            2,
            "15 01 08 04 00 09 02 07 15",
            {"type": 21, "objects": [{"status": 8, "status_flags": ["main_power_fault"], "time": SF_T4}]},
        ),
        sf_wrapped(
            "sf_du_t24_two",
            "TestDecodeAppData / upload more transmission operation",
            2,
            "18 02 31 fa 04 00 09 02 07 15 73 fb 05 00 09 02 07 15",
            {
                "type": 24,
                "objects": [
                    {
                        "operation": 0x31,
                        "operation_flags": ["reset", "self_test", "duty_check_answered"],
                        "operator_id": 250,
                        "time": SF_T4,
                    },
                    {
                        "operation": 0x73,
                        "operation_flags": ["reset", "silence", "self_test", "duty_check_answered", "test"],
                        "operator_id": 251,
                        "time": SF_T,
                    },
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t25_one",
            "TestDecodeAppData / upload one transmission software",
            2,
            "19 01 03 04",
            {"type": 25, "objects": [{"major": 3, "minor": 4}]},
        ),
        sf_wrapped(
            "sf_du_t26_nul_padded",
            "TestDecodeAppData / upload one transmission configure",
            2,
            f"1a 01 1e {SF_DESC} {pad14}",
            {"type": 26, "objects": [{"description": SF_TEXT}]},
        ),
        sf_wrapped(
            "sf_du_t28_one",
            "TestDecodeAppData / upload one transmission time",
            2,
            "1c 01 05 00 09 02 07 15",
            {"type": 28, "objects": [{"time": SF_T}]},
        ),
        sf_wrapped(
            "sf_du_t61_two",
            "TestNewQuerySystemStateAppData / more controllers",
            4,
            "3d 02 01 01 0d 02",
            {
                "type": 61,
                "objects": [
                    {"system_type": 1, "system_address": 1},
                    {"system_type": 13, "system_address": 2},
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t62_two",
            "TestNewQueryEquipmentStateAppData / more equipments",
            4,
            "3e 02 01 01 03 02 11 01 0d 03 78 56 34 12",
            {
                "type": 62,
                "objects": [
                    {"system_type": 1, "system_address": 1, "component_address": 0x01110203},
                    {"system_type": 13, "system_address": 3, "component_address": 0x12345678},
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t63_two",
            "TestNewQueryEquipmentParameterAppData / more equipments",
            4,
            "3f 02 01 01 03 02 11 01 0d 03 78 56 34 12",
            {
                "type": 63,
                "objects": [
                    {"system_type": 1, "system_address": 1, "component_address": 0x01110203},
                    {"system_type": 13, "system_address": 3, "component_address": 0x12345678},
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t65",
            "TestNewQuerySystemSoftwareVersionAppData",
            4,
            "41 01 01 02",
            {"type": 65, "objects": [{"system_type": 1, "system_address": 2}]},
        ),
        sf_wrapped(
            "sf_du_t66_two",
            "TestNewQuerySystemConfigureAppData / more",
            4,
            "42 02 01 03 0d 02",
            {
                "type": 66,
                "objects": [
                    {"system_type": 1, "system_address": 3},
                    {"system_type": 13, "system_address": 2},
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t67_two",
            "TestNewQueryEquipmentConfigureAppData / more",
            4,
            "43 02 01 01 78 56 34 12 0d 03 04 03 02 01",
            {
                "type": 67,
                "objects": [
                    {"system_type": 1, "system_address": 1, "component_address": 0x12345678},
                    {"system_type": 13, "system_address": 3, "component_address": 0x01020304},
                ],
            },
        ),
        sf_wrapped(
            "sf_du_t68",
            "TestNewQuerySystemTimeAppData",
            4,
            "44 01 01 03",
            {"type": 68, "objects": [{"system_type": 1, "system_address": 3}]},
        ),
        sf_wrapped(
            "sf_du_t81",
            "TestNewQueryTransmissionStateAppData",
            4,
            "51 01 00",
            {"type": 81, "objects": [{"reserved": 0}]},
        ),
        sf_wrapped(
            "sf_du_t85",
            "TestNewQueryTransmissionSoftwareVersionAppData",
            4,
            "55 01 00",
            {"type": 85, "objects": [{"reserved": 0}]},
        ),
        sf_wrapped(
            "sf_du_t86",
            "TestNewQueryTransmissionConfigureAppData",
            4,
            "56 01 00",
            {"type": 86, "objects": [{"reserved": 0}]},
        ),
        sf_wrapped(
            "sf_du_t88",
            "TestNewQueryTransmissionTimeAppData",
            4,
            "58 01 00",
            {"type": 88, "objects": [{"reserved": 0}]},
        ),
        sf_wrapped(
            "sf_du_t89",
            "TestNewInitializeTransmissionAppData",
            1,
            "59 01 00",
            {"type": 89, "objects": [{"reserved": 0}]},
        ),
        sf_wrapped(
            "sf_du_t91_10min",
            "TestNewInspectSentriesAppData / timeout 10 minute",
            1,
            "5b 01 0a",
            {"type": 91, "objects": [{"timeout_minutes": 10}]},
        ),
        sf_wrapped(
            "sf_du_t91_0min",
            "TestNewInspectSentriesAppData / timeout 0 minute",
            1,
            "5b 01 00",
            {"type": 91, "objects": [{"timeout_minutes": 0}]},
        ),
    ]


# ==========================================================================
# Self-checks (catch mistakes in this file, not in the codec)
# ==========================================================================

FLAG_TABLES = {
    (1, "status_flags"): (SYSTEM_STATUS_BITS, 16, "status"),
    (2, "status_flags"): (COMPONENT_STATUS_BITS, 16, "status"),
    (21, "status_flags"): (UITD_STATUS_BITS, 8, "status"),
    (4, "operation_flags"): (FACILITY_OPERATION_BITS, 8, "operation"),
    (24, "operation_flags"): (UITD_OPERATION_BITS, 8, "operation"),
}


def verify(c: Case) -> None:
    raw = bytes.fromhex(c["hex"])
    length = struct.unpack_from("<H", raw, 24)[0]
    assert raw[:2] == b"@@" and raw[-2:] == b"##", c["name"]
    assert len(raw) == 30 + length and length <= 1024, c["name"]
    checksum_ok = sum(raw[2 : 27 + length]) % 256 == raw[27 + length]
    assert checksum_ok == ("expect_error" not in c), c["name"]
    e = c["expect"]
    if not e:
        return
    assert e["length"] == length and e["command"] == raw[26], c["name"]
    assert e["serial"] == struct.unpack_from("<H", raw, 2)[0], c["name"]
    assert e["source"] == addr_int(raw[12:18]) and e["destination"] == addr_int(raw[18:24]), c["name"]
    assert e["version"] == [raw[4], raw[5]], c["name"]
    if e["time"] is not None:
        assert tt(e["time"]) == raw[6:12], c["name"]
    if length:
        assert e["type"] == raw[27], c["name"]
    objects = e.get("objects")
    for obj in objects if isinstance(objects, list) else []:
        for key in ("status_flags", "operation_flags"):
            table = FLAG_TABLES.get((e["type"], key))
            if table and key in obj and table[2] in obj:
                names, width, value_key = table
                assert obj[key] == flag_names(obj[value_key], names, width), (c["name"], obj)


def golden_cases() -> list[Case]:
    cases = [fn() for fn in GOLDEN]
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    assert names == [fn.__name__ for fn in GOLDEN], "case name must equal its function name"
    for c in cases:
        verify(c)
    return cases


def all_vendor_cases() -> list[Case]:
    cases = vendor_cases()
    assert len({c["name"] for c in cases}) == len(cases), "duplicate vendor case names"
    for c in cases:
        verify(c)
    return cases


def dumps(cases: list[Case]) -> str:
    return json.dumps(cases, ensure_ascii=False, indent=2) + "\n"


def main() -> None:
    GOLDEN_PATH.write_text(dumps(golden_cases()), encoding="utf-8")
    VENDOR_PATH.write_text(dumps(all_vendor_cases()), encoding="utf-8")
    print(f"wrote {GOLDEN_PATH.name} ({len(GOLDEN)} cases) and {VENDOR_PATH.name}")


if __name__ == "__main__":
    main()
