"""Last known status per point in a JetStream KV bucket, so a restarted (or another) gateway
neither forgets an open fault nor raises it again."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import datetime

import nats.errors
import nats.js.errors
from nats.js.kv import KeyValue

from firegate.bus.normalize import PointState

BUCKET = "FIRE_STATE"
log = logging.getLogger(__name__)


class KvStatusMemory:
    def __init__(self, kv: KeyValue, *, timeout: float = 2.0) -> None:
        self.kv = kv
        self.timeout = timeout
        self._cache: dict[str, PointState] = {}  # this process wrote or read them last

    async def get_many(self, keys: list[str]) -> dict[str, PointState]:
        found: dict[str, PointState] = {}
        for key in keys:
            cached = self._cache.get(key)
            if cached is not None:
                found[key] = cached
                continue
            try:
                entry = await asyncio.wait_for(self.kv.get(key), self.timeout)
            except nats.js.errors.KeyNotFoundError:
                continue
            except (TimeoutError, nats.errors.Error) as e:
                # NATS away: judge this point as first seen rather than hold up the frame (whose
                # events still reach the spool); at worst a fault is raised twice
                log.warning("status memory unavailable for %s: %r", key, e)
                continue
            if entry.value:
                doc = json.loads(entry.value)
                state = PointState(int(doc["status"]), datetime.fromisoformat(doc["since"]))
                self._cache[key] = found[key] = state
        return found

    async def put_many(self, states: Mapping[str, PointState]) -> None:
        for key, state in states.items():
            self._cache[key] = state
            value = json.dumps({"status": state.status, "since": state.since.isoformat()}).encode()
            try:
                await asyncio.wait_for(self.kv.put(key, value), self.timeout)
            except (TimeoutError, nats.errors.Error) as e:
                log.warning("status memory not saved for %s: %r", key, e)
