"""What a simulated UITD says: a small fixed building, the data units per traffic kind, and the
replies to the center's reads (spec §3). Pure functions over the codec, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from firegate.codecs.gb26875 import (
    READ_REPLY_TYPE,
    AnalogValue,
    ComponentConfig,
    ComponentRef,
    ComponentStatus,
    DataUnit,
    FacilityOperation,
    FacilitySoftwareVersion,
    FacilitySystemConfig,
    FacilitySystemTime,
    InfoObject,
    OperationRecordsQuery,
    SystemRef,
    SystemStatus,
    TimeTag,
    UitdConfig,
    UitdOperation,
    UitdOperationRecordsQuery,
    UitdSoftwareVersion,
    UitdStatus,
    UitdSystemTime,
    encode_data_unit,
)
from firegate.codecs.gb26875.tables import FAULT_BIT, FIRE_BIT, NORMAL_BIT
from firegate.codecs.gb26875.text import encode_text


class Kind(StrEnum):
    """Traffic kinds. The mix kinds can be generated at random; the others are internal."""

    FIRE = "fire"  # type 2, a detector with the fire bit
    MANUAL = "manual"  # type 2, a manual call point with the fire bit
    FAULT = "fault"  # type 2, a fault; alternates with its clearing on the same device
    CLEAR = "clear"  # type 2, the active fault cleared (component back to normal)
    STATUS = "status"  # type 1, the fire alarm system's status
    UITD = "uitd"  # type 21, the UITD's own status
    ANALOG = "analog"  # type 3, an analog value
    MAIN_POWER = "main_power"  # type 21, the UITD's main power failed (bit 3; a district blackout)
    BACKUP_POWER = "backup_power"  # type 21, the UITD's backup power failed (bit 4)
    HEARTBEAT = "heartbeat"  # cmd 2 with an empty data unit
    DUTY = "duty"  # type 24 bit 5, the answer to a duty check (查岗应答)
    CUSTOM = "custom"  # caller-supplied data unit


MIX_KINDS: tuple[Kind, ...] = (
    Kind.FIRE,
    Kind.MANUAL,
    Kind.FAULT,
    Kind.CLEAR,
    Kind.STATUS,
    Kind.UITD,
    Kind.ANALOG,
    Kind.MAIN_POWER,
    Kind.BACKUP_POWER,
    Kind.HEARTBEAT,
)
URGENT_KINDS = frozenset({Kind.FIRE, Kind.MANUAL})  # GB 26875.1 §4.1.2.3: fire goes first

FIRE_ALARM_SYSTEM = (1, 1)  # (system type, system address): the building's fire alarm system
SELF_TEST = 1 << 4  # UITD operation bit 4 (自检)
DUTY_ANSWERED = 1 << 5  # UITD operation bit 5 (查岗应答)
MAIN_POWER_FAULT = 1 << 3  # UITD status bit 3 (主电故障)
BACKUP_POWER_FAULT = 1 << 4  # UITD status bit 4 (备电故障)
POWER_FAULT_BITS = {Kind.MAIN_POWER: MAIN_POWER_FAULT, Kind.BACKUP_POWER: BACKUP_POWER_FAULT}


class Component(NamedTuple):
    system: tuple[int, int]
    type: int
    address: int  # uint32: zone in the low 16 bits, point in the high 16 (the VEN convention)
    description: str
    analog_type: int  # 0: none
    analog_base: int  # raw value around which readings vary


def _addr(zone: int, point: int) -> int:
    return zone | point << 16


HYDRANT = (11, 1)
BUILDING: tuple[Component, ...] = (
    Component(FIRE_ALARM_SYSTEM, 42, _addr(1, 1), "1F大厅光电感烟", 0, 0),
    Component(FIRE_ALARM_SYSTEM, 42, _addr(1, 2), "1F走廊光电感烟", 0, 0),
    Component(FIRE_ALARM_SYSTEM, 42, _addr(2, 1), "2F办公室光电感烟", 0, 0),
    Component(FIRE_ALARM_SYSTEM, 31, _addr(2, 2), "2F厨房点型感温", 3, 250),  # 25.0 °C
    Component(FIRE_ALARM_SYSTEM, 23, _addr(1, 3), "1F东出口手动报警按钮", 0, 0),
    Component(FIRE_ALARM_SYSTEM, 23, _addr(2, 3), "2F西楼梯手动报警按钮", 0, 0),
    Component(FIRE_ALARM_SYSTEM, 24, _addr(2, 4), "2F消火栓按钮", 0, 0),
    Component(HYDRANT, 99, _addr(3, 1), "泵房压力开关", 5, 3500),  # 350.0 kPa
    Component(HYDRANT, 92, _addr(3, 2), "屋顶消防水箱", 2, 320),  # 3.20 m
    Component(HYDRANT, 91, _addr(3, 3), "泵房消防水泵", 8, 3800),  # 380.0 V
)
DETECTORS = tuple(i for i, c in enumerate(BUILDING) if c.type in (42, 31))
CALL_POINTS = tuple(i for i, c in enumerate(BUILDING) if c.type == 23)
ANALOG_POINTS = tuple(i for i, c in enumerate(BUILDING) if c.analog_type)
_BY_ADDRESS = {(c.system, c.address): i for i, c in enumerate(BUILDING)}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The device state a reply to a read is built from."""

    now: TimeTag
    started: TimeTag
    fire: int  # BUILDING index of the component in fire, or -1
    fault: int  # BUILDING index of the faulty component, or -1
    uitd_status: int
    software_version: tuple[int, int]
    description: str
    operations: tuple[UitdOperation, ...]


def component_status(index: int, fire: int, fault: int) -> int:
    status = NORMAL_BIT
    if index == fire:
        status |= FIRE_BIT
    if index == fault:
        status |= FAULT_BIT
    return status


def system_status(fire: int, fault: int) -> int:
    return NORMAL_BIT | (FIRE_BIT if fire >= 0 else 0) | (FAULT_BIT if fault >= 0 else 0)


def component_unit(index: int, status: int, tag: TimeTag) -> bytes:
    c = BUILDING[index]
    obj = ComponentStatus.make(c.system[0], c.system[1], c.type, c.address, status, c.description, tag)
    return encode_data_unit(2, [obj])


def system_unit(status: int, tag: TimeTag) -> bytes:
    return encode_data_unit(1, [SystemStatus(*FIRE_ALARM_SYSTEM, status, tag)])


def uitd_unit(status: int, tag: TimeTag) -> bytes:
    return encode_data_unit(21, [UitdStatus(status, tag)])


def analog_object(index: int, rng: random.Random, tag: TimeTag) -> AnalogValue:
    c = BUILDING[index]
    base = c.analog_base
    value = base + rng.randint(-base // 20, base // 20) if base else 0
    return AnalogValue(c.system[0], c.system[1], c.type, c.address, c.analog_type, value, tag)


def analog_unit(rng: random.Random, tag: TimeTag) -> bytes:
    return encode_data_unit(3, [analog_object(rng.choice(ANALOG_POINTS), rng, tag)])


def duty_answer_unit(operator_id: int, tag: TimeTag) -> tuple[UitdOperation, bytes]:
    op = UitdOperation(DUTY_ANSWERED, operator_id, tag)
    return op, encode_data_unit(24, [op])


def _system_objects(refs: tuple[InfoObject, ...], snap: Snapshot, reply: int) -> list[InfoObject]:
    out: list[InfoObject] = []
    for ref in refs:
        if not isinstance(ref, SystemRef):
            continue
        st, sa = ref.system_type, ref.system_address
        if reply == 1:
            ours = (st, sa) == FIRE_ALARM_SYSTEM
            status = system_status(snap.fire, snap.fault) if ours else NORMAL_BIT
            out.append(SystemStatus(st, sa, status, snap.now))
        elif reply == 5:
            out.append(FacilitySoftwareVersion(st, sa, 2, 3))
        elif reply == 6:
            text = "JB-QB-GST200 火灾报警控制器"
            out.append(FacilitySystemConfig(st, sa, text, encode_text(text, None)))
        elif reply == 8:
            out.append(FacilitySystemTime(st, sa, snap.now))
    return out


def _component_objects(
    refs: tuple[InfoObject, ...], snap: Snapshot, reply: int, rng: random.Random
) -> list[InfoObject]:
    out: list[InfoObject] = []
    for ref in refs:
        if not isinstance(ref, ComponentRef):
            continue
        system = (ref.system_type, ref.system_address)
        index = _BY_ADDRESS.get((system, ref.component_address), -1)
        ctype = BUILDING[index].type if index >= 0 else 0
        text = BUILDING[index].description if index >= 0 else "未配置部件"
        if reply == 2:
            status = component_status(index, snap.fire, snap.fault) if index >= 0 else NORMAL_BIT
            out.append(ComponentStatus.make(*system, ctype, ref.component_address, status, text, snap.now))
        elif reply == 3:
            if index >= 0 and BUILDING[index].analog_type:
                out.append(analog_object(index, rng, snap.now))
            else:
                out.append(AnalogValue(*system, ctype, ref.component_address, 0, 0, snap.now))
        elif reply == 7:
            out.append(ComponentConfig(*system, ctype, ref.component_address, text, encode_text(text, 31)))
    return out


def _since(tag: TimeTag, start: TimeTag) -> bool:
    return start.value is None or tag.value is None or tag.value >= start.value


def read_reply(unit: DataUnit, snap: Snapshot, rng: random.Random) -> bytes | None:
    """The reply data unit (cmd 5) to a read request (cmd 4), or None when it is not a read."""
    reply = READ_REPLY_TYPE.get(unit.type)
    if reply is None:
        return None
    objs: list[InfoObject]
    if reply in (1, 5, 6, 8):
        objs = _system_objects(unit.objects, snap, reply)
    elif reply in (2, 3, 7):
        objs = _component_objects(unit.objects, snap, reply, rng)
    elif reply == 4:
        query = unit.objects[0] if unit.objects else None
        if not isinstance(query, OperationRecordsQuery):
            return None
        op = FacilityOperation(query.system_type, query.system_address, 1, 1, snap.started)  # a reset
        objs = [op] if query.record_count and _since(snap.started, query.start_time) else []
    elif reply == 21:
        objs = [UitdStatus(snap.uitd_status, snap.now)]
    elif reply == 24:
        query = unit.objects[0] if unit.objects else None
        if not isinstance(query, UitdOperationRecordsQuery):
            return None
        # a device that has recorded nothing yet reports its self-test at start-up
        ops = snap.operations or (UitdOperation(SELF_TEST, 0, snap.started),)
        kept = [op for op in ops if op.time is None or _since(op.time, query.start_time)]
        objs = list(kept[-query.record_count :] if query.record_count else [])
    elif reply == 25:
        objs = [UitdSoftwareVersion(*snap.software_version)]
    elif reply == 26:
        objs = [UitdConfig(snap.description, encode_text(snap.description, None))]
    elif reply == 28:
        objs = [UitdSystemTime(snap.now)]
    else:
        return None
    if not objs and reply not in (4, 24):
        return None  # nothing the request named can be read: deny
    return encode_data_unit(reply, objs)
