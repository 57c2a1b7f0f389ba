"""Where sessions hand their events. The bus's JetStream sink makes "accepted" mean "durably stored"."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from firegate.bus.events import Envelope


class EventSink(Protocol):
    async def publish(self, events: Sequence[Envelope], *, fire: bool) -> None:
        """Return only once every event is durably accepted; raise otherwise (no confirm is sent)."""
        ...


class MemorySink:
    """Keeps events in a list, deduplicated by id like JetStream's window. For tests and demos only."""

    def __init__(self) -> None:
        self.events: list[Envelope] = []
        self._ids: set[str] = set()
        self.fail = False
        self.delay = 0.0  # seconds per publish: a slow store, to show what waits behind it

    async def publish(self, events: Sequence[Envelope], *, fire: bool) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("memory sink told to fail")
        for event in events:
            if event.id not in self._ids:
                self._ids.add(event.id)
                self.events.append(event)
