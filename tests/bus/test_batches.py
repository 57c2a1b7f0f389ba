"""Group commit: JetStream atomic batches as the publisher uses them, checked against a real
nats-server before anything relies on them (msg-id dedupe, a batch cut short, old streams)."""

from __future__ import annotations

import asyncio
import json

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StorageType, StreamConfig
from nats.js.client import JetStreamContext

from firegate.bus.errors import PublishError
from firegate.bus.jetstream import (
    BATCH_ID_HEADER,
    BATCH_SEQUENCE_HEADER,
    MSG_ID_HEADER,
    StreamSettings,
    ensure_stream,
)
from firegate.bus.publisher import Publisher, PublishOutcome, Record
from firegate.bus.spool import Spool
from tests.bus.test_publisher import FAST, sample, stream_msg_ids


def records(start: int, n: int) -> list[Record]:
    return [
        Record(f"fire.fault.{i}", f"fault-{i}", json.dumps({"i": i}).encode())
        for i in range(start, start + n)
    ]


async def test_many_records_are_one_atomic_batch(js: JetStreamContext, nc: NATS, spool: Spool) -> None:
    batches = sample("firegate_publish_batches_total", result="stored")
    async with Publisher(nc, spool, FAST) as pub:
        outcomes = await pub.publish_many(records(0, 300))
    assert outcomes == [PublishOutcome.STORED] * 300
    assert sample("firegate_publish_batches_total", result="stored") == batches + 1
    assert await stream_msg_ids(js) == [f"fault-{i}" for i in range(300)]


async def test_a_resend_this_publisher_stored_is_a_duplicate_without_a_refused_batch(
    js: JetStreamContext, nc: NATS, spool: Spool
) -> None:
    async with Publisher(nc, spool, FAST) as pub:
        await pub.publish_many(records(0, 5))
        refused = sample("firegate_publish_batches_total", result="refused")
        outcomes = await pub.publish_many(records(3, 5) + records(6, 1))  # 3, 4 resent; 6 twice
    assert sample("firegate_publish_batches_total", result="refused") == refused
    assert outcomes == [PublishOutcome.DUPLICATE] * 2 + [PublishOutcome.STORED] * 3 + [
        PublishOutcome.DUPLICATE
    ]
    assert await stream_msg_ids(js) == [f"fault-{i}" for i in range(8)]


async def test_a_batch_refused_for_an_id_stored_elsewhere_goes_one_by_one_and_stores_each_once(
    js: JetStreamContext, nc: NATS, spool: Spool
) -> None:
    """Another gateway (or this one before a restart) stored some ids: the server refuses the
    batch whole, and its records go again one at a time, the stored ones acked as duplicates."""
    async with Publisher(nc, spool, FAST) as other:
        await other.publish_many([records(0, 100)[i] for i in (17, 60)])
    refused = sample("firegate_publish_batches_total", result="refused")
    async with Publisher(nc, spool, FAST) as pub:
        outcomes = await pub.publish_many(records(0, 100))
        assert pub._batching  # a duplicate does not turn batching off
    assert [i for i, o in enumerate(outcomes) if o is PublishOutcome.DUPLICATE] == [17, 60]
    assert outcomes.count(PublishOutcome.STORED) == 98
    assert sample("firegate_publish_batches_total", result="refused") == refused + 1
    ids = await stream_msg_ids(js)
    assert sorted(ids) == sorted(f"fault-{i}" for i in range(100)) and len(set(ids)) == 100


async def test_a_batch_cut_short_stores_nothing(js: JetStreamContext, nc: NATS) -> None:
    """What a gateway killed mid-batch leaves: messages without their commit are never stored,
    so the unconfirmed frames' events come again, whole, when the devices resend."""
    for n in range(1, 4):
        headers = {MSG_ID_HEADER: f"cut-{n}", BATCH_ID_HEADER: "cut", BATCH_SEQUENCE_HEADER: str(n)}
        await nc.publish("fire.fault.1", b"{}", headers=headers)
    await nc.flush()
    await asyncio.sleep(0.5)
    assert (await js.stream_info("FIRE")).state.messages == 0


async def test_an_older_stream_is_given_atomic_batches(nc: NATS) -> None:
    js = nc.jetstream(timeout=5.0)
    await js.add_stream(StreamConfig(name="FIRE", subjects=["fire.>"], storage=StorageType.FILE))
    assert not (await js.stream_info("FIRE")).config.allow_atomic
    await ensure_stream(js, StreamSettings())
    assert (await js.stream_info("FIRE")).config.allow_atomic


async def test_a_stream_without_batches_still_stores_everything(nc: NATS, spool: Spool) -> None:
    js = nc.jetstream(timeout=5.0)
    await ensure_stream(js, StreamSettings(allow_atomic=False))
    async with Publisher(nc, spool, FAST) as pub:
        first = await pub.publish_many(records(0, 10))
        second = await pub.publish_many(records(10, 10))  # batching turned off after the refusal
    assert first + second == [PublishOutcome.STORED] * 20
    assert await stream_msg_ids(js) == [f"fault-{i}" for i in range(20)]
    assert spool.pending_records == 0


async def test_nats_slow_but_answering_is_waited_for_not_spooled(
    js: JetStreamContext, nc: NATS, spool: Spool
) -> None:
    """The spool is for NATS being away: while acks still arrive (a loaded server), a publish
    that outlives bus.publish_retry keeps trying instead of spooling."""
    async with Publisher(nc, spool, FAST) as pub:
        mux = pub._mux
        real_send = mux.send
        slow_until = asyncio.get_running_loop().time() + FAST.retry_for * 2

        async def slow_send(subject: str, payload: bytes, msg_id: str, ack_timeout: float) -> object:
            loop = asyncio.get_running_loop()
            if loop.time() < slow_until:
                mux.last_ack = loop.time()  # others' acks keep coming: it answers, slowly
                raise PublishError(subject, msg_id, "timeout", retryable=True)
            return await real_send(subject, payload, msg_id, ack_timeout)

        mux.send = slow_send  # type: ignore[method-assign]
        outcome = (await pub.publish_many(records(0, 1)))[0]
    assert outcome is PublishOutcome.STORED
    assert spool.pending_records == 0
    assert await stream_msg_ids(js) == ["fault-0"]


async def test_a_commit_acked_like_a_plain_publish_is_not_taken_for_the_batch() -> None:
    """A server without atomic batches (before 2.12) stores the commit message alone and acks it
    as a plain publish: the rest of the batch may be lost. That ack must not confirm the batch."""
    from types import SimpleNamespace

    from firegate.bus.jetstream import AckMux

    nc = SimpleNamespace(new_inbox=lambda: "_INBOX.test", is_connected=True)
    mux = AckMux(nc)  # type: ignore[arg-type]
    mux._sub = object()  # type: ignore[assignment]  # as if started: only _on_reply is exercised
    token, future = mux._expect("fire.fault.1", "fault-2", 5.0)
    mux._pending[token].batch = ("b1", 2)
    plain = SimpleNamespace(subject=mux._prefix + token, headers=None, data=b'{"stream":"FIRE","seq":7}')
    await mux._on_reply(plain)  # type: ignore[arg-type]
    with pytest.raises(PublishError) as refused:
        await future
    assert refused.value.reason == "batch_refused" and "disabled" in refused.value.detail

    token, future = mux._expect("fire.fault.1", "fault-4", 5.0)
    mux._pending[token].batch = ("b2", 2)
    ack = b'{"stream":"FIRE","seq":9,"batch":"b2","count":2}'
    await mux._on_reply(SimpleNamespace(subject=mux._prefix + token, headers=None, data=ack))  # type: ignore[arg-type]
    assert (await future).messages == 2
