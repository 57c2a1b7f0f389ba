"""Typed events: a common envelope plus one model per kind.

Subjects are `fire.<kind>.<device>`; the id is deterministic from what the device said, so a
retransmitted frame yields the same id and JetStream's duplicate window drops it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter

from firegate.devicetime import as_utc, device_time

SCHEMA_VERSION = 1
# Every time firegate writes carries its offset, so no reader has to guess a zone. A device's
# time tag has none: it is read in the device time zone (gb26875.device_timezone), also when an
# event stored by an older firegate is read back; a time firegate took itself is UTC.
DeviceTime = Annotated[datetime, AfterValidator(device_time)]
UtcTime = Annotated[datetime, AfterValidator(as_utc)]
Kind = Literal["alarm", "fault", "status", "telemetry", "operation", "device", "confirmed", "dismissed"]


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
    occurred_at: DeviceTime | None = Field(
        description="the device's time tag, in the device time zone with its offset (+08:00)"
    )
    received_at: UtcTime = Field(description="when firegate received it (UTC)")
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
    kind: Literal["telemetry"] = "telemetry"
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

    kind: Literal["telemetry"] = "telemetry"
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
    last_seen: UtcTime
    silent_s: float


class DeviceRefused(Envelope):
    """Frames the site registry does not admit (``gb26875.registry_policy: reject``, or a source
    network a registered device may not use): not confirmed, the connection closed. Kept so that
    a real fire from a newly installed, unregistered device is seen rather than lost quietly."""

    kind: Literal["device"] = "device"
    type: Literal["device_refused"] = "device_refused"
    peer: str | None = None
    reason: Literal["unknown_device", "wrong_network"]
    fire: bool = Field(description="the refused frame carried a fire alarm")


class DutyCheckResult(Envelope):
    kind: Literal["device"] = "device"
    type: Literal["duty_check_result"] = "duty_check_result"
    answered: bool
    after_s: float | None = None
    window_s: float


class SiteInfo(BaseModel):
    """The monitored unit (联网单位) from the site registry: what a 119 dispatcher needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    registered: bool = Field(
        description="false: the device is not in the site registry (a site of its own): only `id` is "
        "known; call the monitoring center named in `center`"
    )
    unit: str | None = Field(None, description="单位名称")
    address: str | None = None
    lat: float | None = None
    lon: float | None = None
    phone: str | None = None
    building: str | None = None


class CenterInfo(BaseModel):
    """The monitoring center that sends the body (config ``center``): whom the 119 side calls back."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str | None = Field(None, description="the center's id (e.g. its code with the fire service)")
    name: str | None = Field(None, description="the center's name (监控中心名称)")
    phone: str | None = Field(None, description="the center's 24-hour duty phone")


LocationSource = Literal["registry", "device"]


class IncidentAlarm(BaseModel):
    """One fire alarm of an incident, as the 119 side sees it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(description="the fire_alarm event id")
    device: str
    occurred_at: DeviceTime | None = Field(
        description="the device's time tag, in the device time zone with its offset (+08:00)"
    )
    received_at: UtcTime = Field(description="when firegate received the alarm (UTC)")
    source: str
    manual: bool
    point: Point
    location: str | None = Field(
        None,
        description="where, to show a dispatcher: the registry's point-table location (`point.location`) "
        "when the registry has the point, else the device's own description (`point.description`)",
    )
    location_source: LocationSource | None = Field(
        None, description="which one `location` is: `registry` or `device`; null when neither is known"
    )
    added_in: int | None = Field(None, description="the `update` that first carried this alarm")


IncidentStatus = Literal["confirmed"]
Confirmation = Literal["operator", "policy"]


class IncidentReport(BaseModel):
    """A confirmed fire as delivered to the 119 dispatch system (the POST body, versioned).

    Each update of an incident is a whole snapshot with a higher ``update``; the
    ``Idempotency-Key`` is ``<incident_id>:<update>``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    incident_schema: Literal["firegate.incident/1"] = Field(
        "firegate.incident/1", description="the payload's schema and version (docs/schemas/incident.json)"
    )
    incident_id: str
    update: int = Field(ge=1, description="1 for the first confirmation; later alarms add updates")
    status: IncidentStatus = "confirmed"
    center: CenterInfo = Field(
        default_factory=CenterInfo, description="the monitoring center sending this (config `center`)"
    )
    site: SiteInfo
    alarms: list[IncidentAlarm] = Field(
        description="the incident's confirmed alarms, oldest first; of more than 20, the first 10 and the "
        "newest 10 (`alarms_omitted` says how many are left out)"
    )
    alarm_count: int | None = Field(
        None, description="the incident's confirmed alarms, whether listed in `alarms` or not"
    )
    alarms_omitted: int = Field(0, description="confirmed alarms left out of `alarms` to bound the body")
    new_alarm_ids: list[str] = Field(
        default_factory=list,
        description="the alarms new in this update, since the previous one (update 1: every alarm it "
        "confirmed); listed in `alarms` unless omitted",
    )
    first_alarm_at: UtcTime = Field(description="when firegate received the incident's first alarm (UTC)")
    confirmed_at: UtcTime = Field(description="when the incident was confirmed (UTC); the same in updates")
    confirmed_by: str = Field(description="the operator, or policy:<name>")
    confirmed_by_user: str | None = Field(
        None,
        description="the NATS user that sent the confirmation, as `<account>/<user>`, attested by the NATS "
        "server; null for a policy, or where the server attests none (docs/operator-guide.md)",
    )
    confirmation: Confirmation
    note: str | None = None
    test: bool = Field(
        False, description="the devices were in test mode: an exercise confirmed by an operator, not a fire"
    )

    @property
    def idempotency_key(self) -> str:
        return f"{self.incident_id}:{self.update}"


class FireConfirmed(Envelope):
    """An incident confirmed as a real fire, or a confirmed incident updated by a later alarm."""

    kind: Literal["confirmed"] = "confirmed"
    type: Literal["fire_confirmed"] = "fire_confirmed"
    incident: IncidentReport
    alarm_ids: list[str] = Field(description="the alarms this update confirmed")
    after_s: float = Field(description="time from the incident's first alarm to this confirmation")

    @property
    def subject(self) -> str:
        """``fire.confirmed.<site>``: an incident's events name its site, which every alarm of it
        carries (`device` is only the device of its first alarm)."""
        return f"fire.{self.kind}.{self.site}"


class FireDismissed(Envelope):
    """Alarms closed without reaching 119: false alarm, test, or a duplicate merged into another."""

    kind: Literal["dismissed"] = "dismissed"
    type: Literal["fire_dismissed"] = "fire_dismissed"
    incident_id: str
    alarm_ids: list[str]
    reason: Literal["false", "test", "duplicate"]
    dismissed_by: str = Field(description="the operator, or policy:<name>")
    dismissed_by_user: str | None = Field(
        None,
        description="the NATS user that sent the dismissal (`<account>/<user>`), attested by the NATS server",
    )
    merged_into: str | None = Field(None, description="duplicate: the alarm it repeats")
    after_s: float = Field(description="time from the incident's first alarm to this decision")
    note: str | None = None

    @property
    def subject(self) -> str:
        """``fire.dismissed.<site>``, as `FireConfirmed`."""
        return f"fire.{self.kind}.{self.site}"


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
    | DeviceRefused
    | DutyCheckResult
    | FireConfirmed
    | FireDismissed,
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
    DeviceRefused,
    DutyCheckResult,
    FireConfirmed,
    FireDismissed,
)


def parse_event(data: bytes | str) -> Envelope:
    result: Envelope = EVENT_ADAPTER.validate_json(data)
    return result
