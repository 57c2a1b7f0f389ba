"""When each sensor was last heard from, kept across restarts (KV bucket ``FIRE_SENSORS``).

A sensor reporting once a day that dies just before a gateway restart would otherwise never go
offline: the new process has never heard from it. Each source writes, at most every few
seconds, the sensors heard from or gone offline since its last write, and reads them back at
start (`DeviceTracker.restore`). Keys are ``<source>.<device>`` (both single subject tokens).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import nats.errors
from nats.js.kv import KeyValue

BUCKET = "FIRE_SENSORS"
TIMEOUT = 5.0
log = logging.getLogger("firegate.gateway.sensors")


@dataclass(frozen=True, slots=True)
class Seen:
    at: datetime  # the last sign of life (UTC)
    online: bool  # False once its offline event is stored


class SeenStore(Protocol):
    async def load(self, source: str) -> dict[str, Seen]: ...

    async def save(self, source: str, seen: Mapping[str, Seen]) -> None:
        """Raises on failure: the caller keeps them for its next write."""
        ...


class MemorySeen:
    """In this process only (tests; and a store to hand a source that has none)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Seen]] = {}

    async def load(self, source: str) -> dict[str, Seen]:
        return dict(self.data.get(source, {}))

    async def save(self, source: str, seen: Mapping[str, Seen]) -> None:
        self.data.setdefault(source, {}).update(seen)


class KvSeen:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def load(self, source: str) -> dict[str, Seen]:
        out: dict[str, Seen] = {}
        watcher = await self.kv.watch(f"{source}.>", include_history=False)
        try:
            async with asyncio.timeout(TIMEOUT * 6):  # thousands of sensors: one watch, no gets
                while True:
                    try:
                        entry = await watcher.updates(timeout=TIMEOUT)  # type: ignore[no-untyped-call]
                    except nats.errors.TimeoutError:
                        break
                    if entry is None:  # the current values are in
                        break
                    if entry.operation in ("DEL", "PURGE") or entry.value is None:
                        continue
                    device = entry.key.split(".", 1)[1]
                    try:
                        doc = json.loads(entry.value)
                        out[device] = Seen(datetime.fromisoformat(doc["at"]), bool(doc["online"]))
                    except (ValueError, KeyError, TypeError) as e:
                        log.warning(
                            "sensor %s: unreadable last-seen record %r: %r", entry.key, entry.value, e
                        )
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return out

    async def save(self, source: str, seen: Mapping[str, Seen]) -> None:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(
                *(
                    self.kv.put(
                        f"{source}.{device}",
                        json.dumps({"at": s.at.isoformat(), "online": s.online}).encode(),
                    )
                    for device, s in seen.items()
                )
            )
