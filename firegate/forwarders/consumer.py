"""Durable pull consumers on stream FIRE, as the lifecycle, the fault tracker and couriers use them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext


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
    replay months of events (an existing consumer keeps its position)."""
    config = ConsumerConfig(
        durable_name=durable,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=datetime.now(UTC) - timedelta(seconds=start_window),
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ack_wait,
        max_ack_pending=max_ack_pending,
    )
    if len(subjects) == 1:
        config.filter_subject = subjects[0]
    else:
        config.filter_subjects = list(subjects)
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
