"""Last known status per point in a JetStream KV bucket, so a restarted (or another) gateway
neither forgets an open fault nor raises it again.

It never holds up a confirm: while NATS is away it answers from its local cache and keeps the
changes to write once NATS is back (a frame's confirm must not wait on KV timeouts: the UITD
retransmits after 10 s).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from firegate.aio import stop_if_cancelled
from firegate.bus.normalize import PointState

BUCKET = "FIRE_STATE"
CACHE_MAX = 200_000  # points; a large center has ~10,000 UITDs with a few dozen points each
log = logging.getLogger(__name__)


class KvStatusMemory:
    def __init__(self, kv: KeyValue, connected: Callable[[], bool], *, timeout: float = 1.0) -> None:
        self.kv = kv
        self.connected = connected
        self.timeout = timeout
        self._cache: dict[str, PointState] = {}  # what this process read or wrote last, bounded
        self._unsaved: dict[str, PointState] = {}

    async def get_many(self, keys: list[str]) -> dict[str, PointState]:
        found = {k: self._cache[k] for k in keys if k in self._cache}
        for key in keys:
            if key in found or not self.connected():
                continue
            try:
                entry = await asyncio.wait_for(self.kv.get(key), self.timeout)
            except nats.js.errors.KeyNotFoundError:
                continue
            except (TimeoutError, nats.errors.Error) as e:
                # judge this point as first seen rather than hold up the frame; at worst a fault
                # is raised twice
                log.warning("status memory unavailable for %s: %r", key, e)
                continue
            if entry.value:
                try:
                    doc = json.loads(entry.value)
                    state = PointState(int(doc["status"]), datetime.fromisoformat(doc["since"]))
                except (ValueError, KeyError, TypeError) as e:  # another version's or a hand edit
                    log.warning("unreadable status memory for %s, taken as first seen: %r", key, e)
                    continue
                self._remember(key, state)
                found[key] = state
        return found

    def _remember(self, key: str, state: PointState) -> None:
        if key not in self._cache and len(self._cache) >= CACHE_MAX:
            del self._cache[next(iter(self._cache))]  # the oldest entry: KV still holds it
        self._cache[key] = state

    async def put_many(self, states: Mapping[str, PointState]) -> None:
        """Write this frame's states (concurrently, one bounded wait); what fails, or arrives
        while NATS is away, is left to run_flusher(), so no confirm waits on a backlog."""
        for key, state in states.items():
            self._remember(key, state)
        if not self.connected():
            self._unsaved.update(states)
            return
        items = list(states.items())
        saved = await asyncio.gather(*(self._put(key, state) for key, state in items))
        for (key, state), ok in zip(items, saved, strict=True):
            if not ok:
                self._unsaved[key] = state

    async def run_flusher(self, interval: float = 1.0) -> None:
        """Write back what an outage left unsaved, in the background (run it in a TaskGroup)."""
        while True:
            stop_if_cancelled()
            await asyncio.sleep(interval)
            while self._unsaved and self.connected():
                key, state = next(iter(self._unsaved.items()))
                if not await self._put(key, state):
                    break
                if self._unsaved.get(key) is state:
                    del self._unsaved[key]

    async def _put(self, key: str, state: PointState) -> bool:
        value = json.dumps({"status": state.status, "since": state.since.isoformat()}).encode()
        try:
            await asyncio.wait_for(self.kv.put(key, value), self.timeout)
        except (TimeoutError, nats.errors.Error) as e:
            log.warning("status memory not saved yet for %s: %r", key, e)
            return False
        return True
