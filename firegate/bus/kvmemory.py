"""Last known status per point in a JetStream KV bucket, so a restarted (or another) gateway
neither forgets an open fault nor raises it again.

Reads come from a mirror, so a frame never waits on a KV read; writes are one group commit per
batch of frames, and what KV does not take in time is written later rather than holding up a
confirm (the UITD retransmits after 10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue

from firegate.aio import stop_if_cancelled
from firegate.bus import metrics
from firegate.bus.jetstream import BATCH_COMMIT_HEADER, BATCH_ID_HEADER, BATCH_SEQUENCE_HEADER
from firegate.ops.logging import Throttle


@dataclass(frozen=True, slots=True)
class PointState:
    status: int
    since: datetime  # when each currently-set bit was last raised (approximate: last change)


class StatusMemory(Protocol):
    """Last known status per point, for edge detection. Shared (JetStream KV) in production so
    restarts neither forget nor re-raise."""

    async def get_many(self, keys: list[str]) -> dict[str, PointState]: ...

    async def put_many(self, states: Mapping[str, PointState]) -> None:
        """Remember states whose events are stored: at once, before its first wait (a fire is
        confirmed before the write completes, and the device's next report must be judged
        against them), then write them where they are kept, bounded in time."""
        ...


class MemoryStatusMemory:
    """An in-process StatusMemory for tests and single-process runs without NATS KV."""

    def __init__(self) -> None:
        self.states: dict[str, PointState] = {}

    async def get_many(self, keys: list[str]) -> dict[str, PointState]:
        return {k: self.states[k] for k in keys if k in self.states}

    async def put_many(self, states: Mapping[str, PointState]) -> None:
        self.states.update(states)


BUCKET = "FIRE_STATE"
CACHE_MAX = 1_000_000  # points; a large center has ~10,000 UITDs with a few dozen points each
log = logging.getLogger(__name__)


class KvStatusMemory:
    """The status memory in KV, mirrored in this process.

    Reads come from a mirror of the whole bucket that a KV watch keeps current (other gateways'
    writes included), so a frame never waits on a KV round trip: a key the loaded mirror lacks
    was never seen. Until the mirror has loaded, and when it is incomplete, a miss asks KV.
    Writes come a batch of frames at a time, as one atomic batch (one synchronous write).
    """

    def __init__(
        self,
        kv: KeyValue,
        connected: Callable[[], bool],
        *,
        timeout: float = 1.0,
        batch: int = 500,
        cache_max: int = CACHE_MAX,
    ) -> None:
        self.kv = kv
        self.connected = connected
        self.timeout = timeout
        self.batch = batch
        self.cache_max = cache_max
        self._cache: dict[str, PointState] = {}
        self._unsaved: dict[str, PointState] = {}  # to write, in the flusher's order
        self._flushing: set[str] = set()  # keys the flusher is writing now
        self._writing: set[str] = set()  # keys any write of this process has in flight
        self._revisions: dict[str, int] = {}  # key -> the stream sequence this process last wrote
        self._dirty = asyncio.Event()
        self.loaded = False  # the mirror holds every key of the bucket
        self._throttle = Throttle(log)
        self._batching = True

    async def get_many(self, keys: list[str]) -> dict[str, PointState]:
        cache = self._cache
        found = {k: cache[k] for k in keys if k in cache}
        if self.loaded or len(found) == len(keys) or not self.connected():
            return found
        missing = [key for key in keys if key not in found]
        # concurrently: one bounded wait for the whole report, not one per point
        for key, state in zip(missing, await asyncio.gather(*map(self._get, missing)), strict=True):
            if state is not None:
                found[key] = state
        return found

    async def _get(self, key: str) -> PointState | None:
        try:
            entry = await asyncio.wait_for(self.kv.get(key), self.timeout)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (TimeoutError, nats.errors.Error) as e:
            # judge this point as first seen rather than hold up the frame; at worst a fault is
            # raised twice
            self._throttle.log("get", logging.WARNING, "status memory unavailable for %s: %r", key, e)
            return None
        state = self._decode(key, entry.value)
        if state is not None:
            self._remember(key, state)
        return state

    def _decode(self, key: str, value: bytes | None) -> PointState | None:
        if not value:
            return None
        try:
            doc = json.loads(value)
            return PointState(int(doc["status"]), datetime.fromisoformat(doc["since"]))
        except (ValueError, KeyError, TypeError) as e:  # another version's or a hand edit
            self._throttle.log(
                "unreadable",
                logging.WARNING,
                "unreadable status memory for %s, taken as first seen: %r",
                key,
                e,
            )
            return None

    def _remember(self, key: str, state: PointState) -> None:
        if key not in self._cache and len(self._cache) >= self.cache_max:
            del self._cache[next(iter(self._cache))]  # the oldest entry: KV still holds it
            self.loaded = False  # no longer the whole bucket: misses ask KV again
        self._cache[key] = state

    async def put_many(self, states: Mapping[str, PointState]) -> None:
        """Write a batch's states in one synchronous write, before its frames are confirmed: a
        state lost to a crash after the confirm would hide the edge that ends it (a fault
        cleared). What cannot be written now is left to run_flusher(); a point already waiting
        there waits behind it, so an older state never lands after a newer one."""
        direct: list[tuple[str, PointState]] = []
        for key, state in states.items():
            self._remember(key, state)
            if key in self._unsaved or key in self._flushing or not self.connected():
                self._unsaved[key] = state
            else:
                direct.append((key, state))
        for start in range(0, len(direct), self.batch):
            chunk = direct[start : start + self.batch]
            if not await self._write(chunk):
                # this chunk and the rest wait for the flusher, unless a newer state of the
                # point came meanwhile (it is then the one to write)
                for key, state in direct[start:]:
                    if key not in self._unsaved and self._cache.get(key) is state:
                        self._unsaved[key] = state
                break
        if self._unsaved:
            self._dirty.set()

    @property
    def unsaved(self) -> int:
        return len(self._unsaved)

    # -- background work (run both in a TaskGroup) ------------------------------------

    async def run_flusher(self, interval: float = 1.0) -> None:
        """Write what could not be written at once, batched; what fails stays for the next round."""
        while True:
            stop_if_cancelled()
            await self._dirty.wait()
            if not self.connected():
                await asyncio.sleep(interval)
                continue
            items = list(itertools.islice(self._unsaved.items(), self.batch))
            if len(self._unsaved) <= len(items):
                self._dirty.clear()
            self._flushing = {key for key, _ in items}
            try:
                written = await self._write(items)
            finally:
                self._flushing = set()
            if not written:
                self._dirty.set()
                await asyncio.sleep(interval)
                continue
            for key, state in items:
                if self._unsaved.get(key) is state:  # not changed again meanwhile
                    del self._unsaved[key]
            if self._unsaved:
                self._dirty.set()

    async def _write(self, items: list[tuple[str, PointState]]) -> bool:
        js = self.kv._js  # nats-py's KeyValue keeps its context and subject prefix private
        prefix = self.kv._pre
        messages = [
            (prefix + key, json.dumps({"status": s.status, "since": s.since.isoformat()}).encode())
            for key, s in items
        ]
        keys = [key for key, _ in items]
        self._writing.update(keys)  # the mirror must not take an older echo for these meanwhile
        try:
            revisions: list[int] = []
            if self._batching and len(messages) > 1:
                last = await self._write_batch(js._nc, messages)
                if last is not None:
                    metrics.store_writes["status"].inc()
                    revisions = list(range(last - len(messages) + 1, last + 1))
            if not revisions:
                acks = await asyncio.wait_for(
                    asyncio.gather(
                        *(js.publish(subject, value, timeout=self.timeout) for subject, value in messages)
                    ),
                    self.timeout * 2,
                )
                metrics.store_writes["status"].inc(len(messages))
                revisions = [ack.seq for ack in acks]
        except (TimeoutError, ValueError, nats.errors.Error) as e:
            self._throttle.log(
                "put", logging.WARNING, "status memory not saved yet (%d points): %r", len(messages), e
            )
            return False
        finally:
            self._writing.difference_update(keys)
        for key, revision in zip(keys, revisions, strict=True):
            self._revisions[key] = revision
        return True

    async def _write_batch(self, nc: NATS, messages: list[tuple[str, bytes]]) -> int | None:
        """One atomic batch: one synchronous write for all of them; the stream sequence of its
        last message. None when the bucket (or the server) takes no atomic batches: this memory
        then writes one by one from now on. Raises nats.errors.Error when it was not stored."""
        batch_id = nc.new_inbox().rsplit(".", 1)[-1]
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, max_msgs=1)
        try:
            last = len(messages)
            for n, (subject, value) in enumerate(messages, 1):
                headers = {BATCH_ID_HEADER: batch_id, BATCH_SEQUENCE_HEADER: str(n)}
                if n == last:
                    headers[BATCH_COMMIT_HEADER] = "1"
                await nc.publish(subject, value, headers=headers, reply=inbox if n == last else "")
            reply = await sub.next_msg(timeout=self.timeout * 2)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        if reply.headers and reply.headers.get("Status") == "503":
            raise nats.errors.NoRespondersError  # no stream answers: the bucket is gone, or not yet
        ack = json.loads(reply.data)  # ValueError: unreadable, counted as not stored
        error = ack.get("error")
        if error:
            if "atomic publish is disabled" in str(error.get("description", "")):
                log.info("status memory bucket takes no atomic batches (%s): writing one by one", error)
                self._batching = False
                return None
            raise nats.errors.Error(f"status memory batch refused: {error}")
        if (ack.get("batch"), ack.get("count")) != (batch_id, len(messages)):
            # a server without atomic batches stored the commit alone: write them one by one
            log.info("status memory's server takes no atomic batches (ack %s): writing one by one", ack)
            self._batching = False
            return None
        return int(ack["seq"])

    def _mirrored(self, entry: KeyValue.Entry) -> None:
        """One change the watch saw: taken into the mirror unless this process holds a newer
        state of that point (unsaved, being written, or written at a later revision)."""
        key = entry.key
        if key in self._unsaved or key in self._writing:
            return  # ours is newer than what KV holds until it is written
        if entry.revision is not None and entry.revision <= self._revisions.get(key, 0):
            return  # an echo of what this process wrote, or older: ours is current
        if entry.operation in ("DEL", "PURGE"):
            self._cache.pop(key, None)
            return
        state = self._decode(key, entry.value)
        if state is not None:
            self._remember(key, state)

    async def run_mirror(self) -> None:
        """Keep the mirror current with a watch on the whole bucket; restarted by the caller's
        supervisor when the watch fails (it then loads again)."""
        self.loaded = False
        watcher = await self.kv.watchall()
        try:
            while True:
                stop_if_cancelled()
                try:
                    entry = await watcher.updates(timeout=5.0)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    continue
                if entry is None:  # the initial values are in
                    self.loaded = len(self._cache) < self.cache_max
                    log.info("status memory mirrored: %d points", len(self._cache))
                    continue
                self._mirrored(entry)
        finally:
            self.loaded = False
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
