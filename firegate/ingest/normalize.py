"""The standard's information objects -> typed events, for every input.

A UITD's data units, a panel dialect's and a sensor codec's are all mapped onto GB/T 26875.3's
information objects, so this one normalizer serves them all. Fire (`priority.is_fire`) is a fire
alarm every time (never edge-suppressed; the id dedupes retransmissions). Faults and other status
bits are edge-detected against the last known state per point, so a repeated status raises
nothing new. The new state is returned with
the events and must be committed only after the events are durably stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from firegate.bus.events import (
    AnalogReading,
    DeviceInfo,
    Envelope,
    FaultCleared,
    FaultRaised,
    FireAlarm,
    Operation,
    Point,
    StatusChanged,
    event_id,
)
from firegate.bus.kvmemory import PointState, StatusMemory
from firegate.codecs.gb26875 import (
    AnalogValue,
    ComponentStatus,
    DataUnit,
    FacilityOperation,
    InfoObject,
    SystemStatus,
    UitdOperation,
    UitdStatus,
)
from firegate.codecs.gb26875.dataunit import object_bytes
from firegate.codecs.gb26875.tables import (
    ANALOG_SCALE,
    BIT_ZH,
    AnalogType,
    ComponentType,
    SystemType,
    TypeFlag,
    flag_names,
    name_of,
    zh_of,
)
from firegate.codecs.gb26875.timetag import TimeTag
from firegate.devicetime import device_now, device_time
from firegate.ingest.priority import UITD_MANUAL_ALARM, is_fire

# Status bits that are faults (raised/cleared), per object kind; the rest are plain status.
FAULT_CONDITIONS: dict[type[InfoObject], tuple[str, ...]] = {
    SystemStatus: ("fault", "main_power_fault", "backup_power_fault", "bus_fault"),
    ComponentStatus: ("fault", "power_fault"),
    UitdStatus: (
        "fault",
        "main_power_fault",
        "backup_power_fault",
        "center_link_fault",
        "monitor_line_fault",
    ),
}
MANUAL_CALL_POINT = 23
AlarmSource = Literal["system", "component", "uitd"]
_SOURCES: dict[type[InfoObject], AlarmSource] = {
    SystemStatus: "system",
    ComponentStatus: "component",
    UitdStatus: "uitd",
}


@dataclass(slots=True)
class Normalized:
    events: list[Envelope] = field(default_factory=list)
    states: dict[str, PointState] = field(default_factory=dict)


def point_key(device: str, type_flag: int, obj: InfoObject) -> str:
    parts = [device, str(type_flag)]
    for name in ("system_type", "system_address", "component_type", "component_address"):
        parts.append(str(getattr(obj, name, "-")))
    return ".".join(parts)


LocationLookup = Callable[[str, int, int, int], str | None]


def _point(device: str, obj: InfoObject, location_of: LocationLookup | None) -> Point:
    st = getattr(obj, "system_type", None)
    sa = getattr(obj, "system_address", None)
    ct = getattr(obj, "component_type", None)
    ca = getattr(obj, "component_address", None)
    location = None
    if location_of is not None and st is not None and sa is not None and ca is not None:
        location = location_of(device, st, sa, ca)
    return Point(
        system_type=st,
        system_type_name=name_of(SystemType, st) if st is not None else None,
        system_type_zh=zh_of(SystemType, st) if st is not None else None,
        system_address=sa,
        component_type=ct,
        component_type_name=name_of(ComponentType, ct) if ct is not None else None,
        component_type_zh=zh_of(ComponentType, ct) if ct is not None else None,
        component_address=ca,
        description=getattr(obj, "description", None),
        location=location,
    )


def _occurred(obj: InfoObject, frame_time: datetime | None) -> datetime | None:
    """The object's own time tag, else the frame's, read in the device time zone."""
    tag = getattr(obj, "time", None)
    if isinstance(tag, TimeTag) and tag.value is not None:
        return device_time(tag.value)
    return device_time(frame_time)


def _aware(value: datetime) -> datetime:
    aware = device_time(value)
    assert aware is not None
    return aware


class Normalizer:
    def __init__(
        self,
        memory: StatusMemory,
        *,
        site_of: Callable[[str], str] | None = None,
        location_of: LocationLookup | None = None,
        origin: str = "gb26875",
    ) -> None:
        self.memory = memory
        self.site_of = site_of or (lambda device: device)  # unregistered: a site of its own
        self.location_of = location_of
        self.origin = origin

    async def normalize(
        self,
        device: str,
        unit: DataUnit,
        *,
        frame_time: datetime | None,
        raw: bytes,
        received_at: datetime | None = None,
        origin: str | None = None,
    ) -> Normalized:
        """``frame_time``: when the device says it sent the whole report (objects without a
        time tag of their own take it); ``raw``: the report as received, kept in the events."""
        received = received_at or datetime.now(UTC)
        site = self.site_of(device)
        raw_hex = raw.hex()
        out = Normalized()
        spans = object_bytes(unit)
        status_keys = [
            point_key(device, unit.type, obj)
            for obj in unit.objects
            if isinstance(obj, SystemStatus | ComponentStatus | UitdStatus)
        ]
        known = await self.memory.get_many(status_keys) if status_keys else {}
        common: dict[str, Any] = {
            "device": device,
            "site": site,
            "received_at": received,
            "origin": origin or self.origin,
            "raw": raw_hex,
        }
        for obj, own in zip(unit.objects, spans, strict=True):
            occurred = _occurred(obj, frame_time)
            point = _point(device, obj, self.location_of)

            def eid(suffix: str, obj_bytes: bytes = own) -> str:
                return event_id(device, unit.type, obj_bytes, suffix)

            if isinstance(obj, SystemStatus | ComponentStatus | UitdStatus):
                self._status(out, obj, unit.type, point, occurred, known, eid, common)
            elif isinstance(obj, AnalogValue):
                scale = ANALOG_SCALE.get(obj.analog_type)
                out.events.append(
                    AnalogReading(
                        id=eid("analog"),
                        occurred_at=occurred,
                        point=point,
                        analog_type=obj.analog_type,
                        analog_type_name=name_of(AnalogType, obj.analog_type),
                        analog_type_zh=zh_of(AnalogType, obj.analog_type),
                        value=obj.value,
                        scaled_value=round(obj.value * scale[0], 6) if scale else None,
                        unit=scale[1] if scale else None,
                        **common,
                    )
                )
            elif isinstance(obj, FacilityOperation | UitdOperation):
                flags = list(flag_names(obj.OPERATION_BITS, obj.operation))
                out.events.append(
                    Operation(
                        id=eid("operation"),
                        occurred_at=occurred,
                        point=point,
                        operation=obj.operation,
                        operation_flags=flags,
                        operator_id=obj.operator_id,
                        **common,
                    )
                )
                if isinstance(obj, UitdOperation) and obj.operation & UITD_MANUAL_ALARM:
                    # the UITD's own manual alarm key is a fire alarm (GB 26875.1 4.1.2)
                    out.events.append(
                        FireAlarm(
                            id=eid("alarm"),
                            occurred_at=occurred,
                            point=point,
                            source="operation",
                            manual=True,
                            **common,
                        )
                    )
            else:
                data = obj.json()
                data.pop("description_raw", None)
                out.events.append(
                    DeviceInfo(
                        id=eid("info"),
                        occurred_at=occurred,
                        point=point,
                        info_type=unit.type,
                        info_type_name=name_of(TypeFlag, unit.type),
                        info_type_zh=zh_of(TypeFlag, unit.type),
                        data=data,
                        **common,
                    )
                )
        return out

    def _status(
        self,
        out: Normalized,
        obj: SystemStatus | ComponentStatus | UitdStatus,
        type_flag: int,
        point: Point,
        occurred: datetime | None,
        known: dict[str, PointState],
        eid: Callable[[str], str],
        common: dict[str, Any],
    ) -> None:
        device = str(common["device"])
        key = point_key(device, type_flag, obj)
        test = obj.test_mode
        flags = obj.status_flags
        names = obj.STATUS_BITS
        if is_fire(obj):
            source: AlarmSource = _SOURCES[type(obj)]
            manual = isinstance(obj, ComponentStatus) and obj.component_type == MANUAL_CALL_POINT
            out.events.append(
                FireAlarm(
                    id=eid("alarm"),
                    occurred_at=occurred,
                    point=point,
                    source=source,
                    status=obj.status,
                    status_flags=list(flags),
                    manual=manual,
                    test=test,
                    **common,
                )
            )
        previous = out.states.get(key) or known.get(key)
        before = previous.status if previous else 0b1  # first sight: assume normal
        now = occurred or device_now()
        faults = FAULT_CONDITIONS[type(obj)]
        for condition in faults:
            bit = 1 << names.index(condition)
            if obj.status & bit and not before & bit:
                out.events.append(
                    FaultRaised(
                        id=eid(f"raised.{condition}"),
                        occurred_at=occurred,
                        condition=condition,
                        condition_zh=BIT_ZH.get(condition),
                        point=point,
                        test=test,
                        **common,
                    )
                )
            elif before & bit and not obj.status & bit:
                # a state stored by an older firegate has a naive time: the device's, in its zone
                duration = (now - _aware(previous.since)).total_seconds() if previous else None
                out.events.append(
                    FaultCleared(
                        id=eid(f"cleared.{condition}"),
                        occurred_at=occurred,
                        condition=condition,
                        condition_zh=BIT_ZH.get(condition),
                        point=point,
                        duration_s=duration,
                        test=test,
                        **common,
                    )
                )
        # other bits (disabled, supervisory, started, feedback, ...): one change event
        ignore = sum(1 << names.index(c) for c in faults) | 0b10
        changed = (obj.status ^ before) & ~ignore
        if changed:
            out.events.append(
                StatusChanged(
                    id=eid("status"),
                    occurred_at=occurred,
                    point=point,
                    status=obj.status,
                    status_flags=list(flags),
                    set=list(flag_names(names, changed & obj.status)),
                    cleared=list(flag_names(names, changed & before)),
                    test=test,
                    **common,
                )
            )
        if previous is None or previous.status != obj.status:
            out.states[key] = PointState(obj.status, now)
