"""The publisher: acks, retries through an outage, spool fallback and exactly-once replay."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from prometheus_client import REGISTRY

from firegate.bus.errors import PublishError, SpoolFullError
from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.bus.publisher import Publisher, PublisherSettings, PublishOutcome, Record
from firegate.bus.server import EmbeddedNatsServer
from firegate.bus.spool import Spool, encode_record
from tests.natsserver import nats_client, wait_until

FAST = PublisherSettings(
    retry_for=0.4,
    ack_timeout=0.2,
    backoff_initial=0.02,
    backoff_max=0.1,
    replay_backoff_max=0.2,
    replay_poll=0.05,
)


def rec(i: int, *, fire: bool = False) -> Record:
    kind = "alarm" if fire else "status"
    return Record(f"fire.{kind}.{i}", f"{kind}-{i}", json.dumps({"i": i}).encode() + b" " * 500, fire)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def stream_msg_ids(js: JetStreamContext) -> list[str]:
    """Every message in FIRE, in stream order, by msg id."""
    info = await js.stream_info("FIRE")
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg("FIRE", seq)
        assert msg.headers is not None
        ids.append(msg.headers["Nats-Msg-Id"])
    return ids


async def test_publish_stored_then_duplicate(js: JetStreamContext, nc: NATS, spool: Spool) -> None:
    async with Publisher(nc, spool, FAST) as pub:
        r = rec(1, fire=True)
        assert await pub.publish(r.subject, r.payload, r.msg_id, fire=True) is PublishOutcome.STORED
        assert await pub.publish(r.subject, r.payload, r.msg_id, fire=True) is PublishOutcome.DUPLICATE
        outcomes = await pub.publish_many([rec(2), rec(1, fire=True), rec(3, fire=True)])
    assert outcomes == [PublishOutcome.STORED, PublishOutcome.DUPLICATE, PublishOutcome.STORED]
    assert await stream_msg_ids(js) == ["alarm-1", "status-2", "alarm-3"]
    assert spool.pending_records == 0


async def test_oversized_payload_is_refused_not_spooled(js: JetStreamContext, nc: NATS, spool: Spool) -> None:
    async with Publisher(nc, spool, FAST) as pub:
        with pytest.raises(PublishError) as e:
            await pub.publish("fire.status.1", b"x" * (nc.max_payload + 1), "big", fire=False)
    assert e.value.reason == "too_large" and not e.value.retryable
    assert spool.pending_records == 0


async def test_publish_rides_out_a_short_outage(
    nats_server: EmbeddedNatsServer, nc: NATS, js: JetStreamContext, spool: Spool
) -> None:
    settings = PublisherSettings(retry_for=8.0, ack_timeout=0.3, backoff_initial=0.02, backoff_max=0.1)
    async with Publisher(nc, spool, settings) as pub:
        nats_server.kill()  # e.g. a leader election in a cluster

        async def restart_soon() -> None:
            await asyncio.sleep(0.5)
            await nats_server.start()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(restart_soon())
            outcome = await pub.publish("fire.alarm.9", b"{}", "alarm-9", fire=True)
    assert outcome is PublishOutcome.STORED  # retried with the same msg id, not spooled
    assert spool.pending_records == 0
    assert await stream_msg_ids(js) == ["alarm-9"]


async def test_outage_spools_then_replay_delivers_each_once_fire_first(
    nats_server: EmbeddedNatsServer, nc: NATS, js: JetStreamContext, tmp_path: Path
) -> None:
    spooled_before = sample("firegate_publish_total", result="spooled")
    async with Spool(tmp_path / "spool") as spool, Publisher(nc, spool, FAST) as pub:
        before = [rec(0), rec(1, fire=True)]
        assert await pub.publish_many(before) == [PublishOutcome.STORED] * 2
        nats_server.kill()
        await wait_until(lambda: not nc.is_connected, 5)
        during = [rec(i) for i in range(2, 30)] + [rec(i, fire=True) for i in range(30, 40)]
        during += before  # retransmitted frames: stored before the outage, known here
        spool_order: list[str] = []  # when publish returns, the record is in the spool

        async def publish(r: Record) -> PublishOutcome:
            outcome = await pub.publish(r.subject, r.payload, r.msg_id, fire=r.fire)
            spool_order.append(r.msg_id)
            return outcome

        outcomes = await asyncio.gather(*(publish(r) for r in during))
        assert outcomes[-2:] == [PublishOutcome.DUPLICATE] * 2  # no need of NATS to know them
        assert set(outcomes[:-2]) == {PublishOutcome.SPOOLED}
        assert spool.pending_records == len(during) - 2
        assert sample("firegate_publish_total", result="spooled") - spooled_before == len(during) - 2

        await nats_server.start()
        async with asyncio.TaskGroup() as tg:
            replayer = tg.create_task(pub.run_replayer())
            await wait_until(lambda: spool.pending_records == 0, 10)
            replayer.cancel()
        ids = await stream_msg_ids(js)
    assert sorted(ids) == sorted({r.msg_id for r in before + during})  # every record exactly once
    fire = {r.msg_id for r in during if r.fire}
    new = [i for i in spool_order if i not in {r.msg_id for r in before}]
    assert ids[len(before) :] == [i for i in new if i in fire] + [i for i in new if i not in fire]


async def test_replay_after_gateway_restart(
    nats_server: EmbeddedNatsServer, js: JetStreamContext, tmp_path: Path
) -> None:
    # A previous run spooled records and died; this run finds and replays them.
    async with Spool(tmp_path / "spool") as spool:
        await spool.append_many([rec(1), rec(2, fire=True), rec(3)])
    async with (
        Spool(tmp_path / "spool") as spool,
        nats_client(nats_server.url) as nc,
        Publisher(nc, spool, FAST) as pub,
    ):
        assert spool.pending_records == 3
        async with asyncio.TaskGroup() as tg:
            replayer = tg.create_task(pub.run_replayer())
            await wait_until(lambda: spool.pending_records == 0, 10)
            replayer.cancel()
    assert await stream_msg_ids(js) == ["alarm-2", "status-1", "status-3"]


async def test_full_spool_refuses_other_but_spools_fire(
    nats_server: EmbeddedNatsServer, nc: NATS, js: JetStreamContext, tmp_path: Path
) -> None:
    limit = 2 * len(encode_record(rec(1)))
    async with Spool(tmp_path / "spool", max_bytes=limit) as spool, Publisher(nc, spool, FAST) as pub:
        nats_server.kill()
        await wait_until(lambda: not nc.is_connected, 5)
        assert await pub.publish_many([rec(1), rec(2)]) == [PublishOutcome.SPOOLED] * 2
        with pytest.raises(SpoolFullError):
            await pub.publish("fire.status.3", rec(3).payload, "status-3", fire=False)
        for i in range(3):
            r = rec(10 + i, fire=True)
            assert await pub.publish(r.subject, r.payload, r.msg_id, fire=True) is PublishOutcome.SPOOLED
        assert spool.pending_by_lane() == {"fire": 3, "other": 2}


async def test_publish_after_stream_appears(nc: NATS, spool: Spool) -> None:
    # No stream yet (e.g. a cluster still electing): spooled, replayed once it exists.
    async with Publisher(nc, spool, FAST) as pub:
        assert await pub.publish("fire.alarm.1", b"{}", "alarm-1", fire=True) is PublishOutcome.SPOOLED
        js = nc.jetstream(timeout=5)
        await ensure_stream(js, StreamSettings())
        async with asyncio.TaskGroup() as tg:
            replayer = tg.create_task(pub.run_replayer())
            await wait_until(lambda: spool.pending_records == 0, 10)
            replayer.cancel()
    assert await stream_msg_ids(js) == ["alarm-1"]
