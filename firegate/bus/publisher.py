"""Durable publishing: JetStream first, the local spool when NATS does not answer.

A caller may confirm a frame to its device only once ``publish`` has
returned an outcome: each is durable (a JetStream ack, or an fsync'd spool
record). Retries within a publish and the spool's replay reuse the record's
msg id, so whatever JetStream already stored comes back as a duplicate and is
stored once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from nats.aio.client import Client as NATS

from firegate.aio import stop_if_cancelled
from firegate.bus import metrics
from firegate.bus.errors import BusError, PublishError, SpoolFullError
from firegate.bus.jetstream import MAX_BATCH, AckMux, PubAck
from firegate.bus.retention import Store, store_of
from firegate.bus.spool import Record, Spool, SpoolBatch
from firegate.ops.logging import Throttle

log = logging.getLogger(__name__)

__all__ = ["PublishOutcome", "Publisher", "PublisherSettings", "Record"]


class PublishOutcome(enum.StrEnum):
    STORED = "stored"  # JetStream stored it
    DUPLICATE = "duplicate"  # JetStream already had this msg id
    SPOOLED = "spooled"  # in the local spool, replayed when NATS answers


@dataclass(frozen=True, slots=True)
class PublisherSettings:
    retry_for: float = 3.0  # how long a publish retries JetStream before spooling
    ack_timeout: float = 1.0  # one attempt's wait for its ack
    backoff_initial: float = 0.05
    backoff_max: float = 0.5
    replay_batch: int = 256  # records per pipelined replay round
    replay_backoff_max: float = 5.0
    replay_poll: float = 0.25  # how often a waiting replayer looks whether NATS is back
    dedupe_window: float = 120.0  # how long a stored msg id is known here (the stream's window)
    dedupe_max: int = 200_000  # ... and how many at most

    def __post_init__(self) -> None:
        for name in (
            "retry_for",
            "ack_timeout",
            "backoff_initial",
            "backoff_max",
            "replay_backoff_max",
            "replay_poll",
            "dedupe_window",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.replay_batch < 1:
            raise ValueError(f"replay_batch must be >= 1, got {self.replay_batch}")


_MIN_ATTEMPT = 0.05  # the last attempt before the deadline still gets this long
_SLOW_GRACE = 3.0  # while JetStream answers, retry up to this many times retry_for before spooling
_BATCHES_IN_FLIGHT = 16  # atomic batches awaiting their commit at once (the server caps them)
_KNOWN = PubAck("", 0, duplicate=True)  # stored by this publisher within the dedupe window


class Publisher:
    """Publishes records with acks; spools what JetStream does not take in time.

    Use as ``async with Publisher(nc, spool) as pub:`` and run
    ``pub.run_replayer()`` in the owner's TaskGroup.
    """

    def __init__(self, nc: NATS, spool: Spool, settings: PublisherSettings | None = None) -> None:
        self._nc = nc
        self._spool = spool
        self.settings = settings or PublisherSettings()
        self._mux = AckMux(nc)
        self._batching = True
        self._batch_slots = asyncio.Semaphore(_BATCHES_IN_FLIGHT)
        self.last_spooled = 0.0  # loop time events last went to the spool instead of JetStream
        self._throttle = Throttle(log)
        # msg ids stored lately, oldest first: a resend is known without a refused batch
        self._stored_ids: OrderedDict[str, float] = OrderedDict()

    async def start(self) -> None:
        await self._mux.start()

    async def close(self) -> None:
        await self._mux.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- publishing -------------------------------------------------------------------

    async def publish(self, subject: str, payload: bytes, msg_id: str, *, fire: bool) -> PublishOutcome:
        """Store one event durably. Raises SpoolFullError (non-fire, spool full),
        SpoolError (spool I/O) or PublishError (a record NATS can never take)."""
        return (await self.publish_many((Record(subject, msg_id, payload, fire),)))[0]

    async def publish_many(self, records: Sequence[Record]) -> list[PublishOutcome]:
        """Store records (many frames' events: a group commit), batched; outcomes in the order given.

        On SpoolFullError the fire records among them are already spooled;
        the frame must not be confirmed (the device retransmits, and what was
        stored comes back as duplicates).
        """
        started = time.perf_counter()
        try:
            outcomes = await self._publish_with_retry(records)
        finally:
            metrics.publish_latency.observe(time.perf_counter() - started)
        return outcomes

    async def _publish_with_retry(self, records: Sequence[Record]) -> list[PublishOutcome]:
        settings = self.settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + settings.retry_for
        outcomes: list[PublishOutcome | None] = [None] * len(records)
        todo = list(range(len(records)))
        delay = settings.backoff_initial
        while True:
            stop_if_cancelled()
            attempt = min(settings.ack_timeout, max(deadline - loop.time(), _MIN_ATTEMPT))
            results = await self._send_grouped([records[i] for i in todo], attempt)
            failed: list[int] = []
            for i, result in zip(todo, results, strict=True):
                if isinstance(result, PublishError):
                    if not result.retryable:
                        metrics.publish_result["failed"].inc()
                        raise result
                    metrics.publish_retry.get(result.reason, metrics.publish_retry["api_error"]).inc()
                    failed.append(i)
                else:
                    outcome = PublishOutcome.DUPLICATE if result.duplicate else PublishOutcome.STORED
                    metrics.publish_result[outcome].inc()
                    outcomes[i] = outcome
            todo = failed
            now = loop.time()
            if now >= deadline and self._answering(now) and now < started + settings.retry_for * _SLOW_GRACE:
                # NATS is slow, not away: the spool is for an outage, so keep at it a while longer
                deadline = min(now + settings.ack_timeout, started + settings.retry_for * _SLOW_GRACE)
            remaining = deadline - now
            if not todo or remaining <= 0:
                break
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, settings.backoff_max)
        if todo:
            await self._spool_records([records[i] for i in todo])
            for i in todo:
                outcomes[i] = PublishOutcome.SPOOLED
        return [o for o in outcomes if o is not None]

    def storing(self) -> tuple[bool, str]:
        """Does JetStream store what this publisher sends? Not since the last spooling until it
        acks something again (the replayer's first success counts): the readiness of a gateway
        whose stream has no leader, or whose NATS is away."""
        if self.last_spooled == 0.0 or self._mux.last_ack > self.last_spooled:
            return True, "storing"
        ago = asyncio.get_running_loop().time() - self.last_spooled
        return False, f"spooling: JetStream has stored nothing since {ago:.0f} s"

    def _answering(self, now: float) -> bool:
        """Did JetStream store anything for us lately? Then a timeout is load, not an outage."""
        return self._nc.is_connected and now - self._mux.last_ack < self.settings.ack_timeout

    async def _send_grouped(
        self, records: Sequence[Record], ack_timeout: float
    ) -> list[PubAck | PublishError]:
        """Send records as atomic batches (one synchronous write each on the server), each batch
        within one stream (`store_of`: a batch over two streams is never committed). A msg id
        this publisher stored lately, or one twice in the same call, is a duplicate without
        asking: the server would refuse the whole batch for it."""
        results: list[PubAck | PublishError | None] = [None] * len(records)
        fresh: list[int] = []
        seen: set[str] = set()
        for i, r in enumerate(records):
            if r.msg_id in self._stored_ids or r.msg_id in seen:
                results[i] = _KNOWN
            else:
                seen.add(r.msg_id)
                fresh.append(i)
        if len(fresh) < 2 or not self._batching:
            sent = await self._send_all([records[i] for i in fresh], ack_timeout)
            metrics.store_writes["stream"].inc(sum(isinstance(r, PubAck) for r in sent))
            done = list(zip(fresh, sent, strict=True))
        else:
            # an atomic batch is stored by one stream: records and telemetry are batched apart
            by_store: dict[Store, list[int]] = {}
            for i in fresh:
                by_store.setdefault(store_of(records[i].subject), []).append(i)
            chunks = [
                indexes[n : n + MAX_BATCH]
                for indexes in by_store.values()
                for n in range(0, len(indexes), MAX_BATCH)
            ]
            parts = await asyncio.gather(
                *(self._send_batch([records[i] for i in chunk], ack_timeout) for chunk in chunks)
            )
            done = [
                pair
                for chunk, part in zip(chunks, parts, strict=True)
                for pair in zip(chunk, part, strict=True)
            ]
        now = asyncio.get_running_loop().time()
        for i, result in done:
            results[i] = result
            if isinstance(result, PubAck):
                self._remember(records[i].msg_id, now)
        return [r for r in results if r is not None]

    async def _send_batch(self, chunk: Sequence[Record], ack_timeout: float) -> list[PubAck | PublishError]:
        """One atomic batch. Refused whole for a msg id the server already has (a resend, or one
        stored through another gateway), it goes again one record at a time, where a duplicate
        is simply acked as one; refused because the stream (or the server) has no atomic
        batches, batching stops for good."""
        if len(chunk) < 2 or not self._batching:
            alone = await self._send_all(chunk, ack_timeout)
            metrics.store_writes["stream"].inc(sum(isinstance(r, PubAck) for r in alone))
            return alone
        async with self._batch_slots:  # many batches interleaved make the server refuse some
            try:
                result: PubAck | PublishError = await (
                    await self._mux.send_batch([(r.subject, r.payload, r.msg_id) for r in chunk], ack_timeout)
                )  # bounded: the mux fails it at ack_timeout
            except PublishError as e:
                result = e
        if isinstance(result, PubAck):
            metrics.batch_result["stored"].inc()
            metrics.batch_size.observe(len(chunk))
            metrics.store_writes["stream"].inc()
            return [result] * len(chunk)
        if result.reason != "batch_refused":
            return [result] * len(chunk)
        metrics.batch_result["refused"].inc()
        if "disabled" in result.detail:
            log.warning("no atomic batches (%s); publishing one by one", result.detail)
            self._batching = False
        sent = await self._send_all(chunk, ack_timeout)
        metrics.store_writes["stream"].inc(sum(isinstance(r, PubAck) for r in sent))
        return sent

    def _remember(self, msg_id: str, now: float) -> None:
        ids = self._stored_ids
        ids[msg_id] = now
        window = self.settings.dedupe_window
        while ids and (len(ids) > self.settings.dedupe_max or now - next(iter(ids.values())) > window):
            ids.popitem(last=False)

    async def _send_all(self, records: Sequence[Record], ack_timeout: float) -> list[PubAck | PublishError]:
        """Send every record, then await every ack: all in flight at once."""
        sent: list[asyncio.Future[PubAck] | PublishError] = []
        try:
            for r in records:
                try:
                    sent.append(await self._mux.send(r.subject, r.payload, r.msg_id, ack_timeout))
                except PublishError as e:
                    sent.append(e)
            results: list[PubAck | PublishError] = []
            for item in sent:
                if isinstance(item, PublishError):
                    results.append(item)
                    continue
                try:
                    results.append(await item)  # bounded: the mux fails it at ack_timeout
                except PublishError as e:
                    results.append(e)
            return results
        except BaseException:
            for item in sent:  # cancelled: nobody will read these acks
                if isinstance(item, asyncio.Future):
                    item.cancel()
            raise

    async def _spool_records(self, records: list[Record]) -> None:
        try:
            await self._spool.append_many(records)
        except SpoolFullError:
            fire = sum(1 for r in records if r.fire)
            metrics.publish_result["spooled"].inc(fire)
            metrics.publish_result["refused"].inc(len(records) - fire)
            raise
        except BusError:
            metrics.publish_result["failed"].inc(len(records))
            raise
        metrics.publish_result["spooled"].inc(len(records))
        self.last_spooled = asyncio.get_running_loop().time()
        self._throttle.log(  # a failover would print one per batch: the first, then a count
            "spooled",
            logging.WARNING,
            "NATS did not take %d event(s) within %g s; spooled (first: %s)",
            len(records),
            self.settings.retry_for,
            records[0].subject,
        )

    # -- replay -----------------------------------------------------------------------

    async def run_replayer(self) -> None:
        """Drain the spool into JetStream whenever NATS is connected; runs until cancelled.

        Fire records first, in spool order, with their original msg ids; a
        batch is committed in the spool only up to its first unacked record.
        """
        settings = self.settings
        delay = settings.backoff_initial
        while True:
            stop_if_cancelled()
            await self._spool.wait_nonempty()
            if not self._nc.is_connected:
                await asyncio.sleep(settings.replay_poll)
                continue
            try:
                drained = await self._replay_batch()
            except (BusError, OSError) as e:  # a spool read failing: keep the records, retry later
                log.error("spool replay failed: %s", e)
                drained = False
            if drained:
                delay = settings.backoff_initial
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, settings.replay_backoff_max)

    async def _replay_batch(self) -> bool:
        """Replay one batch; True if all of it went through."""
        batch = await self._spool.read_batch(self.settings.replay_batch)
        if batch is None:
            return True
        results = await self._send_all(batch.records, self.settings.ack_timeout)
        done = 0
        for result in results:
            if isinstance(result, PublishError):
                break
            done += 1
            metrics.spool_replayed["duplicate" if result.duplicate else "stored"].inc()
        await self._spool.commit(batch, done)
        if done < len(results):
            error = results[done]
            log.warning(
                "spool replay paused after %d of %d %s records: %s", done, len(results), _lane(batch), error
            )
            return False
        if self._spool.pending_records == 0:
            log.info("spool drained")
        return True


def _lane(batch: SpoolBatch) -> str:
    return "fire" if batch.fire else "other"
