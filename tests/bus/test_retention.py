"""Separate retention: records (FIRE) and telemetry (FIRE_TELEMETRY) in two streams, against a
real nats-server. Telemetry past its limit never evicts a fire record; the single stream of the
previous version is migrated without losing what it holds."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import get_args

import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from prometheus_client import REGISTRY

from firegate.app import _stream_refused
from firegate.bus.errors import PublishError, StreamConfigError
from firegate.bus.events import Envelope, Kind
from firegate.bus.jetstream import MSG_ID_HEADER, AckMux, StreamSettings, ensure_stream
from firegate.bus.publisher import Publisher, PublishOutcome, Record
from firegate.bus.retention import (
    RECORD_SUBJECTS,
    TELEMETRY_SUBJECTS,
    StreamLayout,
    StreamWatch,
    ensure_streams,
    store_of,
    stream_usage,
)
from firegate.bus.schema import example_events
from firegate.bus.sink import JetStreamSink
from firegate.bus.spool import Spool
from firegate.codecs.gb26875 import AnalogValue, Command, ComponentStatus, TimeTag
from firegate.config import Settings
from firegate.forwarders.consumer import subscribe
from tests.bus.test_publisher import FAST
from tests.gateway.client import Uitd
from tests.integration.process import Firegate
from tests.natsserver import nats_client, running_nats_server, wait_until

TELEMETRY_LIMIT = 64 * 1024
SMALL = StreamLayout.build(max_bytes=16 * 1024**2, telemetry_max_bytes=TELEMETRY_LIMIT)
EXAMPLES = {e.type: e for e in example_events()}


def event(type_: str, n: int) -> Envelope:
    """The example event of ``type_`` as the n-th distinct event (its own id)."""
    return EXAMPLES[type_].model_copy(update={"id": f"{type_}-{n}"})


def event_record(type_: str, n: int) -> Record:
    """That event as the publisher takes it (msg id = event id)."""
    e = event(type_, n)
    return Record(e.subject, e.id, e.model_dump_json().encode(), e.kind == "alarm")


async def held(js: JetStreamContext, stream: str) -> list[str]:
    """The msg ids a stream holds, oldest first."""
    info = await js.stream_info(stream)
    if not info.state.messages:
        return []
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        assert msg.headers is not None
        ids.append(msg.headers[MSG_ID_HEADER])
    return ids


async def held_subjects(js: JetStreamContext, stream: str) -> list[tuple[str, str]]:
    """(subject, msg id) of every message a stream holds, oldest first."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1 if info.state.messages else 0):
        msg = await js.get_msg(stream, seq)
        assert msg.headers is not None and msg.subject is not None
        out.append((msg.subject, msg.headers[MSG_ID_HEADER]))
    return out


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
async def bare(nc: NATS) -> JetStreamContext:
    """JetStream with no stream yet."""
    return nc.jetstream(timeout=5.0)


@pytest.fixture
async def publisher(nc: NATS, spool: Spool) -> AsyncIterator[Publisher]:
    async with Publisher(nc, spool, FAST) as pub:
        yield pub


# -- which kind goes where -------------------------------------------------------------------


def test_every_event_kind_is_in_exactly_one_store() -> None:
    kinds: tuple[str, ...] = get_args(Kind)
    records = {k for k in kinds if store_of(f"fire.{k}.74565") == "records"}
    assert {k for k in kinds if f"fire.{k}.>" in RECORD_SUBJECTS} == records
    assert {k for k in kinds if f"fire.{k}.>" in TELEMETRY_SUBJECTS} == set(kinds) - records
    assert set(RECORD_SUBJECTS).isdisjoint(TELEMETRY_SUBJECTS)
    # the records the law asks for, and what 119 and the fault forwarders read
    # (GB 50440: a year of alarm and facility-status records)
    assert records == {"alarm", "confirmed", "dismissed", "fault", "status", "device", "operation"}
    assert store_of("fire.telemetry.74565") == "telemetry"
    assert store_of("fire.status.74565") == "records"
    assert store_of("fire.something_new.1") == "records"  # when in doubt, a record


def test_every_example_event_type_has_its_stream() -> None:
    layout = StreamLayout.build()
    telemetry = {t for t, e in EXAMPLES.items() if layout.stream_of(e.subject) == "FIRE_TELEMETRY"}
    assert telemetry == {"analog_value", "device_info"}
    assert {layout.stream_of(e.subject) for e in EXAMPLES.values()} == {"FIRE", "FIRE_TELEMETRY"}


# -- streams and migration -------------------------------------------------------------------


async def test_a_fresh_start_creates_both_streams_and_a_second_start_changes_nothing(
    bare: JetStreamContext,
) -> None:
    await ensure_streams(bare, SMALL)
    records, telemetry = await bare.stream_info("FIRE"), await bare.stream_info("FIRE_TELEMETRY")
    assert sorted(records.config.subjects or []) == sorted(RECORD_SUBJECTS)
    assert telemetry.config.subjects == list(TELEMETRY_SUBJECTS)
    assert records.config.max_age == pytest.approx(400 * 86400)
    assert telemetry.config.max_age == pytest.approx(30 * 86400)
    assert (records.config.max_bytes, telemetry.config.max_bytes) == (16 * 1024**2, TELEMETRY_LIMIT)
    assert records.config.allow_atomic and telemetry.config.allow_atomic
    assert records.config.duplicate_window == telemetry.config.duplicate_window == pytest.approx(120)
    await ensure_streams(bare, SMALL)
    assert (await bare.stream_info("FIRE")).created == records.created


async def test_migration_keeps_what_the_single_stream_held_and_new_telemetry_goes_apart(
    bare: JetStreamContext, nc: NATS, spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    await ensure_stream(bare, StreamSettings())  # FIRE over fire.>, as the previous version made it
    old = [event_record("fire_alarm", i) for i in range(5)] + [
        event_record("analog_value", i) for i in range(5)
    ]
    old.append(event_record("fire_confirmed", 0))
    async with Publisher(nc, spool, FAST) as pub:
        assert await pub.publish_many(old) == [PublishOutcome.STORED] * len(old)
    before = await held(bare, "FIRE")
    assert sorted(before) == sorted(r.msg_id for r in old)
    # the lifecycle's durable consumer, made before the upgrade, has not read them yet
    lifecycle = await subscribe(
        bare, "FIRE", "lifecycle-test", ["fire.alarm.>"], start_window=3600, ack_wait=5
    )

    await ensure_streams(bare, SMALL)  # the start-up path of the new version

    assert "held every kind of event" in caplog.text
    info = await bare.stream_info("FIRE")
    assert sorted(info.config.subjects or []) == sorted(RECORD_SUBJECTS)
    assert await held(bare, "FIRE") == before  # nothing lost, the old telemetry included
    assert (await bare.stream_info("FIRE_TELEMETRY")).state.messages == 0
    new = [
        event_record("analog_value", 100),
        event_record("fire_alarm", 100),
        event_record("status_changed", 1),
    ]
    async with Publisher(nc, spool, FAST) as pub:
        assert await pub.publish_many(new) == [PublishOutcome.STORED] * 3
    assert await held(bare, "FIRE") == [*before, "fire_alarm-100", "status_changed-1"]
    assert await held(bare, "FIRE_TELEMETRY") == ["analog_value-100"]
    msgs = await lifecycle.fetch(10, timeout=5.0)
    assert [m.headers[MSG_ID_HEADER] for m in msgs if m.headers] == [
        f"fire_alarm-{i}" for i in (*range(5), 100)
    ]
    await lifecycle.unsubscribe()

    # a gateway of the previous version, started now, would take fire.> back: NATS refuses it
    with pytest.raises(StreamConfigError) as refused:
        await ensure_stream(bare, StreamSettings())
    assert refused.value.stream == "FIRE"
    assert sorted((await bare.stream_info("FIRE")).config.subjects or []) == sorted(RECORD_SUBJECTS)
    await ensure_streams(bare, SMALL)  # a restart of the new version: nothing to migrate
    assert len(await held(bare, "FIRE")) == len(before) + 2


async def test_a_telemetry_stream_nats_cannot_hold_names_bus_telemetry_max_bytes(
    bare: JetStreamContext,
) -> None:
    layout = StreamLayout.build(max_bytes=1024**2, telemetry_max_bytes=50 * 1024**3)  # a 1 GB store
    with pytest.raises(StreamConfigError) as e:
        await ensure_streams(bare, layout)
    assert e.value.stream == "FIRE_TELEMETRY"
    error = _stream_refused(e.value, layout)
    assert (error.key, error.value) == ("bus.telemetry_max_bytes", 50 * 1024**3)


# -- publishing ------------------------------------------------------------------------------


async def test_a_batch_over_two_streams_is_never_stored(bare: JetStreamContext, nc: NATS) -> None:
    """Why the publisher batches per stream: NATS refuses an atomic batch that spans two."""
    await ensure_streams(bare, SMALL)
    mux = AckMux(nc)
    await mux.start()
    try:
        items = [
            ("fire.alarm.1", b"{}", "a-1"),
            ("fire.telemetry.1", b"{}", "s-1"),
            ("fire.alarm.2", b"{}", "a-2"),
        ]
        with pytest.raises(PublishError):
            await (await mux.send_batch(items, 2.0))
    finally:
        await mux.close()
    assert await held(bare, "FIRE") == [] and await held(bare, "FIRE_TELEMETRY") == []


async def test_a_mixed_ingest_batch_stores_every_event_once_in_its_stream(
    bare: JetStreamContext, publisher: Publisher
) -> None:
    await ensure_streams(bare, SMALL)
    types = list(EXAMPLES)
    events = [event(types[i % len(types)], i) for i in range(120)]  # every kind, interleaved
    batches = sample("firegate_publish_batches_total", result="stored") or 0.0
    await JetStreamSink(publisher).publish(events, fire=False)  # as ingest stores a batch of frames
    assert sample("firegate_publish_batches_total", result="stored") == batches + 2  # one per stream
    records = [e.id for e in events if store_of(e.subject) == "records"]
    telemetry = [e.id for e in events if store_of(e.subject) == "telemetry"]
    assert records and telemetry
    assert await held(bare, "FIRE") == records
    assert await held(bare, "FIRE_TELEMETRY") == telemetry
    # a resend (the device did not get its confirm) and a few new: stored once each
    again = [event_record(types[i % len(types)], i) for i in range(10)]
    again += [event_record("analog_value", 1000), event_record("fire_alarm", 1000)]
    outcomes = await publisher.publish_many(again)
    assert outcomes == [PublishOutcome.DUPLICATE] * 10 + [PublishOutcome.STORED] * 2
    assert await held(bare, "FIRE") == [*records, "fire_alarm-1000"]
    assert await held(bare, "FIRE_TELEMETRY") == [*telemetry, "analog_value-1000"]


async def test_spooled_events_replay_into_their_own_streams(
    bare: JetStreamContext, nc: NATS, spool: Spool
) -> None:
    """What a gateway spooled while NATS was away goes, on replay, each to its own stream."""
    await ensure_streams(bare, SMALL)
    types = ["fire_alarm", "analog_value", "fault_raised", "status_changed", "device_online"]
    spooled = [event_record(t, 0) for t in types]
    await spool.append_many(spooled)
    async with Publisher(nc, spool, FAST) as pub:
        replayer = asyncio.create_task(pub.run_replayer())
        try:
            await wait_until(lambda: spool.pending_records == 0, 10.0)
        finally:
            replayer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await replayer
    assert sorted(await held(bare, "FIRE")) == [
        "device_online-0",
        "fault_raised-0",
        "fire_alarm-0",
        "status_changed-0",
    ]
    assert sorted(await held(bare, "FIRE_TELEMETRY")) == ["analog_value-0"]


async def fill(publisher: Publisher, rounds: int = 40, per_round: int = 50) -> tuple[list[str], list[str]]:
    """A fire alarm and a burst of analog samples per round, as ingest batches them."""
    alarms, samples = [], []
    for n in range(rounds):
        batch = [event_record("analog_value", n * per_round + i) for i in range(per_round)]
        batch.insert(per_round // 2, event_record("fire_alarm", n))
        assert set(await publisher.publish_many(batch)) == {PublishOutcome.STORED}
        alarms.append(f"fire_alarm-{n}")
        samples += [r.msg_id for r in batch if r.msg_id.startswith("analog")]
    return alarms, samples


async def test_telemetry_past_its_limit_keeps_every_fire_record(
    bare: JetStreamContext, nc: NATS, publisher: Publisher
) -> None:
    await ensure_streams(bare, SMALL)
    alarms, samples = await fill(publisher)

    assert await held(bare, "FIRE") == alarms  # every fire record is still there
    kept = await held(bare, "FIRE_TELEMETRY")
    telemetry = await stream_usage(nc, "FIRE_TELEMETRY")
    assert len(samples) * len(event_record("analog_value", 0).payload) > TELEMETRY_LIMIT * 10  # far past it
    assert telemetry.bytes <= TELEMETRY_LIMIT < telemetry.bytes + 2048
    assert 0 < len(kept) < len(samples) // 4
    assert kept == samples[-len(kept) :]  # the oldest samples went, the newest stayed


async def test_the_single_stream_of_before_lost_fire_records_to_telemetry(
    bare: JetStreamContext, publisher: Publisher
) -> None:
    """The same traffic into one stream over fire.> of the same total size: the oldest alarms go
    with the oldest samples (what the separate streams prevent)."""
    await ensure_stream(bare, StreamSettings(max_bytes=TELEMETRY_LIMIT + 32 * 1024))
    alarms, _ = await fill(publisher)
    kept = set(await held(bare, "FIRE"))
    assert alarms[0] not in kept and alarms[-1] in kept


async def test_firegate_run_upgrades_a_single_stream_at_start(tmp_path: Path) -> None:
    """The start-up path end to end: `firegate run` of this version against the stream the previous
    one left, then a UITD's fire alarm and analog sample each land in their own stream."""
    old = [
        ("fire.alarm.1", "old-alarm-0"),
        ("fire.telemetry.1", "old-telemetry-0"),
        ("fire.fault.1", "old-fault-0"),
    ]
    async with running_nats_server(tmp_path / "nats") as server:
        async with nats_client(server.url) as nc:
            js = nc.jetstream(timeout=5.0)
            await ensure_stream(js, StreamSettings(max_bytes=256 * 1024**2))  # the previous version's
            for subject, msg_id in old:
                await js.publish(subject, b"{}", headers={MSG_ID_HEADER: msg_id})
        workdir = tmp_path / "firegate"
        workdir.mkdir()
        fg = Firegate(workdir)
        fg.env.update(
            FIREGATE_NATS__URL=server.url,
            FIREGATE_BUS__MAX_BYTES="256M",  # both streams must fit the test server's 1 GB store
            FIREGATE_DATA_DIR=str(tmp_path / "data"),
        )
        try:
            await asyncio.to_thread(fg.start)  # returns once /readyz answers 200
            dev = await Uitd(74565).connect(fg.gb)
            fire = ComponentStatus.make(1, 1, 42, 7, 0b11, "7号点", TimeTag.now())
            assert (await dev.exchange(dev.frame(2, [fire]))).command == Command.CONFIRM
            sample_ = AnalogValue(1, 1, 42, 8, 3, 120, TimeTag.now())
            assert (await dev.exchange(dev.frame(3, [sample_]))).command == Command.CONFIRM
            await dev.close()
            async with nats_client(server.url) as nc:
                js = nc.jetstream(timeout=5.0)
                records = await held_subjects(js, "FIRE")
                telemetry = await held_subjects(js, "FIRE_TELEMETRY")
            assert records[:3] == old  # nothing the single stream held was lost
            assert "fire.alarm.74565" in [subject for subject, _ in records[3:]]
            assert [subject for subject, _ in telemetry] == ["fire.telemetry.74565"]
            assert not {msg_id for _, msg_id in telemetry} & {msg_id for _, msg_id in records}
            await wait_until(lambda: 'firegate_stream_messages{stream="FIRE_TELEMETRY"}' in fg.metrics(), 10)
            assert "held every kind of event" in fg.log.read_text()
            fg.signal(signal.SIGTERM)  # the stream watch stops with everything else
            assert await asyncio.to_thread(fg.proc.wait, 30) == 0  # type: ignore[union-attr]
        finally:
            fg.kill_all()


# -- metrics ---------------------------------------------------------------------------------


async def test_stream_metrics_show_use_limit_and_the_age_of_the_oldest_record(
    bare: JetStreamContext, nc: NATS, publisher: Publisher
) -> None:
    await ensure_streams(bare, SMALL)
    await fill(publisher, rounds=20)
    await asyncio.sleep(1.1)  # the oldest record is at least a second old
    watch = StreamWatch(nc, ["FIRE", "FIRE_TELEMETRY"], interval=60.0, timeout=2.0)
    usage = {u.stream: u for u in await watch.refresh()}

    assert sample("firegate_stream_messages", stream="FIRE") == usage["FIRE"].messages == 20
    assert sample("firegate_stream_limit_bytes", stream="FIRE") == 16 * 1024**2
    assert sample("firegate_stream_max_age_seconds", stream="FIRE") == pytest.approx(400 * 86400)
    assert 1.0 <= (sample("firegate_stream_oldest_age_seconds", stream="FIRE") or 0) < 30
    assert sample("firegate_stream_limit_bytes", stream="FIRE_TELEMETRY") == TELEMETRY_LIMIT
    used = sample("firegate_stream_bytes", stream="FIRE_TELEMETRY") or 0
    assert 0.8 * TELEMETRY_LIMIT < used <= TELEMETRY_LIMIT  # what the alert in the guide looks at
    assert sample("firegate_stream_max_age_seconds", stream="FIRE_TELEMETRY") == pytest.approx(30 * 86400)


async def test_a_stream_that_cannot_be_read_is_counted_and_keeps_its_last_values(nc: NATS) -> None:
    failures = sample("firegate_stream_info_failures_total", reason="not_found") or 0.0
    assert await StreamWatch(nc, ["NO_SUCH_STREAM"], timeout=2.0).refresh() == []
    assert sample("firegate_stream_info_failures_total", reason="not_found") == failures + 1
    assert sample("firegate_stream_bytes", stream="NO_SUCH_STREAM") is None


async def test_the_watch_refreshes_until_cancelled(bare: JetStreamContext, nc: NATS) -> None:
    await ensure_streams(bare, SMALL)
    watch = StreamWatch(nc, ["FIRE_TELEMETRY"], interval=0.05, timeout=2.0)
    task = asyncio.create_task(watch.run())
    try:
        await bare.publish("fire.telemetry.1", b"{}", headers={MSG_ID_HEADER: "s-1"})
        await wait_until(lambda: sample("firegate_stream_messages", stream="FIRE_TELEMETRY") == 1, 5.0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bus", "nats", "key"),
    [
        ({"max_age_days": 180}, {}, "bus.max_age_days"),  # less than the year GB 50440 asks
        ({"telemetry_max_age_days": 500}, {}, "bus.telemetry_max_age_days"),  # longer than records
        ({"telemetry_stream": "FIRE"}, {}, "bus.telemetry_stream"),
        ({"telemetry_max_age_days": 0.001}, {}, "bus.telemetry_max_age_days"),  # < duplicate window
        ({"telemetry_max_bytes": "20G"}, {}, "bus.telemetry_max_bytes"),  # 50G + 20G > the 64G store
        ({"max_bytes": "60G"}, {}, "bus.max_bytes"),  # with its telemetry (12G), past the store
        ({}, {"embedded_max_file": "55G"}, "nats.embedded_max_file"),  # below 50G + 10G
    ],
)
def test_retention_settings_that_cannot_work_name_their_key(
    bus: dict[str, object], nats: dict[str, object], key: str
) -> None:
    with pytest.raises(ValueError, match=key.split(".", 1)[1]) as e:
        Settings(bus=bus, nats=nats)
    assert key.split(".", 1)[1] in str(e.value)


def test_retention_defaults_fit_the_embedded_store() -> None:
    bus = Settings().bus
    assert (bus.stream, bus.telemetry_stream) == ("FIRE", "FIRE_TELEMETRY")
    assert bus.max_age_days >= 365 and bus.telemetry_max_age_days == 30
    assert bus.telemetry_bytes == bus.max_bytes // 5
    assert Settings(bus={"telemetry_max_bytes": "1G"}).bus.telemetry_bytes == 10**9
    # an external NATS has its own store: no embedded limit applies
    remote = Settings(nats={"url": "nats://10.0.0.1:4222"}, bus={"max_bytes": "100G"})
    assert remote.bus.telemetry_bytes == 20 * 10**9
