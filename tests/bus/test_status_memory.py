"""The KV status memory under races: a newer state is never replaced by an older one, whether by
a failed write's retry or by the mirror's late echo; a bucket that does not answer fails softly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from firegate.bus.jetstream import ensure_kv
from firegate.bus.kvmemory import BUCKET, KvStatusMemory, PointState

KEY = "74565.2.1.1.42.7"


def state(status: int) -> PointState:
    return PointState(status, datetime.now(UTC))


async def test_a_failed_write_does_not_requeue_over_a_newer_state() -> None:
    up = {"connected": True}
    memory = KvStatusMemory(kv=None, connected=lambda: up["connected"])  # type: ignore[arg-type]

    async def failing(items: list[tuple[str, PointState]]) -> bool:
        await asyncio.sleep(0.2)  # NATS drops while this write is in flight
        return False

    memory._write = failing  # type: ignore[method-assign]
    older, newer = state(0b10011), state(0b1)
    writing = asyncio.create_task(memory.put_many({KEY: older}))
    await asyncio.sleep(0.05)
    up["connected"] = False
    await memory.put_many({KEY: newer})  # the device's next report, while the write hangs
    await writing
    assert memory._cache[KEY] is newer and memory._unsaved[KEY] is newer


async def test_the_mirror_never_takes_an_older_echo_over_what_this_process_wrote(nc: NATS) -> None:
    """Under a backlog the watch delivers this process's own earlier write after a newer one:
    that echo must not bring back the older state (a fault clear would be lost)."""
    kv = await ensure_kv(nc.jetstream(timeout=5.0), BUCKET, allow_atomic=True)
    memory = KvStatusMemory(kv, lambda: nc.is_connected)
    first, second = state(0b10001), state(0b1)
    await memory.put_many({KEY: first, "other.1": state(0b1)})
    echo = await kv.get(KEY)  # what the watch will deliver for the first write
    await memory.put_many({KEY: second, "other.2": state(0b1)})
    memory._mirrored(echo)  # arrives late
    assert memory._cache[KEY] is second
    newer = KeyValue.Entry(
        bucket=BUCKET,
        key=KEY,
        value=b'{"status": 5, "since": "2026-12-03T10:00:00+00:00"}',
        revision=(echo.revision or 0) + 100,
        delta=None,
        created=None,
        operation=None,
    )
    memory._mirrored(newer)  # another gateway's later write is taken
    assert memory._cache[KEY].status == 0b101


async def test_a_bucket_that_does_not_answer_is_a_soft_failure(nc: NATS) -> None:
    js = nc.jetstream(timeout=5.0)
    kv = await ensure_kv(js, BUCKET, allow_atomic=True)
    await js.delete_key_value(BUCKET)  # no stream answers $KV.FIRE_STATE.* now
    memory = KvStatusMemory(kv, lambda: nc.is_connected, timeout=0.3)
    await memory.put_many({KEY: state(0b101), "other.1": state(0b1)})  # does not raise
    assert memory.unsaved == 2 and memory._cache[KEY].status == 0b101
