"""The codec plugin API: what a panel dialect or a sensor payload codec gives firegate.

A codec is sans-I/O, like the GB 26875.3 codec: it never opens a port or a socket.

- A `LineCodec` (a panel dialect on a serial line) has a *framer* (bytes in, frames and typed
  errors out, in any chunking) and a *decoder* (a frame in, the standard's information objects
  out, as `Reading`s). Optionally: the bytes a dialect expects back once a frame is stored
  (`acknowledge`), the poll/keep-alive frame sent in poll mode (`poll`), whether a frame answers
  a poll (`answers_poll`), and how long a listening line may stay silent (`liveness`).
- A `MessageCodec` (an MQTT payload codec) decodes one message into `Sample`s: measured values
  and the sensor's own flags, which the sensor input maps onto the standard's objects through
  its point table and thresholds.

Panel addresses (controller/loop/point) reach the standard's system and component addresses
through the `PointTable` a line's configuration gives; `Context.component_status` does that
mapping for a dialect, so a decoder never needs to know the table. The one normalizer then
makes the same events as on the UITD path: a fire bit is a fire alarm, whatever the input.

Codecs register in the ``firegate.codecs`` entry-point group (see `registry`): the entry point
loads a `LineCodec` or `MessageCodec` subclass, or a callable returning an instance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from firegate.codecs.errors import CodecError
from firegate.codecs.gb26875 import (
    ComponentStatus,
    DataUnit,
    InfoObject,
    SystemStatus,
    TimeTag,
    decode_data_unit,
    encode_data_unit,
)

__all__ = [
    "STATUS",
    "SYSTEM_STATUS",
    "CodecError",
    "Context",
    "DefaultPoints",
    "Framer",
    "LineCodec",
    "LineSettings",
    "MessageCodec",
    "PanelAddress",
    "PointRef",
    "PointTable",
    "Reading",
    "Sample",
    "unit_of",
]

Parity = Literal["N", "E", "O", "M", "S"]
F = TypeVar("F")

# Component status bits (spec §4.2), for decoders building `ComponentStatus` objects.
STATUS = {
    "normal": 0b1,  # clear: test mode
    "fire": 0b10,
    "fault": 0b100,
    "disabled": 0b1000,
    "supervisory": 0b10000,
    "started": 0b100000,
    "feedback": 0b1000000,
    "delay": 0b10000000,
    "power_fault": 0b100000000,
}
# System status bits (spec §4.1), for a whole panel: the component bits without power_fault, then these.
SYSTEM_STATUS = {
    **{k: v for k, v in STATUS.items() if k != "power_fault"},
    "main_power_fault": 1 << 8,
    "backup_power_fault": 1 << 9,
    "bus_fault": 1 << 10,
    "manual": 1 << 11,
    "config_changed": 1 << 12,
    "reset": 1 << 13,
}


@dataclass(frozen=True, slots=True)
class LineSettings:
    """A serial line's settings, as raw as the panels use them (any baud rate: 22800 is real)."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: Parity = "N"
    stopbits: float = 1


@dataclass(frozen=True, slots=True)
class PanelAddress:
    """Where a point is in the panel's own terms."""

    controller: int = 0
    loop: int = 0
    point: int = 0

    def __str__(self) -> str:
        return f"{self.controller}-{self.loop}-{self.point}"


@dataclass(frozen=True, slots=True)
class PointRef:
    """Where a point is in the standard's terms (spec §3: system and component addresses)."""

    system_type: int = 1  # fire alarm system
    system_address: int = 0
    component_type: int = 0
    component_address: int = 0
    description: str = ""


class PointTable(Protocol):
    def lookup(self, address: PanelAddress) -> PointRef: ...


@dataclass(frozen=True, slots=True)
class DefaultPoints:
    """No table: controller is the system address; the component address is the loop (zone, 区)
    in its low two bytes and the point (号) in its high two, as UITDs commonly send it (0a 00 02 00
    = point 2 of zone 10); the description names the panel's own address ("1-10-2")."""

    component_type: int = 0

    def lookup(self, address: PanelAddress) -> PointRef:
        return PointRef(
            system_address=address.controller & 0xFF,
            component_type=self.component_type,
            component_address=(address.point & 0xFFFF) << 16 | (address.loop & 0xFFFF),
            description=str(address),
        )


@dataclass(frozen=True, slots=True)
class Reading:
    """What a frame said, as the standard's information objects of one type flag."""

    type_flag: int
    objects: tuple[InfoObject, ...]
    device: str | None = None  # the frame's own address, for dialects whose frames carry one
    time: datetime | None = None  # the device's time for the whole frame, when it says one


@dataclass(frozen=True, slots=True)
class Context:
    """What a decoder may know of its line: the configured device id and point table."""

    device: str
    points: PointTable = field(default_factory=DefaultPoints)
    options: Mapping[str, Any] = field(default_factory=dict)  # the line's `codec_options`
    # the device-time clock for frames that carry no time (None: now); a capture replays at a fixed one
    clock: Callable[[], datetime] | None = None

    def _tag(self, when: datetime | None) -> TimeTag:
        if when is None and self.clock is not None:
            when = self.clock()
        return TimeTag.from_datetime(when) if when is not None else TimeTag.now()

    def component_status(
        self, address: PanelAddress, status: int, *, when: datetime | None, text: str = ""
    ) -> ComponentStatus:
        """A component status (type 2) for a panel point, placed through the point table;
        ``status`` is `STATUS` bits (bit 0 set unless the panel says test mode)."""
        ref = self.points.lookup(address)
        tag = self._tag(when)
        return ComponentStatus.make(
            ref.system_type,
            ref.system_address,
            ref.component_type,
            ref.component_address,
            status,
            (text or ref.description)[:15],  # 31 bytes of GB18030: 15 CJK characters fit
            tag,
        )

    def system_status(self, controller: int, status: int, *, when: datetime | None) -> SystemStatus:
        """A system status (type 1) for a whole panel (power faults, reset), placed through the
        point table's entry for the controller (loop 0, point 0); ``status`` is `SYSTEM_STATUS`
        bits."""
        ref = self.points.lookup(PanelAddress(controller, 0, 0))
        return SystemStatus(ref.system_type, ref.system_address, status, self._tag(when))


class Framer(Protocol[F]):
    """Bytes in any chunks, frames and errors out in stream order; bounded memory."""

    def feed(self, data: bytes) -> list[F | CodecError]: ...


class LineCodec(ABC, Generic[F]):
    """A panel dialect on a serial line."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    line: ClassVar[LineSettings] = LineSettings()  # defaults; a panel's config may override them
    liveness: ClassVar[float | None] = None  # seconds a listening line may stay silent

    @abstractmethod
    def framer(self) -> Framer[F]:
        """A fresh framer for one line (called again after the line reopens)."""

    @abstractmethod
    def decode(self, frame: F, context: Context) -> list[Reading]:
        """The frame's meaning; [] for frames that say nothing to store (keep-alives).
        Raises `CodecError` for a frame that framed but does not make sense."""

    @abstractmethod
    def raw(self, frame: F) -> bytes:
        """The frame's bytes as received, kept in the events."""

    def acknowledge(self, frame: F) -> bytes | None:
        """Bytes to send back once the frame's events are stored (None: the dialect expects
        nothing)."""
        return None

    def poll(self) -> bytes | None:
        """The poll / keep-alive frame sent every poll interval in poll mode."""
        return None

    @property
    def poll_interval(self) -> float | None:
        """The dialect's own poll period in seconds; a panel entry's `poll_interval` overrides it."""
        return None

    def answers_poll(self, frame: F) -> bool:
        """Whether a frame counts as the panel answering (any frame, by default)."""
        return True


@dataclass(frozen=True, slots=True)
class Sample:
    """One thing a sensor said: a measured value, or a flag of its own (an alarm), or both."""

    device: str | None  # from the payload or topic; None: the source's topic rule decides
    point: str  # the sensor's own name for what it measured ("pressure", "level", "ch1")
    time: datetime | None  # the sensor's own time (dedupe is by device and this time)
    value: float | None = None
    unit: str | None = None
    flags: frozenset[str] = frozenset()  # the sensor's own alarms: "fire", "fault", "low"...


class MessageCodec(ABC):
    """An MQTT payload codec: one message in, samples out."""

    name: ClassVar[str]
    summary: ClassVar[str] = ""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    @abstractmethod
    def decode(self, payload: bytes, topic: str) -> list[Sample]:
        """Raises `CodecError` for a payload it cannot read."""


def unit_of(reading: Reading) -> DataUnit:
    """The reading as a data unit, with the objects' bytes the event ids are made from (an
    object's bytes include its time tag, so a resent frame gets the same ids)."""
    unit = decode_data_unit(encode_data_unit(reading.type_flag, reading.objects))
    assert unit is not None  # a non-empty unit of a known type decodes
    return unit
