"""Durable pull consumers on stream FIRE, as the lifecycle, the fault tracker and couriers use them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from firegate.aio import stop_if_cancelled

log = logging.getLogger(__name__)


async def subscribe(
    js: JetStreamContext,
    stream: str,
    durable: str,
    subjects: Sequence[str],
    *,
    start_window: float,
    ack_wait: float,
    max_ack_pending: int = 256,
) -> JetStreamContext.PullSubscription:
    """Bind to the durable consumer, creating it if needed. A new one starts ``start_window``
    seconds back, never at the stream's beginning: an upgrade or a new destination must not
    replay months of events. An existing one keeps its position, and takes a changed
    ``ack_wait``, ``max_ack_pending`` or subject filter from the configuration."""
    existed = await _update_existing(js, stream, durable, subjects, ack_wait, max_ack_pending)
    start = datetime.now(UTC) - timedelta(seconds=start_window)
    config = ConsumerConfig(
        durable_name=durable,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=start,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_ack_pending=max_ack_pending,
    )
    if len(subjects) == 1:
        config.filter_subject = subjects[0]
    else:
        config.filter_subjects = list(subjects)
    if not existed:  # says why events from before this start are delivered now
        log.info(
            "consumer %s created: it takes %s from %s on",
            durable,
            ", ".join(subjects),
            start.isoformat(timespec="seconds"),
        )
    return await js.pull_subscribe(subjects[0], durable=durable, stream=stream, config=config)


async def pull_forever(
    sub: JetStreamContext.PullSubscription,
    handle: Callable[[Msg], Awaitable[None]],
    ready: asyncio.Event,
    batch: int = 64,
) -> None:
    """Hand every message to ``handle`` in order, until cancelled or the subscription fails."""
    ready.set()
    try:
        while True:
            stop_if_cancelled()
            try:
                msgs = await sub.fetch(batch, timeout=5.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for msg in msgs:
                await handle(msg)
    finally:
        ready.clear()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _update_existing(
    js: JetStreamContext,
    stream: str,
    durable: str,
    subjects: Sequence[str],
    ack_wait: float,
    max_ack_pending: int,
) -> bool:
    """Bring an existing consumer's settings up to date. False: there is none yet."""
    try:
        current = (await js.consumer_info(stream, durable)).config
    except nats.js.errors.NotFoundError:
        return False
    filters = list(subjects)
    now_filters = current.filter_subjects or ([current.filter_subject] if current.filter_subject else [])
    if (current.ack_wait, current.max_ack_pending, sorted(now_filters)) == (
        ack_wait,
        max_ack_pending,
        sorted(filters),
    ):
        return True
    one = len(filters) == 1
    await js.add_consumer(
        stream,
        current.evolve(
            ack_wait=ack_wait,
            max_ack_pending=max_ack_pending,
            filter_subject=filters[0] if one else None,
            filter_subjects=None if one else filters,
        ),
    )
    log.info(
        "consumer %s updated: ack_wait %s s, max_ack_pending %s, subjects %s",
        durable,
        ack_wait,
        max_ack_pending,
        ", ".join(filters),
    )
    return True
