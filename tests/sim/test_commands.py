"""SimulatedUitd downstream: control commands (89, 90, 91), reads (cmd 4 -> cmd 5), denies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from firegate.codecs.gb26875 import (
    READ_REPLY_TYPE,
    ClockSync,
    ComponentRef,
    ComponentStatus,
    DutyCheck,
    InfoObject,
    OperationRecordsQuery,
    Reserved,
    SystemRef,
    TimeTag,
    UitdOperation,
    UitdOperationRecordsQuery,
    UitdStatus,
    UitdSystemTime,
    build_frame,
)
from firegate.devicetime import device_now
from firegate.sim import DeviceSettings, SimulatedUitd
from firegate.sim.payloads import BUILDING
from tests.sim.center import Center, Received
from tests.sim.test_device import FAST, HOST

DEVICE = 889


@asynccontextmanager
async def pair(**changes: Any) -> AsyncIterator[tuple[Center, SimulatedUitd, int]]:
    """A center and one connected device that has announced itself; yields the connection id."""
    settings = replace(FAST, heartbeat_on_connect=True, **changes)
    async with Center() as center, SimulatedUitd(DEVICE, HOST, center.port, settings=settings) as dev:
        hello = await center.wait_for(lambda r: r.frame.is_heartbeat)
        yield center, dev, hello.conn


def answer_to(serial: int, command: int | None = None) -> Any:
    def match(r: Received) -> bool:
        f = r.frame
        return f.command in (3, 5, 6) and f.serial == serial and (command is None or f.command == command)

    return match


async def test_duty_check_confirmed_then_answered_after_the_delay() -> None:
    async with pair(duty_answer_delay=0.3) as (center, dev, conn):
        serial, _ = center.command(conn, 91, [DutyCheck(10)])
        confirm = await center.wait_for(answer_to(serial))
        assert confirm.frame.command == 3 and confirm.frame.data == b""
        assert confirm.frame.source == DEVICE and confirm.frame.destination == center.address
        upload = await center.wait_for(lambda r: r.frame.command == 2 and r.frame.data[:1] == b"\x18")
        assert upload.at - confirm.at >= 0.25
        unit = upload.frame.data_unit
        assert unit is not None and unit.type == 24
        (op,) = unit.objects
        assert isinstance(op, UitdOperation) and op.duty_check_answered and op.operation == 1 << 5
        # the answer is an ordinary upload: confirmed by the center
        await asyncio.sleep(0.05)
        assert dev.stats.confirmed == 2 and dev.stats.sent_by_kind["duty"] == 1
        # ... and it is on record for a read of the UITD's operations (84 -> 24)
        since = TimeTag.from_datetime(device_now().replace(microsecond=0, tzinfo=None) - timedelta(hours=1))
        serial, _ = center.command(conn, 84, [UitdOperationRecordsQuery(10, since)], command=4)
        reply = await center.wait_for(answer_to(serial, 5))
        unit = reply.frame.data_unit
        assert unit is not None and unit.type == 24
        assert any(isinstance(o, UitdOperation) and o.duty_check_answered for o in unit.objects)


async def test_duty_check_left_unanswered() -> None:
    async with pair(duty_answer_delay=None) as (center, dev, conn):
        serial, _ = center.command(conn, 91, [DutyCheck(1)])
        await center.wait_for(answer_to(serial, 3))
        await asyncio.sleep(0.5)
        assert not center.frames(lambda r: r.frame.command == 2 and r.frame.data[:1] == b"\x18")
        assert dev.stats.commands_answered == 1


async def test_read_uitd_status() -> None:
    async with pair() as (center, _dev, conn):
        serial, _ = center.command(conn, 81, [Reserved()], command=4)
        reply = await center.wait_for(answer_to(serial))
        f = reply.frame
        assert f.command == 5 and f.serial == serial and f.destination == center.address
        unit = f.data_unit
        assert unit is not None and unit.type == 21
        (status,) = unit.objects
        assert isinstance(status, UitdStatus) and status.status & 1 and not status.fire


_OLD = TimeTag.from_datetime(datetime(2020, 1, 1))
_DETECTOR = BUILDING[0]
_PRESSURE = BUILDING[7]
READS: list[tuple[int, list[InfoObject]]] = [
    (61, [SystemRef(1, 1), SystemRef(11, 1)]),
    (62, [ComponentRef(*_DETECTOR.system, _DETECTOR.address), ComponentRef(1, 1, 0xDEAD)]),
    (63, [ComponentRef(*_PRESSURE.system, _PRESSURE.address)]),
    (64, [OperationRecordsQuery(1, 1, 5, _OLD)]),
    (65, [SystemRef(1, 1)]),
    (66, [SystemRef(1, 1)]),
    (67, [ComponentRef(*_DETECTOR.system, _DETECTOR.address)]),
    (68, [SystemRef(1, 1)]),
    (84, [UitdOperationRecordsQuery(5, _OLD)]),
    (85, [Reserved()]),
    (86, [Reserved()]),
    (88, [Reserved()]),
]


@pytest.mark.parametrize(("read", "objects"), READS, ids=[str(t) for t, _ in READS])
async def test_every_read_gets_its_reply_type(read: int, objects: list[InfoObject]) -> None:
    async with pair() as (center, dev, conn):
        serial, _ = center.command(conn, read, objects, command=4)
        reply = await center.wait_for(answer_to(serial))
        assert reply.frame.command == 5, f"read {read} was denied"
        unit = reply.frame.data_unit
        assert unit is not None and unit.type == READ_REPLY_TYPE[read]
        assert unit.objects  # a plausible answer, not an empty one
        if read in (61, 62, 63, 67):
            assert len(unit.objects) == len(objects)
        if read == 62:
            first = unit.objects[0]
            assert isinstance(first, ComponentStatus)
            assert first.component_type == _DETECTOR.type and first.description == _DETECTOR.description
        assert dev.stats.commands_answered == 1 and dev.stats.commands_denied == 0


async def test_clock_sync_confirmed_and_used() -> None:
    async with pair() as (center, dev, conn):
        ahead = device_now().replace(microsecond=0, tzinfo=None) + timedelta(hours=1)
        serial, _ = center.command(conn, 90, [ClockSync(TimeTag.from_datetime(ahead))])
        confirm = await center.wait_for(answer_to(serial))
        assert confirm.frame.command == 3
        assert dev.clock_offset == pytest.approx(3600, abs=2)
        # its time tags follow the center's clock: the confirm's header and a read of the time
        assert confirm.frame.time.value is not None
        assert abs((confirm.frame.time.value - ahead).total_seconds()) <= 2
        serial, _ = center.command(conn, 88, [Reserved()], command=4)
        reply = await center.wait_for(answer_to(serial, 5))
        unit = reply.frame.data_unit
        assert unit is not None
        (clock,) = unit.objects
        assert isinstance(clock, UitdSystemTime) and clock.time.value is not None
        assert abs((clock.time.value - ahead).total_seconds()) <= 3


async def test_clock_skew_until_synced() -> None:
    async with pair(clock_skew=-120.0) as (center, dev, _conn):
        hello = center.frames()[0]
        assert hello.time.value is not None
        now = device_now().replace(tzinfo=None)  # its clock runs in the device time zone
        assert (now - hello.time.value).total_seconds() == pytest.approx(120, abs=3)
        assert dev.clock_offset == -120.0


async def test_init_confirmed_and_clears_latched_fire() -> None:
    async with pair(latch_fire=True) as (center, dev, conn):
        async with asyncio.timeout(5):
            assert (await dev.send_fire_alarm()).ok

        async def uitd_status() -> int:
            serial, _ = center.command(conn, 81, [Reserved()], command=4)
            unit = (await center.wait_for(answer_to(serial, 5))).frame.data_unit
            assert unit is not None and isinstance(unit.objects[0], UitdStatus)
            return unit.objects[0].status

        assert await uitd_status() & 0b10
        serial, _ = center.command(conn, 89, [Reserved()])
        assert (await center.wait_for(answer_to(serial))).frame.command == 3
        assert not await uitd_status() & 0b10


async def test_control_type_accepted_as_a_request_too() -> None:
    """Some centers send 89/90/91 with cmd 4 instead of cmd 1 (§6.2)."""
    async with pair() as (center, _dev, conn):
        serial, _ = center.command(conn, 89, [Reserved()], command=4)
        assert (await center.wait_for(answer_to(serial))).frame.command == 3


async def test_bad_checksum_denied() -> None:
    async with pair() as (center, dev, conn):
        good = build_frame(
            serial=77, command=4, source=center.address, destination=DEVICE, data=bytes([81, 1, 0])
        )
        bad = bytearray(good)
        bad[-3] ^= 0xFF
        center.send(conn, bytes(bad))
        deny = await center.wait_for(answer_to(77))
        assert deny.frame.command == 6 and deny.frame.data == b""
        assert deny.frame.source == DEVICE and deny.frame.destination == center.address
        assert dev.stats.commands_denied == 1 and dev.stats.commands_answered == 0


@pytest.mark.parametrize(
    ("command", "data"),
    [
        (4, bytes([200, 1, 0])),  # a user-defined read the device does not know
        (1, bytes([81, 1, 0])),  # a read sent as a control command
        (4, bytes([62, 1, 1, 1])),  # a read whose data unit does not parse
        (4, b""),  # a request without a data unit
        (2, bytes([21, 1, 1, 0, 0, 0, 1, 1, 24])),  # a center does not upload to a UITD
    ],
    ids=["unknown-read", "read-as-control", "bad-data-unit", "empty", "send-data"],
)
async def test_what_cannot_be_served_is_denied(command: int, data: bytes) -> None:
    async with pair() as (center, dev, conn):
        center.send(
            conn, build_frame(serial=5, command=command, source=center.address, destination=DEVICE, data=data)
        )
        deny = await center.wait_for(answer_to(5))
        assert deny.frame.command == 6
        assert dev.stats.commands_denied == 1


async def test_answers_use_fault_injection_too() -> None:
    """Chunked writes apply to answers: the center still frames them."""
    async with pair() as (center, dev, conn):
        dev.faults.chunk_writes = True
        serial, _ = center.command(conn, 85, [Reserved()], command=4)
        reply = await center.wait_for(answer_to(serial))
        assert reply.frame.command == 5 and not center.errors


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="serial_start"):
        DeviceSettings(serial_start=2)
    with pytest.raises(ValueError):
        DeviceSettings(confirm_timeout=0)
    with pytest.raises(ValueError):
        DeviceSettings(window=0)
