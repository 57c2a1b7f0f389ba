"""Cancellation that a library swallowed still stops firegate's loops (firegate.aio)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from firegate.aio import cancel_and_wait, stop_if_cancelled


async def swallowing_call() -> None:
    """What Python 3.11's wait_for or nats-py can do: the cancellation never reaches the caller."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)


async def test_a_loop_stops_after_its_cancellation_was_swallowed() -> None:
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            stop_if_cancelled()
            rounds += 1
            await swallowing_call()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert rounds == 1


async def test_a_timeout_is_not_taken_for_a_cancellation() -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)
    stop_if_cancelled()  # asyncio.timeout took its own cancellation back


async def test_cancel_and_wait_cancels_again_what_went_on(caplog: pytest.LogCaptureFixture) -> None:
    async def stubborn() -> None:
        await swallowing_call()  # the first cancellation is lost here...
        await asyncio.sleep(10)  # ...the second one ends it

    async def obedient() -> None:
        await asyncio.sleep(10)

    tasks: list[asyncio.Task[object]] = [
        asyncio.create_task(stubborn(), name="stubborn"),
        asyncio.create_task(obedient(), name="obedient"),
    ]
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING):
        await asyncio.wait_for(cancel_and_wait(tasks, logging.getLogger("test"), every=0.05), 2)
    assert all(t.cancelled() for t in tasks)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "stubborn" in warned[0]


def test_the_garbage_collector_is_calmed_in_a_process_of_its_own() -> None:
    """firegate run freezes what start-up made and collects less often (no 100 ms+ full
    collections under load); checked in a child so this test process keeps its own settings."""
    import subprocess
    import sys

    code = (
        "import gc; from firegate.ops.limits import GC_THRESHOLDS, calm_garbage_collector;"
        "calm_garbage_collector(); assert gc.get_threshold() == GC_THRESHOLDS;"
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
