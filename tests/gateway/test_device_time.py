"""Device times on a host whose zone is not the devices' (issue 19: a UTC host read every time
tag 8 hours off). GB/T 26875.3 time tags carry no zone: the center reads them, compares them and
sets device clocks in the device time zone (default Asia/Shanghai), whatever the host's TZ is,
and writes every time with its offset."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import REGISTRY

from firegate.bus.events import DeviceInfo, FireAlarm
from firegate.codecs.gb26875 import (
    ClockSync,
    Command,
    ComponentStatus,
    TimeTag,
    build_frame,
    decode_data_unit,
    encode_data_unit,
)
from firegate.gateway.server import Gateway, GatewayOptions
from firegate.ingest import Lane, Report
from firegate.ingest.pipeline import _fallback
from firegate.ingest.sink import MemorySink
from firegate.sim import DeviceSettings, SimulatedUitd
from tests.gateway.client import CENTER, Uitd
from tests.gateway.standalone import make_gateway, running
from tests.natsserver import wait_until

SHANGHAI = ZoneInfo("Asia/Shanghai")
CST = timedelta(hours=8)


@pytest.fixture(params=["UTC", "America/New_York"])
def host_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """The host's own zone (TZ) is not the devices': a UTC container, or a host abroad."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        assert datetime.now().astimezone().utcoffset() != CST  # the host's local time is not CST
        yield request.param
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def shanghai_now() -> datetime:
    return datetime.now(UTC).astimezone(SHANGHAI).replace(tzinfo=None)


def sink_of(gw: Gateway) -> MemorySink:
    assert isinstance(gw.ingest.sink, MemorySink)
    return gw.ingest.sink


@pytest.fixture
async def syncing_gateway() -> AsyncIterator[Gateway]:
    """A gateway that sets each device's clock when it connects, as `firegate run` does."""
    options = GatewayOptions(
        host="127.0.0.1", port=0, clock_sync_on_connect=True, confirm_timeout=2.0, retries=0
    )
    async with running(make_gateway(options)) as gw:
        yield gw


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_the_center_and_the_simulator_agree_on_a_host_in_another_zone(
    host_zone: str, syncing_gateway: Gateway
) -> None:
    """`firegate sim` against `firegate run` on one UTC host: the clock sync, the simulator's time
    tags and the event all say China Standard Time, and the event's time is the right instant."""
    settings = DeviceSettings(heartbeat_interval=None, confirm_timeout=2.0, duty_answer_delay=None)
    async with SimulatedUitd(889, "127.0.0.1", syncing_gateway.port or 0, settings=settings) as dev:
        await asyncio.wait_for(dev.wait_connected(), 5)
        await wait_until(lambda: dev.stats.commands_answered >= 1, 5)  # the clock sync
        assert abs(dev.clock_offset) <= 1  # the center set it to what the device already had
        assert (await asyncio.wait_for(dev.send_fire_alarm(), 10)).ok
    (alarm,) = [e for e in sink_of(syncing_gateway).events if isinstance(e, FireAlarm)]
    assert alarm.occurred_at is not None and alarm.occurred_at.utcoffset() == CST
    assert abs((alarm.occurred_at - alarm.received_at).total_seconds()) < 3  # the same instant
    wire = json.loads(alarm.model_dump_json())
    assert wire["occurred_at"].endswith("+08:00") and wire["received_at"].endswith("Z")


async def test_a_uitd_on_china_standard_time_on_a_host_in_another_zone(
    host_zone: str, syncing_gateway: Gateway
) -> None:
    """A real UITD keeps CST: no clock skew, no device-to-bus delay of hours, its clock set to
    CST, its raw records with the offset too."""
    skew_sum, to_bus_sum = (
        sample("firegate_gateway_device_clock_skew_seconds_sum"),
        sample("firegate_gateway_device_to_bus_seconds_sum"),
    )
    dev = await Uitd(74565).connect(syncing_gateway.port or 0)
    tag = TimeTag.from_datetime(shanghai_now().replace(microsecond=0))
    alarm = ComponentStatus.make(1, 1, 42, 7, 0b11, "1F大厅感烟", tag)
    raw = build_frame(
        serial=1, command=2, source=74565, destination=CENTER, time=tag, data=encode_data_unit(2, [alarm])
    )
    assert (await dev.exchange(raw)).command == Command.CONFIRM
    (sync,) = await dev.answer_commands(1)  # the clock sync after the first exchange
    assert sync.data_unit is not None and sync.data_unit.type == 90
    (clock,) = sync.data_unit.objects
    assert isinstance(clock, ClockSync) and clock.time.value is not None
    assert abs((clock.time.value - shanghai_now()).total_seconds()) < 3  # CST, not the host's time
    assert abs(sample("firegate_gateway_device_clock_skew_seconds_sum") - skew_sum) < 3
    assert abs(sample("firegate_gateway_device_to_bus_seconds_sum") - to_bus_sum) < 3
    user_defined = build_frame(
        serial=2, command=2, source=74565, destination=CENTER, time=tag, data=b"\xc8\x01\x00"
    )
    assert (await dev.exchange(user_defined)).command == Command.CONFIRM
    await dev.close()
    events = sink_of(syncing_gateway).events
    (fire,) = [e for e in events if isinstance(e, FireAlarm)]
    (kept,) = [e for e in events if isinstance(e, DeviceInfo) and e.info_type == 200]
    for event in (fire, kept):
        assert event.occurred_at == tag.value.replace(tzinfo=SHANGHAI)  # type: ignore[union-attr]
        assert event.occurred_at is not None and event.occurred_at.utcoffset() == CST


def test_a_report_stored_raw_keeps_its_offset(host_zone: str) -> None:
    """When normalizing fails, the raw record (and the fire) still carry the device time zone."""
    tag = TimeTag.from_datetime(datetime(2026, 11, 23, 10, 30, 5))
    unit = decode_data_unit(encode_data_unit(2, [ComponentStatus.make(1, 1, 42, 7, 0b11, "x", tag)]))
    report = Report("74565", Lane.FIRE, unit, frame_time=tag.value, raw=b"@@")
    for event in _fallback(report, "74565", datetime.now(UTC)):
        assert event.model_dump(mode="json")["occurred_at"] == "2026-11-23T10:30:05+08:00"


@pytest.mark.parametrize(
    ("given", "tag"),
    [
        # a time with an offset, as every time firegate writes, is meant in the device's zone
        ("2024-05-01T00:00:00Z", datetime(2024, 5, 1, 8, 0, 0)),
        ("2024-05-01T08:00:00+08:00", datetime(2024, 5, 1, 8, 0, 0)),
        ("2024-05-01T08:00:00", datetime(2024, 5, 1, 8, 0, 0)),  # naive: already device time
    ],
)
def test_a_records_query_start_time_is_sent_in_device_time(host_zone: str, given: str, tag: datetime) -> None:
    from firegate.gateway.remote import _objects

    (query,) = _objects(84, [{"record_count": 5, "start_time": given}])
    assert query.start_time.value == tag
