"""From a durable JetStream consumer to one outside system, losing nothing.

A `Courier` fetches events from its own durable consumer, skips what its filter does not
want, and hands each event to its `Destination` in order per key (the incident for 119, the
device for faults; different keys go in parallel so one stuck incident never holds up
another). A message is acked only after the destination accepted it. Failures are retried
with exponential backoff and full jitter, keeping the message alive on the server
(``in_progress``) meanwhile; an event older than ``max_age`` that still fails, or one the
destination refuses as malformed, goes to the dead-letter stream with the reason, loudly
(ERROR log and metric), and only then is acked. If even the dead-letter stream cannot take
it, the message stays unacked and is tried again: nothing is ever dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext
from pydantic import ValidationError

from firegate import subjects
from firegate.aio import stop_if_cancelled
from firegate.bus.events import Envelope, parse_event
from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.forwarders import metrics as m
from firegate.forwarders.consumer import subscribe
from firegate.forwarders.delivery import Delivery, Destination
from firegate.forwarders.errors import DeliveryError, DeliveryFailed
from firegate.forwarders.precedence import Precedence
from firegate.forwarders.supervise import restarting

log = logging.getLogger(__name__)

DEAD_LETTER_STREAM = "FIRE_DEADLETTER"
DEAD_LETTER_PREFIX = subjects.DEAD_LETTERS
REPLAY_FOR = "Firegate-Replay-For"  # header of a replayed dead letter: the one consumer it is for


@dataclass(frozen=True, slots=True)
class CourierSettings:
    durable: str
    subjects: tuple[str, ...]
    max_age: float = 3600.0  # an event still undelivered this long after it was stored: dead letter
    ack_wait: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_in_flight: int = 256
    fetch_batch: int = 64


@dataclass
class _Lane:
    """Messages of one key (with their parsed events), delivered strictly one after another."""

    queue: deque[tuple[Msg, Envelope]] = field(default_factory=deque)
    running: bool = False


def _key_of_event(event: Envelope) -> str:
    return event.device


async def ensure_dead_letter_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """As every stream of firegate's: created, or brought to ``replicas`` at start."""
    settings = StreamSettings(
        name=DEAD_LETTER_STREAM,
        subjects=(f"{DEAD_LETTER_PREFIX}.>",),
        max_age=400 * 86400.0,
        num_replicas=replicas,
        allow_atomic=False,  # parked one at a time
    )
    await ensure_stream(js, settings)


def couriers_readiness(couriers: list[Courier]) -> tuple[bool, str]:
    """The ``forwarders`` readiness check: every consumer open (``n/n consumers open``). A lost
    broker is named in the detail (``; mqtt mqtt://host:1883 down for 42 s: ...``) without
    failing the check: a maintenance broker must not take a gateway out of its load balancer;
    firegate_forward_link_up is what to alert on."""
    up = sum(c.ready.is_set() for c in couriers)
    detail = f"{up}/{len(couriers)} consumers open"
    problems = [p for c in couriers if (p := c.link_problem()) is not None]
    return up == len(couriers), "; ".join([detail, *problems])


class Courier:
    def __init__(
        self,
        js: JetStreamContext,
        destination: Destination,
        settings: CourierSettings,
        *,
        stream: str = "FIRE",
        key: Callable[[Envelope], str] = _key_of_event,
        accept: Callable[[Envelope], bool] = lambda event: True,
        on_accepted: Callable[[Delivery], None] | None = None,
        superseded: Callable[[Envelope], bool] | None = None,
        newer: Callable[[Envelope, Envelope], bool] | None = None,
        precedence: Precedence | None = None,
        fire: bool = False,
    ) -> None:
        self.js = js
        self.precedence = precedence or Precedence()
        self.fire = fire  # delivers fire work (119): ahead of the fault couriers of this process
        self.destination = destination
        self.settings = settings
        self.stream = stream
        self.key = key
        self.accept = accept
        self.on_accepted = on_accepted
        self.superseded = superseded  # accepted already: a newer snapshot of the same thing went
        self.newer = newer  # (later, earlier): ``later`` replaces ``earlier`` for this destination
        self.label = destination.name
        self._lanes: dict[str, _Lane] = {}
        self._in_flight: set[int] = set()  # stream sequences fetched and not yet acked
        self._freed = asyncio.Event()  # set whenever a delivery ends and makes room
        self.ready = asyncio.Event()
        self._gauge = m.forward_in_flight.labels(destination=self.label)

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        # a new destination starts with what it could still deliver (max_age), not the stream's
        # whole history: a new 119 endpoint must not get last year's fires
        s = self.settings
        return await subscribe(
            self.js,
            self.stream,
            s.durable,
            s.subjects,
            start_window=s.max_age,
            ack_wait=s.ack_wait,
            max_ack_pending=s.max_in_flight,
        )

    def link_problem(self) -> str | None:
        """For a destination that keeps a connection (MQTT): what is wrong with it, else None."""
        if getattr(self.destination, "link_up", True):
            return None
        return f"{self.label} {getattr(self.destination, 'link_state', 'down')}"

    async def run(self) -> None:
        """Until cancelled. NATS trouble is waited out; even a bug in a delivery only restarts
        this courier (what it held unacked is redelivered), never the whole process. A
        destination that keeps a connection (``keep_link``) keeps it meanwhile."""
        keep_link = getattr(self.destination, "keep_link", None)
        link = None
        if inspect.iscoroutinefunction(keep_link):
            link = asyncio.create_task(keep_link(), name=f"{self.label} link")

        def with_traceback() -> None:  # an ExceptionGroup from a lane, or the pump itself: a bug
            log.exception("%s forwarder: an unexpected error", self.label)

        try:
            await restarting(f"{self.label} forwarder", self._session, with_traceback)
        finally:
            if link is not None:
                link.cancel()
                with contextlib.suppress(BaseException):
                    await link
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self.destination.close()

    async def _session(self) -> None:
        self._lanes.clear()
        self._in_flight.clear()
        async with asyncio.TaskGroup() as tg:
            beating = tg.create_task(self._heartbeat())
            try:
                await self._subscribed(tg)
            finally:
                beating.cancel()

    async def _heartbeat(self) -> None:
        """Tell the server every held message is still being worked on (the one in delivery or
        backoff and those queued behind it), so none is handed out again, out of order, while
        its lane is busy. One beat a third of ack_wait."""
        beat = max(0.5, self.settings.ack_wait / 3)
        while True:
            stop_if_cancelled()
            await asyncio.sleep(beat)
            for lane in list(self._lanes.values()):
                for held, _ in list(lane.queue):
                    with contextlib.suppress(Exception):
                        await held.in_progress()

    async def _subscribed(self, tg: asyncio.TaskGroup) -> None:
        while True:
            stop_if_cancelled()
            try:
                sub = await self._subscribe()
            except (TimeoutError, nats.errors.Error) as e:
                log.warning("%s forwarder: cannot open consumer %s: %r", self.label, self.settings.durable, e)
                await asyncio.sleep(1.0)
                continue
            self.ready.set()
            try:
                await self._pump(sub, tg)
            except (nats.errors.Error, OSError) as e:
                log.warning("%s forwarder: consumer lost (%r), reopening", self.label, e)
                await asyncio.sleep(1.0)
            finally:
                self.ready.clear()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _pump(self, sub: JetStreamContext.PullSubscription, tg: asyncio.TaskGroup) -> None:
        while True:
            stop_if_cancelled()
            room = self.settings.max_in_flight - len(self._in_flight)
            if room <= 0:
                self._freed.clear()
                await self._freed.wait()
                continue
            try:
                msgs = await sub.fetch(min(room, self.settings.fetch_batch), timeout=5.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in msgs:
                await self._route(msg, tg)

    async def _route(self, msg: Msg, tg: asyncio.TaskGroup) -> None:
        seq = msg.metadata.sequence.stream
        if seq in self._in_flight:
            return  # redelivered while we still work on it: the lane acks it once
        replay_for = (msg.headers or {}).get(REPLAY_FOR)
        if replay_for is not None and replay_for != self.settings.durable:
            await msg.ack()  # a dead letter replayed for another destination
            return
        try:
            event = parse_event(msg.data)
        except ValidationError as e:
            await self._dead_letter(msg, None, "unreadable", str(e)[:500])
            return
        if not self.accept(event):
            m.forward_filtered.labels(destination=self.label).inc()
            await msg.ack()
            return
        key = self.key(event)
        lane = self._lanes.setdefault(key, _Lane())
        lane.queue.append((msg, event))
        self._in_flight.add(seq)
        self._gauge.set(len(self._in_flight))
        if not lane.running:
            lane.running = True
            tg.create_task(self._drain(key, lane))

    async def _drain(self, key: str, lane: _Lane) -> None:
        try:
            while lane.queue:
                msg, event = lane.queue[0]
                try:
                    if self._superseded(event, lane):
                        m.forward_filtered.labels(destination=self.label).inc()
                        await self._ack(msg)
                    else:
                        await self._deliver(msg, event)
                finally:
                    lane.queue.popleft()
                    self._in_flight.discard(msg.metadata.sequence.stream)
                    self._gauge.set(len(self._in_flight))
                    self._freed.set()
        finally:
            lane.running = False
            if not lane.queue:
                self._lanes.pop(key, None)

    def _superseded(self, event: Envelope, lane: _Lane) -> bool:
        """A snapshot that a newer one replaces: already accepted, or waiting behind it."""
        if self.superseded is not None and self.superseded(event):
            return True
        newer = self.newer
        return newer is not None and any(newer(later, event) for _, later in list(lane.queue)[1:])

    async def _deliver(self, msg: Msg, event: Envelope) -> None:
        meta = msg.metadata
        stored_at = meta.timestamp.timestamp() if meta.timestamp else time.time()
        attempt = 0
        delay = self.settings.backoff_initial
        while True:
            stop_if_cancelled()
            attempt += 1
            delivery = Delivery(
                event=event,
                subject=msg.subject,
                data=msg.data,
                stream_seq=meta.sequence.stream,
                attempt=attempt,
            )
            try:
                if self.fire:
                    with self.precedence.fire_work():
                        await self.destination.deliver(delivery)
                else:
                    await self.precedence.yield_to_fires()
                    await self.destination.deliver(delivery)
            except DeliveryError as e:
                failure = e
            except Exception as e:  # a destination bug must not lose the event: retry it
                log.exception(
                    "%s forwarder: unexpected error delivering %s",
                    self.label,
                    event.id,
                    extra={"device": event.device, "event_id": event.id},
                )
                failure = DeliveryFailed("internal", repr(e))
            else:
                m.forward_attempts.labels(destination=self.label, result="accepted").inc()
                m.forward_latency.labels(destination=self.label).observe(max(0.0, time.time() - stored_at))
                if self.on_accepted is not None:
                    self.on_accepted(delivery)
                if attempt > 1:  # closes the retry warnings above it in the log
                    log.info(
                        "%s forwarder: %s delivered at attempt %d",
                        self.label,
                        event.id,
                        attempt,
                        extra={"device": event.device, "event_id": event.id, "attempt": attempt},
                    )
                await self._ack(msg)
                return
            m.forward_attempts.labels(destination=self.label, result="failed").inc()
            m.forward_failures.labels(destination=self.label, reason=failure.reason).inc()
            age = time.time() - stored_at
            if not failure.retryable or age > self.settings.max_age:
                why = "refused" if not failure.retryable else "max_age"
                if await self._dead_letter(msg, event, why, failure.detail):
                    return
            else:
                m.forward_retries.labels(destination=self.label).inc()
                if attempt == 1 or attempt % 10 == 0:
                    log.warning(
                        "%s forwarder: %s not delivered (attempt %d, %s), retrying",
                        self.label,
                        event.id,
                        attempt,
                        failure,
                        extra={"device": event.device, "event_id": event.id, "attempt": attempt},
                    )
            await asyncio.sleep(random.uniform(0, delay))  # full jitter; the heartbeat holds it
            delay = min(delay * 2, self.settings.backoff_max)

    async def _ack(self, msg: Msg) -> None:
        try:
            await msg.ack_sync(timeout=5.0)
        except (TimeoutError, nats.errors.Error) as e:
            # the destination has it; a redelivery is answered by its idempotency key
            log.warning(
                "%s forwarder: ack of seq %d not confirmed: %r", self.label, msg.metadata.sequence.stream, e
            )

    async def _dead_letter(self, msg: Msg, event: Envelope | None, reason: str, detail: str) -> bool:
        """Park the message in the dead-letter stream; True once stored (then it is acked)."""
        # the event's own subject key: a device, or an incident's site (fire.confirmed.<site>)
        key = event.subject.rsplit(".", 1)[-1] if event is not None else "unknown"
        subject = f"{DEAD_LETTER_PREFIX}.{self.settings.durable}.{key}"
        headers = {
            subjects.MSG_ID_HEADER: f"{self.settings.durable}.{msg.metadata.sequence.stream}",
            "Firegate-Destination": self.label,
            "Firegate-Reason": reason,
            "Firegate-Detail": detail.replace("\r", " ").replace("\n", " ")[:1000],
            "Firegate-Subject": msg.subject,
            "Firegate-Stream-Seq": str(msg.metadata.sequence.stream),
        }
        if event is not None:
            headers["Firegate-Event-Id"] = event.id
        try:
            await self.js.publish(subject, msg.data, timeout=5.0, stream=DEAD_LETTER_STREAM, headers=headers)
        except (TimeoutError, nats.errors.Error) as e:
            log.error(
                "%s forwarder: cannot dead-letter seq %d (%r): kept and retried",
                self.label,
                msg.metadata.sequence.stream,
                e,
                extra={"device": event.device if event is not None else None},
            )
            return False
        m.forward_dead_letters.labels(destination=self.label, reason=reason).inc()
        log.error(
            "%s forwarder: DEAD LETTER %s (%s: %s) -> %s",
            self.label,
            event.id if event is not None else msg.subject,
            reason,
            detail,
            subject,
            extra={
                "device": event.device if event is not None else None,
                "event_id": event.id if event is not None else None,
                "reason": reason,
            },
        )
        await self._ack(msg)
        return True
