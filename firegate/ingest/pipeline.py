"""The one path from what a device said to stored events, for every input.

A transport's codec hands ingest a `Report`: the standard's information objects (or events it
made itself), the lane (`priority`), and a callback. Ingest queues reports per lane across every
connection and input, takes them in batches (all waiting fires first, always; then the others,
a bounded number of batches in flight), normalizes them into events, stores each batch durably
in one group commit, and only then calls each report back, so the input acknowledges to the
device exactly what is stored. Nothing here knows a wire format or a socket.

Back-pressure instead of timeouts: when too many non-fire reports wait, `full` says so and
inputs stop reading (`when_room` tells them to go on); a fire report is always taken.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from firegate.aio import stop_if_cancelled
from firegate.bus.events import DeviceInfo, Envelope, FireAlarm, Point, event_id
from firegate.codecs.gb26875 import DataUnit
from firegate.codecs.gb26875.tables import TypeFlag, name_of, zh_of
from firegate.devicetime import device_now, device_time
from firegate.errors import FiregateError
from firegate.ingest import metrics
from firegate.ingest.normalize import Normalizer
from firegate.ingest.priority import Lane
from firegate.ingest.sink import EventSink
from firegate.ops.logging import Throttle

log = logging.getLogger("firegate.ingest")

_YIELD_EVERY = 32  # reports normalized between two turns of the event loop

__all__ = ["Ingest", "IngestSettings", "NotStoredError", "Outcome", "Report"]


class NotStoredError(FiregateError, ConnectionError):
    """Events ingest could not store durably (nothing is confirmed for them)."""

    def __init__(self, count: int) -> None:
        self.count = count
        super().__init__(f"{count} event(s) not stored")


class Outcome(enum.StrEnum):
    STORED = "stored"
    STORED_RAW = "stored_raw"  # normalization failed: the raw record (and any fire) stored instead
    NOT_STORED = "not_stored"  # not durable: the input must not acknowledge it

    def __bool__(self) -> bool:
        return self is not Outcome.NOT_STORED


@dataclass(slots=True, eq=False)
class Report:
    """One thing a device said, as an input hands it to ingest."""

    device: str
    lane: Lane
    unit: DataUnit | None = None  # the standard's information objects, to normalize here
    frame_time: datetime | None = None  # the device's time for the whole report
    raw: bytes = b""  # as received, kept in the events
    events: list[Envelope] = field(default_factory=list)  # made by the input (online, raw records)
    on_done: Callable[[Outcome], None] | None = None  # once stored, or not
    context: dict[str, object] = field(default_factory=dict)  # fields for log lines (serial, peer)
    origin: str | None = None  # the events' origin ("serial:<dialect>", "mqtt:<codec>"); None: gb26875
    queued_at: float = 0.0


@dataclass(frozen=True, slots=True)
class IngestSettings:
    max_batch: int = 500  # reports per batch (a batch's events are one group commit)
    max_in_flight: int = 4  # non-fire batches being stored at once; fire batches never wait
    queue_limit: int = 10_000  # non-fire reports waiting before inputs are told to stop reading
    resume_at: float = 0.5  # ... and told to go on below this share of it
    link_max_wait: float = 2.0  # seconds link work waits behind normal work at most

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_in_flight < 1 or self.queue_limit < 1:
            raise ValueError("max_batch, max_in_flight and queue_limit must be >= 1")
        if not 0 < self.resume_at <= 1:
            raise ValueError(f"resume_at must be in (0, 1], got {self.resume_at}")


class Ingest:
    """Run `run()` in a TaskGroup; inputs call `submit`, internal work awaits `put`/`store`."""

    def __init__(
        self,
        sink: EventSink,
        normalizer: Normalizer,
        settings: IngestSettings | None = None,
        *,
        now_local: Callable[[], datetime] = device_now,
    ) -> None:
        self.sink = sink
        self.normalizer = normalizer
        self.settings = settings or IngestSettings()
        self.now_local = now_local
        self._queues: dict[Lane, deque[Report]] = {lane: deque() for lane in Lane}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._in_flight = 0  # non-fire batches being stored
        self._busy = 0  # batches being stored, fire included
        self._waiting_room: list[Callable[[], None]] = []
        self._throttle = Throttle(log)

    # -- inputs ----------------------------------------------------------------------------

    def submit(self, report: Report) -> None:
        """Queue a report; never blocks and never refuses (a full queue is the caller's to
        respect through `full`, and a fire is always taken)."""
        report.queued_at = time.monotonic()
        queue = self._queues[report.lane]
        queue.append(report)
        metrics.depth[report.lane].set(len(queue))
        self._idle.clear()
        self._wake.set()

    @property
    def waiting(self) -> int:
        """Non-fire reports waiting."""
        return len(self._queues[Lane.NORMAL]) + len(self._queues[Lane.LINK])

    @property
    def full(self) -> bool:
        return self.waiting >= self.settings.queue_limit

    def when_room(self, resume: Callable[[], None]) -> None:
        """Call ``resume`` once the queue has drained below the resume mark."""
        self._waiting_room.append(resume)
        metrics.paused.set(len(self._waiting_room))

    async def put(self, report: Report) -> Outcome:
        """Submit and wait for the outcome."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        then = report.on_done

        def finished(outcome: Outcome) -> None:
            if then is not None:
                then(outcome)
            if not done.done():
                done.set_result(outcome)

        report.on_done = finished
        self.submit(report)
        return await done

    async def store(self, events: Sequence[Envelope], *, lane: Lane = Lane.NORMAL) -> None:
        """Store events made inside firegate (offline, duty check results); raises
        NotStoredError when they could not be."""
        if events and not await self.put(Report(device="", lane=lane, events=list(events))):
            raise NotStoredError(len(events))

    async def idle(self) -> None:
        """Wait until nothing is queued or being stored (bound it with asyncio.timeout)."""
        await self._idle.wait()

    # -- the batcher ------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            while True:
                stop_if_cancelled()
                self._update_lag()
                fires = self._queues[Lane.FIRE]
                if fires:
                    tg.create_task(self._commit(self._take(Lane.FIRE), Lane.FIRE))
                    continue
                if self._in_flight < self.settings.max_in_flight:
                    lane = self._next_lane()
                    if lane is not None:
                        self._in_flight += 1
                        tg.create_task(self._commit(self._take(lane), lane))
                        continue
                if not self._busy and not any(self._queues.values()):
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()

    def _next_lane(self) -> Lane | None:
        """Normal work before link work (devices already connected before a reconnect storm),
        but link work that has waited ``link_max_wait`` goes next: second, never starved."""
        link = self._queues[Lane.LINK]
        if link and time.monotonic() - link[0].queued_at > self.settings.link_max_wait:
            return Lane.LINK
        return next((ln for ln in (Lane.NORMAL, Lane.LINK) if self._queues[ln]), None)

    def _take(self, lane: Lane) -> list[Report]:
        """A batch from ``lane``; a normal batch with room left takes link work after its own
        (the group commit costs the same): link work waits only while normal work fills them."""
        batch: list[Report] = []
        now = time.monotonic()
        lanes = (Lane.NORMAL, Lane.LINK) if lane is Lane.NORMAL else (lane,)
        for each in lanes:
            queue = self._queues[each]
            n = min(len(queue), self.settings.max_batch - len(batch))
            if not n:
                continue
            observe = metrics.queued[each].observe
            for _ in range(n):
                report = queue.popleft()
                observe(now - report.queued_at)
                batch.append(report)
            metrics.depth[each].set(len(queue))
        self._busy += 1
        metrics.batch_reports.observe(len(batch))
        if self._waiting_room and self.waiting <= self.settings.queue_limit * self.settings.resume_at:
            resume, self._waiting_room = self._waiting_room, []
            metrics.paused.set(0)
            for callback in resume:
                callback()
        return batch

    def _update_lag(self) -> None:
        now = time.monotonic()
        for lane, queue in self._queues.items():
            metrics.lag[lane].set(now - queue[0].queued_at if queue else 0.0)

    async def _commit(self, batch: list[Report], lane: Lane) -> None:
        finished = False
        try:
            events: list[Envelope] = []
            states = {}
            received = datetime.now(UTC)
            raw_only: set[int] = set()
            for i, report in enumerate(batch):
                if i and not i % _YIELD_EVERY:
                    await asyncio.sleep(0)  # a big batch must not hold up a fire's ack or reads
                events.extend(report.events)
                if report.unit is not None:
                    try:
                        normalized = await self.normalizer.normalize(
                            report.device,
                            report.unit,
                            frame_time=report.frame_time,
                            raw=report.raw,
                            received_at=received,
                            origin=report.origin,
                        )
                    except Exception:
                        # one bad point must never block a batch (a fire alarm among it)
                        fields = {"device": report.device, **report.context}
                        log.exception("normalizing failed; stored raw", extra=fields)
                        raw_only.add(i)
                        site = self.normalizer.site_of(report.device)
                        events.extend(_fallback(report, site, received))
                    else:
                        events.extend(normalized.events)
                        states.update(normalized.states)
            stored = await self._publish(events, lane)
            if stored and lane is not Lane.FIRE:
                await self.normalizer.memory.put_many(states)
            finished = True
            self._finish(batch, lane, stored, raw_only)
            if stored:
                if lane is Lane.FIRE:
                    # a fire is confirmed once its events are stored, without waiting for the
                    # point states too (put_many remembers them before its first wait, so the
                    # device's next report, taken later, is judged against them)
                    await self.normalizer.memory.put_many(states)
                self._observe_device_to_bus(events)
        except Exception:
            # a bug met here costs this batch (its devices resend), never ingest and every input
            log.exception("ingest failed on a batch of %d report(s)", len(batch))
            if not finished:
                self._finish(batch, lane, False, set())
        finally:
            self._busy -= 1
            if lane is not Lane.FIRE:
                self._in_flight -= 1
            self._wake.set()

    def _finish(self, batch: list[Report], lane: Lane, stored: bool, raw_only: set[int]) -> None:
        """Tell each report's input how it went."""
        for i, report in enumerate(batch):
            if not stored:
                outcome = Outcome.NOT_STORED
            else:
                outcome = Outcome.STORED_RAW if i in raw_only else Outcome.STORED
            metrics.reports[(report.lane, outcome)].inc()
            if report.on_done is not None:
                try:
                    report.on_done(outcome)
                except Exception:
                    log.exception("an input failed to take its report back", extra={"device": report.device})

    async def _publish(self, events: list[Envelope], lane: Lane) -> bool:
        if not events:
            return True
        try:
            await self.sink.publish(events, fire=lane is Lane.FIRE)
        except Exception as e:
            self._throttle.log(
                f"not_stored.{lane.name}",
                logging.ERROR if lane is Lane.FIRE else logging.WARNING,
                "%d %s event(s) not stored; their devices are not confirmed and will resend: %s",
                len(events),
                lane.name.lower(),
                e,
            )
            return False
        return True

    def _observe_device_to_bus(self, events: list[Envelope]) -> None:
        # both in the device time zone (a naive time is read in it, never in the host's zone)
        stored_at = device_time(self.now_local())
        assert stored_at is not None
        observe = metrics.DEVICE_TO_BUS.observe
        for event in events:
            occurred = device_time(event.occurred_at)
            if occurred is not None and event.kind != "device":
                observe((stored_at - occurred).total_seconds())


_FIRE_SOURCE: dict[int, Literal["system", "component", "uitd", "operation"]] = {
    1: "system",
    2: "component",
    21: "uitd",
    24: "operation",
}


def _fallback(report: Report, site: str, received: datetime) -> list[Envelope]:
    """Events for a report normalization failed on: the raw record, and a fire alarm if it
    carried one, so the alarm still reaches fire.alarm.<device>."""
    assert report.unit is not None
    type_flag = report.unit.type
    raw_data = report.unit.raw  # the objects' bytes: the id's basis, as for normalized events
    common = {
        "device": report.device,
        "site": site,
        "occurred_at": device_time(report.frame_time),
        "received_at": received,
        "raw": report.raw.hex(),
        "origin": report.origin or "gb26875",
    }
    events: list[Envelope] = [
        DeviceInfo(
            id=event_id(report.device, type_flag, raw_data, "raw"),
            info_type=type_flag,
            info_type_name=name_of(TypeFlag, type_flag),
            info_type_zh=zh_of(TypeFlag, type_flag),
            point=Point(),
            data={"raw": raw_data.hex(), "error": "normalization failed"},
            **common,
        )
    ]
    if report.lane is Lane.FIRE:
        events.append(
            FireAlarm(
                id=event_id(report.device, type_flag, raw_data, "alarm"),
                source=_FIRE_SOURCE.get(type_flag, "uitd"),
                point=Point(),
                **common,
            )
        )
    return events
