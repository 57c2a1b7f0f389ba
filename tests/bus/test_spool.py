"""The on-disk spool: durability across reopen and crash, order, bounds."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from firegate.bus import spool as spool_module
from firegate.bus.errors import SpoolClosedError, SpoolError, SpoolFullError
from firegate.bus.spool import Record, Spool, encode_record


def rec(i: int, *, fire: bool = False, size: int = 100) -> Record:
    kind = "alarm" if fire else "status"
    return Record(f"fire.{kind}.{i}", f"id-{kind}-{i}", bytes([i % 256]) * size, fire)


async def drain(spool: Spool, max_records: int = 1000) -> list[Record]:
    out: list[Record] = []
    while (batch := await spool.read_batch(max_records)) is not None:
        out.extend(batch.records)
        await spool.commit(batch)
    return out


def segments(root: Path, lane: str) -> list[Path]:
    return sorted((root / lane).glob("*.seg"))


async def test_fire_first_then_order_of_arrival(spool: Spool) -> None:
    await spool.append(rec(1))
    await spool.append(rec(2, fire=True))
    await spool.append_many([rec(3), rec(4, fire=True), rec(5)])
    assert spool.pending_records == 5
    assert spool.pending_by_lane() == {"fire": 2, "other": 3}
    assert [r.msg_id for r in await drain(spool)] == [
        "id-alarm-2",
        "id-alarm-4",
        "id-status-1",
        "id-status-3",
        "id-status-5",
    ]
    assert spool.pending_records == 0 and spool.pending_bytes == 0


async def test_reopen_finds_pending_and_partial_commit_persists(tmp_path: Path) -> None:
    async with Spool(tmp_path) as spool:
        await spool.append_many([rec(i) for i in range(10)] + [rec(100, fire=True)])
        batch = await spool.read_batch(3)
        assert batch is not None and batch.fire and [r.msg_id for r in batch.records] == ["id-alarm-100"]
        await spool.commit(batch)
        batch = await spool.read_batch(4)
        assert batch is not None and len(batch.records) == 4
        await spool.commit(batch, 3)  # the 4th was not acked
    async with Spool(tmp_path) as spool:
        assert spool.pending_records == 7
        assert [r.msg_id for r in await drain(spool)] == [f"id-status-{i}" for i in range(3, 10)]
    async with Spool(tmp_path) as spool:
        assert spool.pending_records == 0
        assert await spool.read_batch() is None


async def test_torn_last_record_after_crash(tmp_path: Path) -> None:
    async with Spool(tmp_path) as spool:
        await spool.append_many([rec(i) for i in range(5)])
    (seg,) = segments(tmp_path, "other")
    os.truncate(seg, seg.stat().st_size - 7)  # a crash in the middle of writing record 4
    async with Spool(tmp_path) as spool:
        assert spool.pending_records == 4
        await spool.append(rec(5))  # goes to a fresh segment, not after the torn bytes
        assert len(segments(tmp_path, "other")) == 2
    async with Spool(tmp_path) as spool:
        assert [r.msg_id for r in await drain(spool)] == [f"id-status-{i}" for i in (0, 1, 2, 3, 5)]
        assert segments(tmp_path, "other") == []  # replayed segments are deleted


async def test_damaged_record_keeps_what_precedes_it(tmp_path: Path) -> None:
    async with Spool(tmp_path) as spool:
        await spool.append_many([rec(i, size=50) for i in range(6)])
    (seg,) = segments(tmp_path, "other")
    data = bytearray(seg.read_bytes())
    data[len(encode_record(rec(0, size=50))) * 3 + 20] ^= 0xFF  # inside record 3
    seg.write_bytes(bytes(data))
    async with Spool(tmp_path) as spool:
        assert [r.msg_id for r in await drain(spool)] == [f"id-status-{i}" for i in range(3)]


async def test_bound_refuses_other_but_takes_fire(tmp_path: Path) -> None:
    one = len(encode_record(rec(0)))
    async with Spool(tmp_path, max_bytes=3 * one) as spool:
        await spool.append_many([rec(0), rec(1), rec(2)])
        with pytest.raises(SpoolFullError) as refused:
            await spool.append(rec(3))
        assert refused.value.msg_id == "id-status-3" and refused.value.limit == 3 * one
        for i in range(5):  # past the bound: a fire alarm is never refused
            await spool.append(rec(10 + i, fire=True))
        with pytest.raises(SpoolFullError):  # mixed frame: fire stored, the rest refused
            await spool.append_many([rec(20, fire=True), rec(21)])
        assert spool.pending_by_lane() == {"fire": 6, "other": 3}
        assert len(await drain(spool)) == 9
        await spool.append(rec(3))  # room again once replayed


async def test_concurrent_appends_share_fsyncs_and_all_land(spool: Spool) -> None:
    await asyncio.gather(*(spool.append(rec(i, fire=i % 7 == 0)) for i in range(300)))
    got = await drain(spool)
    assert sorted(r.msg_id for r in got) == sorted(rec(i, fire=i % 7 == 0).msg_id for i in range(300))
    assert all(r.fire for r in got[:43]) and not any(r.fire for r in got[43:])


async def test_segments_rotate_and_are_deleted_when_replayed(tmp_path: Path) -> None:
    async with Spool(tmp_path, segment_bytes=1000) as spool:
        for i in range(30):
            await spool.append(rec(i))
        assert len(segments(tmp_path, "other")) > 2
        batch = await spool.read_batch(1000)
        assert batch is not None
        await spool.commit(batch)  # a batch never spans segments
        assert len(segments(tmp_path, "other")) > 1
        assert len(batch.records) + len(await drain(spool)) == 30
        assert segments(tmp_path, "other") == []


async def test_record_larger_than_read_chunk(spool: Spool) -> None:
    big = Record("fire.alarm.1", "big", b"x" * 3_000_000, True)
    await spool.append(big)
    batch = await spool.read_batch(10, max_bytes=1024)
    assert batch is not None and batch.records == [big]


async def test_stale_commit_is_refused(spool: Spool) -> None:
    await spool.append_many([rec(1), rec(2)])
    batch = await spool.read_batch()
    assert batch is not None
    await spool.commit(batch)
    with pytest.raises(SpoolError):
        await spool.commit(batch)


async def test_wait_nonempty(spool: Spool) -> None:
    waiter = asyncio.ensure_future(spool.wait_nonempty())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await spool.append(rec(1))
    await asyncio.wait_for(waiter, 1.0)
    await drain(spool)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(spool.wait_nonempty(), 0.05)


async def test_closed_spool_refuses(tmp_path: Path) -> None:
    spool = await Spool.open(tmp_path)
    await spool.close()
    await spool.close()  # idempotent
    with pytest.raises(SpoolClosedError):
        await spool.append(rec(1))


async def test_failed_write_is_reported_and_does_not_poison_the_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sync = spool_module._sync_data
    calls = 0

    def flaky_sync(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(28, "No space left on device")
        real_sync(fd)

    monkeypatch.setattr(spool_module, "_sync_data", flaky_sync)
    async with Spool(tmp_path) as spool:
        await spool.append(rec(1))
        with pytest.raises(SpoolError) as e:
            await spool.append(rec(2))
        assert isinstance(e.value, OSError) and "No space" in str(e.value)
        await spool.append(rec(3))  # into a fresh segment, after nothing half-written
        assert spool.pending_records == 2
    async with Spool(tmp_path) as spool:
        assert [r.msg_id for r in await drain(spool)] == ["id-status-1", "id-status-3"]
