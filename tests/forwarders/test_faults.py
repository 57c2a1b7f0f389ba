"""The fault tracker against a private nats-server: open until cleared, with the time to repair."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS

from firegate.bus.events import DeviceOffline, DeviceOnline, Envelope, FaultCleared, FaultRaised, Point
from firegate.bus.jetstream import MSG_ID_HEADER, StreamSettings, ensure_kv, ensure_stream
from firegate.forwarders.api import request
from firegate.forwarders.faults import BUCKET, LIST_SUBJECT, FaultTracker
from firegate.forwarders.metrics import fault_repair_seconds
from tests.natsserver import nats_client, running_nats_server, wait_until

POINT = Point(system_type=1, system_address=1, component_type=42, component_address=7, description="3F 走廊")
T0 = datetime.now(UTC) - timedelta(hours=2)


def raised(n: int = 1, at: datetime = T0, device: str = "889") -> FaultRaised:
    return FaultRaised(
        id=f"{device}.2.{n}.raised.fault",
        device=device,
        site="SH-1",
        occurred_at=None,
        received_at=at,
        condition="fault",
        condition_zh="故障",
        point=POINT,
    )


def cleared(at: datetime, device: str = "889") -> FaultCleared:
    return FaultCleared(
        id=f"{device}.2.{at.timestamp()}.cleared.fault",
        device=device,
        site="SH-1",
        occurred_at=None,
        received_at=at,
        condition="fault",
        point=POINT,
    )


def offline(device: str = "900") -> DeviceOffline:
    return DeviceOffline(
        id=f"{device}.offline.1",
        device=device,
        site=device,
        occurred_at=None,
        received_at=T0,
        last_seen=T0,
        silent_s=100.0,
    )


def online(device: str = "900") -> DeviceOnline:
    return DeviceOnline(
        id=f"{device}.online.1",
        device=device,
        site=device,
        occurred_at=None,
        received_at=T0 + timedelta(minutes=30),
    )


@pytest.fixture
async def nc(tmp_path: Path) -> AsyncIterator[NATS]:
    async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as client:
        await ensure_stream(client.jetstream(timeout=5.0), StreamSettings())
        yield client


@contextlib.asynccontextmanager
async def tracking(nc: NATS) -> AsyncIterator[FaultTracker]:
    tracker = FaultTracker(nc, await ensure_kv(nc.jetstream(timeout=5.0), BUCKET), recount=0.2)
    task = asyncio.create_task(tracker.run())
    try:
        await asyncio.wait_for(tracker.ready.wait(), 10)
        yield tracker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish(nc: NATS, event: Envelope) -> None:
    js = nc.jetstream(timeout=5.0)
    await js.publish(event.subject, event.model_dump_json().encode(), headers={MSG_ID_HEADER: event.id})


async def open_rows(nc: NATS, **body: Any) -> list[dict[str, Any]]:
    answer = await request(nc, LIST_SUBJECT, body)
    assert answer["ok"], answer
    rows: list[dict[str, Any]] = answer["faults"]
    return rows


def repairs() -> float:
    return next(s.value for s in fault_repair_seconds.collect()[0].samples if s.name.endswith("_count"))


async def test_a_fault_is_open_until_cleared_and_its_repair_time_is_counted(nc: NATS) -> None:
    async with tracking(nc):
        await publish(nc, raised())
        await publish(nc, raised(2, T0 + timedelta(minutes=5)))  # raised again: the first one counts
        await wait_until(lambda: _rows(nc, 1), 5)
        (row,) = await open_rows(nc)
        assert (row["device"], row["condition"], row["location"]) == ("889", "fault", "3F 走廊")
        assert row["raised_at"].startswith(T0.isoformat()[:19]) and row["open_s"] >= 7000
        before = repairs()
        await publish(nc, cleared(T0 + timedelta(hours=1)))
        await wait_until(lambda: _rows(nc, 0), 5)
        assert repairs() == before + 1


async def test_a_device_offline_is_a_fault_until_it_is_back(nc: NATS) -> None:
    async with tracking(nc):
        await publish(nc, offline())
        await publish(nc, raised(device="889"))
        await wait_until(lambda: _rows(nc, 2), 5)
        assert [r["condition"] for r in await open_rows(nc, site="900")] == ["offline"]
        await publish(nc, online())
        await wait_until(lambda: _rows(nc, 1), 5)


async def test_open_faults_survive_a_tracker_restart(nc: NATS) -> None:
    async with tracking(nc):
        await publish(nc, raised())
        await wait_until(lambda: _rows(nc, 1), 5)
    async with tracking(nc):
        assert len(await open_rows(nc)) == 1


async def _rows(nc: NATS, n: int) -> bool:
    with contextlib.suppress(AssertionError):
        return len(await open_rows(nc)) == n
    return False


async def test_out_of_order_handling_never_leaves_a_phantom_or_hides_a_real_fault(nc: NATS) -> None:
    tracker = FaultTracker(nc, await ensure_kv(nc.jetstream(timeout=5.0), BUCKET))
    # a clear handled before its raise (two instances, or a redelivery): closed stays closed
    await tracker.track(cleared(T0 + timedelta(minutes=10)))
    await tracker.track(raised(1, T0))
    assert await tracker.open_faults() == []
    # a new episode after it opens again; an old clear handled late does not close it
    await tracker.track(raised(2, T0 + timedelta(minutes=20)))
    await tracker.track(cleared(T0 + timedelta(minutes=10)))
    (fault,) = await tracker.open_faults()
    assert fault.raised_at == T0 + timedelta(minutes=20)
    before = repairs()
    await tracker.track(cleared(T0 + timedelta(minutes=50)))
    await tracker.track(cleared(T0 + timedelta(minutes=50)))  # redelivered: counted once
    assert await tracker.open_faults() == [] and repairs() == before + 1


async def test_two_trackers_racing_over_many_faults_agree(nc: NATS) -> None:
    kv = await ensure_kv(nc.jetstream(timeout=5.0), BUCKET)
    one, two = FaultTracker(nc, kv), FaultTracker(nc, kv)
    events: list[Envelope] = []
    for n in range(40):
        device = f"d{n}"
        events += [raised(n, T0, device), cleared(T0 + timedelta(minutes=1), device)]
    # each pair split across the two trackers in the worst order: the clear first
    await asyncio.gather(*(one.track(e) for e in events[1::2]), *(two.track(e) for e in events[0::2]))
    assert await one.open_faults() == []
