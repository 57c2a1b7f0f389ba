"""Fire work before fault bookkeeping, downstream too.

In one process, the alarm lifecycle and the 119 couriers mark the time they have a fire in hand
(`fire_work`); the fault tracker and the fault couriers ask `yield_to_fires` before each event,
and wait (briefly: their consumers' ack_wait must not run out) while fire work is under way. In
a district-wide storm, the fires then get the event loop and the store first, and the ten
thousand faults follow."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class Precedence:
    def __init__(self, max_wait: float = 0.25) -> None:
        self.max_wait = max_wait  # per event; a fault consumer's batch must outlast its ack_wait
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def fire_work(self) -> Iterator[None]:
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    @property
    def fire_busy(self) -> bool:
        return self._busy > 0

    async def yield_to_fires(self) -> None:
        if self._busy:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_wait):
                    await self._idle.wait()
