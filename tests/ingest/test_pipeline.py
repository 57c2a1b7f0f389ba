"""Ingest alone, with a sink that records each group commit: fires first across every input,
batches, back-pressure, and what a failed store or a failed normalization leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime

import pytest

from firegate.bus.events import DeviceInfo, Envelope, FaultRaised, FireAlarm
from firegate.bus.kvmemory import MemoryStatusMemory
from firegate.codecs.gb26875 import ComponentStatus, DataUnit, TimeTag, decode_data_unit, encode_data_unit
from firegate.ingest import Ingest, IngestSettings, Lane, NotStoredError, Outcome, Report
from firegate.ingest.normalize import Normalizer


class GatedSink:
    """Records every publish (one group commit each); holds them while the gate is shut."""

    def __init__(self) -> None:
        self.commits: list[tuple[bool, list[Envelope]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def publish(self, events: Sequence[Envelope], *, fire: bool) -> None:
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("told to fail")
        self.commits.append((fire, list(events)))


def unit(address: int, status: int) -> DataUnit:
    obj = ComponentStatus.make(1, 1, 42, address, status, "3F", TimeTag.now())
    decoded = decode_data_unit(encode_data_unit(2, [obj]))
    assert decoded is not None
    return decoded


def report(device: int, status: int, done: list[tuple[str, Outcome]], address: int = 1) -> Report:
    fire = bool(status & 0b10)
    return Report(
        device=str(device),
        lane=Lane.FIRE if fire else Lane.NORMAL,
        unit=unit(address, status),
        frame_time=datetime.now().replace(microsecond=0),
        raw=b"\x40\x40",
        on_done=lambda outcome: done.append((str(device), outcome)),
    )


@pytest.fixture
def sink() -> GatedSink:
    return GatedSink()


@pytest.fixture
async def ingest(sink: GatedSink) -> AsyncIterator[Ingest]:
    ing = Ingest(sink, Normalizer(MemoryStatusMemory()), IngestSettings(max_batch=20, max_in_flight=1))
    task = asyncio.create_task(ing.run())
    try:
        yield ing
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def settle(ingest: Ingest) -> None:
    async with asyncio.timeout(5):
        await ingest.idle()


async def test_a_fire_overtakes_every_waiting_report_of_every_input(ingest: Ingest, sink: GatedSink) -> None:
    done: list[tuple[str, Outcome]] = []
    sink.gate.clear()  # the store is slow: one batch in flight, the rest wait
    for device in range(100, 160):  # 60 devices' faults, 3 batches' worth
        ingest.submit(report(device, 0b101, done))
    await asyncio.sleep(0.05)
    assert ingest.waiting == 40  # one batch of 20 taken, in flight behind the gate
    ingest.submit(report(999, 0b11, done))  # a fire on another connection, last to arrive
    await asyncio.sleep(0.05)
    sink.gate.set()
    await settle(ingest)
    assert [d for d, _ in done].index("999") <= 20  # at most the batch already in flight before it
    order = [fire for fire, _ in sink.commits]
    assert order[:2] in ([True, False], [False, True]) and order.count(True) == 1
    assert order.index(True) <= 1  # never behind a batch taken after it arrived
    assert all(outcome is Outcome.STORED for _, outcome in done) and len(done) == 61


async def test_waiting_reports_are_stored_in_few_group_commits(ingest: Ingest, sink: GatedSink) -> None:
    done: list[tuple[str, Outcome]] = []
    sink.gate.clear()
    for device in range(200, 300):
        ingest.submit(report(device, 0b101, done))
    sink.gate.set()
    await settle(ingest)
    assert len(done) == 100
    assert len(sink.commits) <= 6  # 100 reports, batches of 20
    faults = [e for _, events in sink.commits for e in events if isinstance(e, FaultRaised)]
    assert sorted(e.device for e in faults) == [str(d) for d in range(200, 300)]


async def test_a_full_queue_pauses_inputs_and_resumes_them_when_drained(sink: GatedSink) -> None:
    ing = Ingest(
        sink, Normalizer(MemoryStatusMemory()), IngestSettings(max_batch=5, max_in_flight=1, queue_limit=10)
    )
    done: list[tuple[str, Outcome]] = []
    resumed: list[str] = []
    sink.gate.clear()
    for device in range(12):
        ing.submit(report(device, 0b101, done))
    assert ing.full
    ing.when_room(lambda: resumed.append("input"))
    ing.submit(report(500, 0b11, done))  # a fire is taken however full the queue is
    task = asyncio.create_task(ing.run())
    try:
        await asyncio.sleep(0.05)
        assert not resumed  # still full behind the shut gate
        sink.gate.set()
        await settle(ing)
        assert resumed == ["input"]
        assert len(done) == 13 and done[0][0] == "500"  # the fire first, though submitted last
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_not_stored_means_no_outcome_to_confirm_and_no_state_remembered(
    ingest: Ingest, sink: GatedSink
) -> None:
    done: list[tuple[str, Outcome]] = []
    sink.fail = True
    ingest.submit(report(7, 0b101, done))
    await settle(ingest)
    assert done == [("7", Outcome.NOT_STORED)]
    sink.fail = False  # the device resends: the fault is raised again, not judged seen
    ingest.submit(report(7, 0b101, done))
    await settle(ingest)
    assert done[-1] == ("7", Outcome.STORED)
    assert [type(e) for e in sink.commits[-1][1]] == [FaultRaised]
    with pytest.raises(NotStoredError):
        sink.fail = True
        await ingest.store(sink.commits[-1][1])


async def test_a_failed_normalization_still_stores_the_fire(
    ingest: Ingest, sink: GatedSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bad point")

    monkeypatch.setattr(ingest.normalizer, "normalize", broken)
    done: list[tuple[str, Outcome]] = []
    ingest.submit(report(8, 0b11, done))
    await settle(ingest)
    assert done == [("8", Outcome.STORED_RAW)]
    ((fire, events),) = sink.commits
    assert fire and [type(e) for e in events] == [DeviceInfo, FireAlarm]
    assert isinstance(events[1], FireAlarm) and events[1].device == "8"


def test_link_work_goes_after_normal_work_but_is_never_starved(sink: GatedSink) -> None:
    """A reconnect storm's first frames wait behind connected devices' work, for at most
    link_max_wait; then they go next."""
    ing = Ingest(sink, Normalizer(MemoryStatusMemory()), IngestSettings(link_max_wait=2.0))
    ing.submit(Report(device="1", lane=Lane.LINK))
    ing.submit(report(2, 0b101, []))
    assert ing._next_lane() is Lane.NORMAL
    ing._queues[Lane.LINK][0].queued_at -= 2.5  # it has waited longer than link_max_wait
    assert ing._next_lane() is Lane.LINK
    ing._queues[Lane.NORMAL].clear()
    ing._queues[Lane.LINK][0].queued_at += 2.5
    assert ing._next_lane() is Lane.LINK  # nothing else waits


async def test_a_bug_in_a_batch_costs_that_batch_not_ingest(
    ingest: Ingest, sink: GatedSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its reports are not stored (their devices resend); the next batch goes through."""
    monkeypatch.setattr(ingest.normalizer.memory, "put_many", _raise_once(ingest.normalizer.memory.put_many))
    done: list[tuple[str, Outcome]] = []
    ingest.submit(report(30, 0b101, done))
    await settle(ingest)
    assert done == [("30", Outcome.NOT_STORED)]
    ingest.submit(report(31, 0b101, done))
    await settle(ingest)
    assert done[-1] == ("31", Outcome.STORED)


def _raise_once(put_many: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    raised = False

    async def once(*args: object) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise RuntimeError("a bug in the status memory")
        await put_many(*args)

    return once
