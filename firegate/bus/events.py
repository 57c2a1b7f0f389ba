"""Typed events: a common envelope plus one model per kind (design.md "Events").

Subjects are `fire.<kind>.<device>`; the id is deterministic from what the device said, so a
retransmitted frame yields the same id and JetStream's duplicate window drops it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 1
Kind = Literal["alarm", "fault", "status", "operation", "device", "confirmed", "dismissed"]


def event_id(device: str, type_flag: int, object_bytes: bytes, suffix: str) -> str:
    """device + type flag + digest of the object's own bytes (which include its time tag).

    Never the header serial or header time: serials restart on every connection (spec §7).
    `suffix` separates the several events one object can yield (a fire and a fault at once).
    """
    digest = hashlib.blake2b(object_bytes, digest_size=10).hexdigest()
    return f"{device}.{type_flag}.{digest}.{suffix}"


class Point(BaseModel):
    """Where in the building: the facility system and, when known, the component."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    system_type: int | None = None
    system_type_name: str | None = None
    system_type_zh: str | None = None
    system_address: int | None = None
    component_type: int | None = None
    component_type_name: str | None = None
    component_type_zh: str | None = None
    component_address: int | None = None
    description: str | None = None
    location: str | None = Field(None, description="human location from the site registry")


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = SCHEMA_VERSION
    id: str
    kind: Kind
    type: str
    device: str = Field(description="UITD: decimal of its 6-byte LE address; panels/sensors: configured id")
    site: str
    occurred_at: datetime | None = Field(description="the device's time tag (local time, no zone)")
    received_at: datetime = Field(description="when firegate received it (UTC)")
    origin: str = Field("gb26875", description="gb26875, serial:<dialect>, mqtt:<codec>")
    raw: str | None = Field(None, description="the frame as hex")
    test: bool = Field(False, description="the device reported test mode (status bit 0 clear)")

    @property
    def subject(self) -> str:
        return f"fire.{self.kind}.{self.device}"


class FireAlarm(Envelope):
    kind: Literal["alarm"] = "alarm"
    type: Literal["fire_alarm"] = "fire_alarm"
    source: Literal["system", "component", "uitd", "operation", "panel", "sensor"]
    point: Point
    status: int | None = None
    status_flags: list[str] = []
    manual: bool = Field(False, description="a manual call point or the UITD's manual alarm")


class FaultRaised(Envelope):
    kind: Literal["fault"] = "fault"
    type: Literal["fault_raised"] = "fault_raised"
    condition: str = Field(description="fault, main_power_fault, bus_fault, ...")
    condition_zh: str | None = None
    point: Point


class FaultCleared(Envelope):
    kind: Literal["fault"] = "fault"
    type: Literal["fault_cleared"] = "fault_cleared"
    condition: str
    condition_zh: str | None = None
    point: Point
    duration_s: float | None = Field(None, description="time since it was raised, when known")


class StatusChanged(Envelope):
    kind: Literal["status"] = "status"
    type: Literal["status_changed"] = "status_changed"
    point: Point
    status: int
    status_flags: list[str]
    set: list[str]
    cleared: list[str]


class AnalogReading(Envelope):
    kind: Literal["status"] = "status"
    type: Literal["analog_value"] = "analog_value"
    point: Point
    analog_type: int
    analog_type_name: str
    analog_type_zh: str | None = None
    value: int = Field(description="raw int16")
    scaled_value: float | None = None
    unit: str | None = None


class Operation(Envelope):
    kind: Literal["operation"] = "operation"
    type: Literal["operation"] = "operation"
    point: Point
    operation: int
    operation_flags: list[str]
    operator_id: int


class DeviceInfo(Envelope):
    """Versions, configuration and clocks the device uploaded or returned to a read."""

    kind: Literal["status"] = "status"
    type: Literal["device_info"] = "device_info"
    info_type: int
    info_type_name: str
    info_type_zh: str | None = None
    point: Point
    data: dict[str, object]


class DeviceOnline(Envelope):
    kind: Literal["device"] = "device"
    type: Literal["device_online"] = "device_online"
    peer: str | None = None
    outage_s: float | None = Field(None, description="how long it was offline, if it was")


class DeviceOffline(Envelope):
    kind: Literal["device"] = "device"
    type: Literal["device_offline"] = "device_offline"
    last_seen: datetime
    silent_s: float


class DutyCheckResult(Envelope):
    kind: Literal["device"] = "device"
    type: Literal["duty_check_result"] = "duty_check_result"
    answered: bool
    after_s: float | None = None
    window_s: float


Event = Annotated[
    FireAlarm
    | FaultRaised
    | FaultCleared
    | StatusChanged
    | AnalogReading
    | Operation
    | DeviceInfo
    | DeviceOnline
    | DeviceOffline
    | DutyCheckResult,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_MODELS: tuple[type[Envelope], ...] = (
    FireAlarm,
    FaultRaised,
    FaultCleared,
    StatusChanged,
    AnalogReading,
    Operation,
    DeviceInfo,
    DeviceOnline,
    DeviceOffline,
    DutyCheckResult,
)


def parse_event(data: bytes | str) -> Envelope:
    result: Envelope = EVENT_ADAPTER.validate_json(data)
    return result
