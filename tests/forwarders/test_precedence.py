"""Fire work first downstream: fault bookkeeping waits, briefly, while a fire is in hand."""

from __future__ import annotations

import asyncio
import time

from firegate.forwarders.precedence import Precedence


async def test_fault_work_goes_at_once_when_no_fire_is_in_hand() -> None:
    p = Precedence(max_wait=5.0)
    started = time.monotonic()
    await p.yield_to_fires()
    assert time.monotonic() - started < 0.05


async def test_fault_work_waits_until_the_fire_work_is_done() -> None:
    p = Precedence(max_wait=5.0)
    order: list[str] = []

    async def fault() -> None:
        await p.yield_to_fires()
        order.append("fault")

    with p.fire_work():
        waiting = asyncio.create_task(fault())
        await asyncio.sleep(0.05)
        assert p.fire_busy and order == []
        order.append("fire")
    await asyncio.wait_for(waiting, 1)
    assert order == ["fire", "fault"] and not p.fire_busy


async def test_fault_work_is_never_held_longer_than_max_wait() -> None:
    """Its consumer's ack_wait must not run out behind a long run of fires."""
    p = Precedence(max_wait=0.1)
    with p.fire_work():
        started = time.monotonic()
        await p.yield_to_fires()
        assert 0.09 <= time.monotonic() - started < 0.5
