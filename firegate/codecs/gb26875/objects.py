"""Information objects (spec §3), one dataclass per layout.

Field names follow `structs.BODIES` (the Construct definitions) one to one, plus
`description_raw` beside every decoded text and `time` (the trailing tag) for timed types.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from firegate.codecs.gb26875.tables import (
    ANALOG_SCALE,
    COMPONENT_STATUS_BITS,
    FACILITY_OPERATION_BITS,
    SYSTEM_STATUS_BITS,
    UITD_OPERATION_BITS,
    UITD_STATUS_BITS,
    AnalogType,
    ComponentType,
    SystemType,
    flag_names,
    name_of,
)
from firegate.codecs.gb26875.text import encode_text
from firegate.codecs.gb26875.timetag import TimeTag


@dataclass(frozen=True, slots=True)
class InfoObject:
    """Base of every information object."""

    STATUS_BITS: ClassVar[tuple[str, ...]] = ()
    OPERATION_BITS: ClassVar[tuple[str, ...]] = ()

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            name = f.name
            if name == "description_raw":
                continue
            if isinstance(value, TimeTag):
                out.update(value.json_fields(name))
            elif value is None and name == "time":
                continue
            else:
                out[name] = value
            if name == "system_type":
                out["system_type_name"] = name_of(SystemType, value)
            elif name == "component_type":
                out["component_type_name"] = name_of(ComponentType, value)
            elif name == "status":
                out["status_flags"] = list(flag_names(self.STATUS_BITS, value))
            elif name == "operation":
                out["operation_flags"] = list(flag_names(self.OPERATION_BITS, value))
            elif name == "analog_type":
                out["analog_type_name"] = name_of(AnalogType, value)
            elif name == "value" and isinstance(self, AnalogValue) and self.analog_type in ANALOG_SCALE:
                step, unit, _ = ANALOG_SCALE[self.analog_type]
                out["scaled_value"] = round(value * step, 6)
                out["unit"] = unit
        return out


class StatusBits:
    """Helpers shared by the status objects (types 1, 2, 21)."""

    __slots__ = ()
    STATUS_BITS: ClassVar[tuple[str, ...]]
    status: int

    @property
    def status_flags(self) -> tuple[str, ...]:
        return flag_names(self.STATUS_BITS, self.status)

    @property
    def fire(self) -> bool:
        return bool(self.status & 0b10)

    @property
    def fault(self) -> bool:
        return bool(self.status & 0b100)

    @property
    def test_mode(self) -> bool:
        """Bit 0 clear means test mode (§4). Field devices often send alarms so: never suppress on it."""
        return not self.status & 0b1


@dataclass(frozen=True, slots=True)
class SystemStatus(StatusBits, InfoObject):
    """Type 1: a building fire facility system's status."""

    STATUS_BITS: ClassVar[tuple[str, ...]] = SYSTEM_STATUS_BITS
    system_type: int
    system_address: int
    status: int
    time: TimeTag | None = None


@dataclass(frozen=True, slots=True)
class ComponentStatus(StatusBits, InfoObject):
    """Type 2: a component's running status, with its 31-byte GB18030 description."""

    STATUS_BITS: ClassVar[tuple[str, ...]] = COMPONENT_STATUS_BITS
    system_type: int
    system_address: int
    component_type: int
    component_address: int
    status: int
    description: str
    description_raw: bytes
    time: TimeTag | None = None

    @classmethod
    def make(
        cls,
        system_type: int,
        system_address: int,
        component_type: int,
        component_address: int,
        status: int,
        description: str,
        time: TimeTag | None,
    ) -> ComponentStatus:
        raw = encode_text(description, 31)
        return cls(
            system_type, system_address, component_type, component_address, status, description, raw, time
        )


@dataclass(frozen=True, slots=True)
class AnalogValue(InfoObject):
    """Type 3: a component's analog value; `value` is the raw int16, see `scaled`."""

    system_type: int
    system_address: int
    component_type: int
    component_address: int
    analog_type: int
    value: int
    time: TimeTag | None = None

    @property
    def scaled(self) -> tuple[float, str] | None:
        scale = ANALOG_SCALE.get(self.analog_type)
        return None if scale is None else (self.value * scale[0], scale[1])


@dataclass(frozen=True, slots=True)
class FacilityOperation(InfoObject):
    """Type 4: an operation recorded by a building fire facility."""

    OPERATION_BITS: ClassVar[tuple[str, ...]] = FACILITY_OPERATION_BITS
    system_type: int
    system_address: int
    operation: int
    operator_id: int
    time: TimeTag | None = None


@dataclass(frozen=True, slots=True)
class FacilitySoftwareVersion(InfoObject):
    """Type 5."""

    system_type: int
    system_address: int
    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class FacilitySystemConfig(InfoObject):
    """Type 6: a length-prefixed description (L is authoritative; the text may hold NULs)."""

    system_type: int
    system_address: int
    description: str
    description_raw: bytes


@dataclass(frozen=True, slots=True)
class ComponentConfig(InfoObject):
    """Type 7."""

    system_type: int
    system_address: int
    component_type: int
    component_address: int
    description: str
    description_raw: bytes


@dataclass(frozen=True, slots=True)
class FacilitySystemTime(InfoObject):
    """Type 8: the facility's clock."""

    system_type: int
    system_address: int
    time: TimeTag


@dataclass(frozen=True, slots=True)
class UitdStatus(StatusBits, InfoObject):
    """Type 21: the user information transmission device's own status."""

    STATUS_BITS: ClassVar[tuple[str, ...]] = UITD_STATUS_BITS
    status: int
    time: TimeTag | None = None


@dataclass(frozen=True, slots=True)
class UitdOperation(InfoObject):
    """Type 24: an operation on the UITD; bit 5 answers a duty check (查岗应答)."""

    OPERATION_BITS: ClassVar[tuple[str, ...]] = UITD_OPERATION_BITS
    operation: int
    operator_id: int
    time: TimeTag | None = None

    @property
    def duty_check_answered(self) -> bool:
        return bool(self.operation & 0b100000)


@dataclass(frozen=True, slots=True)
class UitdSoftwareVersion(InfoObject):
    """Type 25."""

    major: int
    minor: int


@dataclass(frozen=True, slots=True)
class UitdConfig(InfoObject):
    """Type 26."""

    description: str
    description_raw: bytes


@dataclass(frozen=True, slots=True)
class UitdSystemTime(InfoObject):
    """Type 28."""

    time: TimeTag


@dataclass(frozen=True, slots=True)
class SystemRef(InfoObject):
    """Reads 61, 65, 66, 68: which facility system to read."""

    system_type: int
    system_address: int


@dataclass(frozen=True, slots=True)
class ComponentRef(InfoObject):
    """Reads 62, 63, 67 (no component-type byte, §3)."""

    system_type: int
    system_address: int
    component_address: int


@dataclass(frozen=True, slots=True)
class OperationRecordsQuery(InfoObject):
    """Read 64: `record_count` records from `start_time`."""

    system_type: int
    system_address: int
    record_count: int
    start_time: TimeTag


@dataclass(frozen=True, slots=True)
class UitdOperationRecordsQuery(InfoObject):
    """Read 84."""

    record_count: int
    start_time: TimeTag


@dataclass(frozen=True, slots=True)
class Reserved(InfoObject):
    """81, 85, 86, 88, 89: a single reserved byte (0)."""

    reserved: int = 0


@dataclass(frozen=True, slots=True)
class ClockSync(InfoObject):
    """Type 90: the center's time for the UITD."""

    time: TimeTag


@dataclass(frozen=True, slots=True)
class DutyCheck(InfoObject):
    """Type 91 (查岗): the answer window in minutes (STD Fig. 46, D7)."""

    timeout_minutes: int


OBJECT_CLASSES: dict[int, type[InfoObject]] = {
    1: SystemStatus,
    2: ComponentStatus,
    3: AnalogValue,
    4: FacilityOperation,
    5: FacilitySoftwareVersion,
    6: FacilitySystemConfig,
    7: ComponentConfig,
    8: FacilitySystemTime,
    21: UitdStatus,
    24: UitdOperation,
    25: UitdSoftwareVersion,
    26: UitdConfig,
    28: UitdSystemTime,
    61: SystemRef,
    62: ComponentRef,
    63: ComponentRef,
    64: OperationRecordsQuery,
    65: SystemRef,
    66: SystemRef,
    67: ComponentRef,
    68: SystemRef,
    81: Reserved,
    84: UitdOperationRecordsQuery,
    85: Reserved,
    86: Reserved,
    88: Reserved,
    89: Reserved,
    90: ClockSync,
    91: DutyCheck,
}
