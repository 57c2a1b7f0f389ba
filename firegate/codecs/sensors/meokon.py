"""MEOKON (上海铭控) wireless sensor frames, protocol V3.0, as their MQTT payload: a hex string.

One frame, big-endian::

    A5 5A | cmd 1 | total length 2 | device id 12 ASCII | battery 1 | RSSI int8 dBm |
    record interval s 2 | n records 2 | device type 1 | alarm bits 1 | low, high limits 2+2 |
    current value 2 | UTC time of the newest record 4 | n records x 2 (oldest first) |
    CRC16/MODBUS 2 (over everything before it) | 55 AA

The device buffers records while the platform does not answer and sends them all next time,
so the same record arrives again: each record's time is the frame's time minus its distance
from the newest record (``interval`` apart), which makes a resent record the same sample. The
current value is the newest record at the frame's time; a frame without records has only it.
The alarm bits belong to the newest sample.

Device types (table 2 of the protocol): 0 pressure in 0.1 kPa, 1 pressure in 0.001 MPa,
2 pressure in 0.01 bar, each one sensor and a signed 16-bit value. Other types are a codec
option (``device_types: {"34": {"point": "pressure", "unit": "MPa", "step": 0.001}}``);
an unknown type is a bad payload (reason ``device_type``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from firegate.codecs.api import MessageCodec, Sample
from firegate.codecs.checksums import crc16_modbus
from firegate.codecs.errors import CodecError

HEAD = b"\xa5\x5a"
TAIL = b"\x55\xaa"
_FIXED = struct.Struct(">2sBH12sBbHHBBhhhI")  # up to the first buffered record
MIN_LENGTH = _FIXED.size + 4  # CRC and tail
MAX_RECORDS = 600  # the GPRS model's buffer; NB-IoT holds 200

# table 3: alarm bits, lowest first (bit 7 is "water discharge" on hydrant models)
ALARM_BITS = ("low", "high", "battery_low", "sensor_fault", "hardware_fault", "low_2", "high_2", "alarm_3")


@dataclass(frozen=True, slots=True)
class DeviceType:
    point: str
    unit: str
    step: float


DEVICE_TYPES: dict[int, DeviceType] = {
    0: DeviceType("pressure", "kPa", 0.1),
    1: DeviceType("pressure", "MPa", 0.001),
    2: DeviceType("pressure", "bar", 0.01),
}


@dataclass(frozen=True, slots=True)
class MeokonFrame:
    device: str
    battery: int
    rssi: int
    interval: int
    device_type: int
    alarm: int
    low_limit: int
    high_limit: int
    current: int
    time: datetime  # UTC, of the newest record
    records: tuple[int, ...]  # oldest first
    command: int = 0


def encode(frame: MeokonFrame) -> bytes:
    """The frame's bytes (for tests and simulators)."""
    if len(frame.device.encode("ascii")) != 12:
        raise ValueError(f"a MEOKON device id is 12 ASCII characters, got {frame.device!r}")
    n = len(frame.records)
    length = _FIXED.size + 2 * n + 4
    body = _FIXED.pack(
        HEAD,
        frame.command,
        length,
        frame.device.encode("ascii"),
        frame.battery,
        frame.rssi,
        frame.interval,
        n,
        frame.device_type,
        frame.alarm,
        frame.low_limit,
        frame.high_limit,
        frame.current,
        int(frame.time.timestamp()),
    ) + struct.pack(f">{n}h", *frame.records)
    return body + crc16_modbus(body).to_bytes(2, "big") + TAIL


def parse(data: bytes) -> MeokonFrame:
    """Raises CodecError (reasons: length, delimiter, checksum) for anything but one whole frame."""
    if len(data) < MIN_LENGTH:
        why = f"{len(data)} bytes: shorter than a frame ({MIN_LENGTH})"
        raise CodecError(why, reason="length", data=data)
    if data[:2] != HEAD or data[-2:] != TAIL:
        raise CodecError("not framed by A5 5A ... 55 AA", reason="delimiter", data=data)
    (_, command, length, device, battery, rssi, interval, n, device_type, alarm, low, high, current, ts) = (
        _FIXED.unpack_from(data)
    )
    if length != len(data) or n > MAX_RECORDS or length != _FIXED.size + 2 * n + 4:
        why = f"length field {length}, {n} records, {len(data)} bytes received"
        raise CodecError(why, reason="length", data=data)
    crc = int.from_bytes(data[-4:-2], "big")
    if crc16_modbus(data[:-4]) != crc:
        raise CodecError(f"CRC16/MODBUS {crc:04x} does not match", reason="checksum", data=data)
    try:
        name = device.decode("ascii")
    except UnicodeDecodeError:
        raise CodecError(f"device id {device!r} is not ASCII", reason="device", data=data) from None
    records = struct.unpack_from(f">{n}h", data, _FIXED.size)
    when = datetime.fromtimestamp(ts, UTC)
    return MeokonFrame(
        name, battery, rssi, interval, device_type, alarm, low, high, current, when, records, command
    )


def _device_types(options: Mapping[str, Any]) -> dict[int, DeviceType]:
    types = dict(DEVICE_TYPES)
    for code, spec in (options.get("device_types") or {}).items():
        try:
            types[int(code)] = DeviceType(str(spec["point"]), str(spec["unit"]), float(spec["step"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"device_types.{code}: needs point, unit and step ({e})") from e
    return types


class MeokonCodec(MessageCodec):
    name: ClassVar[str] = "meokon"
    summary: ClassVar[str] = "MEOKON V3.0 pressure/level sensor frames as hex-string MQTT payloads"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.types = _device_types(self.options)

    def decode(self, payload: bytes, topic: str) -> list[Sample]:
        try:
            data = bytes.fromhex(payload.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            # the UDP/TCP and CTWing variants carry the frame as binary: take that too
            if not payload.startswith(HEAD):
                raise CodecError("not a hex string of a frame", reason="hex", data=payload) from None
            data = payload
        frame = parse(data)
        kind = self.types.get(frame.device_type)
        if kind is None:
            raise CodecError(f"unknown device type {frame.device_type}", reason="device_type", data=data)
        flags = frozenset(name for bit, name in enumerate(ALARM_BITS) if frame.alarm >> bit & 1)
        values = frame.records or (frame.current,)
        newest = len(values) - 1
        step = timedelta(seconds=frame.interval)
        return [
            Sample(
                device=frame.device,
                point=kind.point,
                time=frame.time - step * (newest - i),
                value=round(raw * kind.step, 6),
                unit=kind.unit,
                flags=flags if i == newest else frozenset(),
            )
            for i, raw in enumerate(values)
        ]
