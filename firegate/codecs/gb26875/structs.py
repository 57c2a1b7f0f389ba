"""The GB/T 26875.3-2011 wire format as Construct definitions: the one place integrators read.

Byte order is little-endian throughout (STD §6.6). The checksum is not part of these structs'
logic on purpose: Construct's `Checksum` cannot be compiled, and the framer validates it anyway.
`fastpath.py` derives `struct` formats from the flat definitions here, so the hot path and this
file cannot drift apart, and `reference.py` runs these definitions as a decoder: the oracle the
hot path is tested against (golden frames, and hypothesis-generated units, frames and bytes).
"""

from __future__ import annotations

from construct import (
    Bytes,
    Const,
    GreedyBytes,
    Int8ul,
    Int16sl,
    Int16ul,
    Int32ul,
    Prefixed,
    Struct,
    this,
)

# §5: second, minute, hour, day, month, year-2000; plain binary, not BCD.
TIME_TAG = Struct(
    "second" / Int8ul,
    "minute" / Int8ul,
    "hour" / Int8ul,
    "day" / Int8ul,
    "month" / Int8ul,
    "year" / Int8ul,
)
TimeTagBytes = Bytes(6)  # kept raw in objects: devices send invalid tags that must round-trip
Address = Bytes(6)  # 6 bytes, read as a little-endian int by default (spec §1; vendors agree but one)
Text31 = Bytes(31)  # GB18030, padding undefined by the standard (spec §3 "Text fields")

# §1, Table 1: the 25-byte control unit after '@@'.
CONTROL_UNIT = Struct(
    "serial" / Int16ul,
    "version_major" / Int8ul,
    "version_minor" / Int8ul,
    "time" / TimeTagBytes,
    "source" / Address,
    "destination" / Address,
    "length" / Int16ul,
    "command" / Int8ul,
)

FRAME = Struct(
    "start" / Const(b"@@"),
    "serial" / Int16ul,
    "version_major" / Int8ul,
    "version_minor" / Int8ul,
    "time" / TimeTagBytes,
    "source" / Address,
    "destination" / Address,
    "length" / Int16ul,
    "command" / Int8ul,
    "data" / Bytes(this.length),
    "checksum" / Int8ul,  # sum(frame[2:27+L]) mod 256
    "end" / Const(b"##"),
)

# §2, Fig. 5: type flag, object count, then the objects.
DATA_UNIT_HEAD = Struct("type" / Int8ul, "count" / Int8ul)

# §3: information bodies, by type flag. A time tag follows each body where TIMED says so.
BODIES: dict[int, Struct] = {
    1: Struct("system_type" / Int8ul, "system_address" / Int8ul, "status" / Int16ul),
    2: Struct(
        "system_type" / Int8ul,
        "system_address" / Int8ul,
        "component_type" / Int8ul,
        "component_address" / Int32ul,
        "status" / Int16ul,
        "description" / Text31,
    ),
    3: Struct(
        "system_type" / Int8ul,
        "system_address" / Int8ul,
        "component_type" / Int8ul,
        "component_address" / Int32ul,
        "analog_type" / Int8ul,
        "value" / Int16sl,
    ),
    4: Struct(
        "system_type" / Int8ul, "system_address" / Int8ul, "operation" / Int8ul, "operator_id" / Int8ul
    ),
    5: Struct("system_type" / Int8ul, "system_address" / Int8ul, "major" / Int8ul, "minor" / Int8ul),
    6: Struct(
        "system_type" / Int8ul,
        "system_address" / Int8ul,
        "description" / Prefixed(Int8ul, GreedyBytes),
    ),
    7: Struct(
        "system_type" / Int8ul,
        "system_address" / Int8ul,
        "component_type" / Int8ul,
        "component_address" / Int32ul,
        "description" / Text31,
    ),
    8: Struct("system_type" / Int8ul, "system_address" / Int8ul, "time" / TimeTagBytes),
    21: Struct("status" / Int8ul),
    24: Struct("operation" / Int8ul, "operator_id" / Int8ul),
    25: Struct("major" / Int8ul, "minor" / Int8ul),
    26: Struct("description" / Prefixed(Int8ul, GreedyBytes)),
    28: Struct("time" / TimeTagBytes),
}

_SYSTEM_REF = Struct("system_type" / Int8ul, "system_address" / Int8ul)
# 62/63/67 carry no component-type byte (§3: 6-byte objects).
_COMPONENT_REF = Struct("system_type" / Int8ul, "system_address" / Int8ul, "component_address" / Int32ul)
_RESERVED = Struct("reserved" / Int8ul)

BODIES.update(
    {
        61: _SYSTEM_REF,
        62: _COMPONENT_REF,
        63: _COMPONENT_REF,
        64: Struct(
            "system_type" / Int8ul,
            "system_address" / Int8ul,
            "record_count" / Int8ul,
            "start_time" / TimeTagBytes,
        ),
        65: _SYSTEM_REF,
        66: _SYSTEM_REF,
        67: _COMPONENT_REF,
        68: _SYSTEM_REF,
        81: _RESERVED,
        84: Struct("record_count" / Int8ul, "start_time" / TimeTagBytes),
        85: _RESERVED,
        86: _RESERVED,
        88: _RESERVED,
        89: _RESERVED,
        90: Struct("time" / TimeTagBytes),
        91: Struct("timeout_minutes" / Int8ul),
    }
)

# Types whose objects carry a trailing 6-byte time tag in the standard (§3 "+T").
TIMED: frozenset[int] = frozenset({1, 2, 3, 4, 21, 24})
