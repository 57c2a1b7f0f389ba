"""A sensor source against a real Mosquitto: messages in, events out, through the real ingest
and normalizer (a memory sink stands in for JetStream, with its duplicate window)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from firegate.bus.events import (
    AnalogReading,
    DeviceOffline,
    DeviceOnline,
    FaultCleared,
    FaultRaised,
    FireAlarm,
)
from firegate.bus.kvmemory import MemoryStatusMemory
from firegate.codecs.sensors.meokon import MeokonFrame, encode
from firegate.config import SensorThreshold
from firegate.gateway.sensors.seen import MemorySeen
from firegate.ingest.sink import MemorySink
from tests.gateway.sensors.conftest import KeepAllSink, config, publish, running
from tests.mqttbroker import MosquittoBroker
from tests.natsserver import nats_client, running_nats_server, wait_until

pytestmark = pytest.mark.timeout(30)

DATA = Path(__file__).resolve().parents[2] / "data"
MEOKON = json.loads((DATA / "sensors_meokon.json").read_text(encoding="utf-8"))
DOCUMENTED = MEOKON["frames"][0]["hex"]
T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
HYDRANT = [{"point": "pressure", "component_type": 99, "component_address": 7, "threshold": "hydrant_low"}]
THRESHOLDS = {"hydrant_low": SensorThreshold(unit="MPa", low=0.14, hysteresis=0.02)}
SMOKE_OPTIONS = {
    "device": "dev",
    "time": "ts",
    "flags": {"fire": "smoke", "fault": "fault"},
    "flag_point": "smoke",
}
SMOKE_POINTS = [{"point": "smoke", "component_type": 42, "component_address": 1, "description": "3F 走廊"}]


def counter(name: str, **labels: str) -> float:
    """The sum over every series of ``name`` with these labels (every source's)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def hydrant(
    value_mpa: float, at: datetime, device: str = "SHMK21060001", records: tuple[int, ...] = ()
) -> str:
    frame = MeokonFrame(device, 0x34, -60, 60, 1, 0, 140, 1000, round(value_mpa * 1000), at, records)
    return encode(frame).hex()


async def crash(broker: MosquittoBroker) -> None:
    """SIGKILL, and reaped: start() then really starts a new one."""
    broker.kill()
    await broker.stop()


def smoke(device: str, at: datetime, **flags: int) -> str:
    return json.dumps({"dev": device, "ts": at.timestamp(), "smoke": 0, "fault": 0, **flags})


async def test_a_meokon_frame_becomes_analog_events_at_the_sensors_own_times(broker: MosquittoBroker) -> None:
    cfg = config(broker, topics=["GIOT-GW/UL/#"], points=[{"point": "pressure", "component_type": 99}])
    async with running(cfg) as r:
        await publish(broker, "GIOT-GW/UL/SHMK19060013", DOCUMENTED)
        readings = await r.wait_for("analog_value", 10)
        (online,) = r.of("device_online")
        assert isinstance(online, DeviceOnline) and online.device == "SHMK19060013"
        first, last = readings[0], readings[-1]
        assert isinstance(first, AnalogReading) and isinstance(last, AnalogReading)
        assert (first.analog_type, first.value, first.scaled_value, first.unit) == (5, 5370, 537.0, "kPa")
        assert first.occurred_at == datetime(2019, 7, 1, 1, 40, 42, tzinfo=UTC)
        assert last.occurred_at == datetime(2019, 7, 1, 1, 49, 42, tzinfo=UTC)
        assert first.origin == "mqtt:meokon" and first.point.component_type == 99
        assert bytes.fromhex(first.raw) == bytes.fromhex(DOCUMENTED).hex().encode()  # the payload as received
        assert first.device == "SHMK19060013" and first.site == "SHMK19060013"  # unregistered: its own site
        # the newest sample is from 2019: the source's lag says so
        assert counter("firegate_sensor_lag_seconds", source="test") > 365 * 86400


async def test_json_smoke_detector_fire_flag_is_a_fire_alarm_with_the_site_from_the_topic(
    broker: MosquittoBroker,
) -> None:
    cfg = config(
        broker,
        topics=["sites/+/smoke/+"],
        codec="json",
        codec_options=SMOKE_OPTIONS,
        points=SMOKE_POINTS,
        device_topic_level=3,
        site_topic_level=1,
    )
    async with running(cfg) as r:
        await publish(broker, "sites/SH-XH-0001/smoke/SMK-1", smoke("ignored", T0, smoke=1))
        (alarm,) = await r.wait_for("fire_alarm")
        assert isinstance(alarm, FireAlarm)
        assert (alarm.device, alarm.site, alarm.source) == ("SMK-1", "SH-XH-0001", "component")
        assert alarm.point.component_type == 42 and alarm.point.description == "3F 走廊"
        assert alarm.occurred_at == T0 and alarm.origin == "mqtt:json"


async def test_thresholds_raise_and_clear_with_hysteresis(broker: MosquittoBroker) -> None:
    cfg = config(broker, points=HYDRANT)
    async with running(cfg, thresholds=THRESHOLDS) as r:
        topic = "sensors/hydrant"
        await publish(broker, topic, hydrant(0.30, T0), hydrant(0.12, T0 + timedelta(minutes=1)))
        (raised,) = await r.wait_for("fault_raised")
        assert isinstance(raised, FaultRaised) and raised.condition == "fault"
        assert raised.occurred_at == T0 + timedelta(minutes=1) and raised.point.component_address == 7
        # above the limit but inside the hysteresis band: still a fault
        await publish(broker, topic, hydrant(0.15, T0 + timedelta(minutes=2)))
        await r.wait_for("analog_value", 3)
        await asyncio.sleep(0.3)
        assert not r.of("fault_cleared")
        await publish(broker, topic, hydrant(0.16, T0 + timedelta(minutes=3)))
        (cleared,) = await r.wait_for("fault_cleared")
        assert isinstance(cleared, FaultCleared) and cleared.occurred_at == T0 + timedelta(minutes=3)
        assert len(r.of("fault_raised")) == 1


async def test_a_resent_buffer_is_deduplicated_by_device_and_sample_time(broker: MosquittoBroker) -> None:
    cfg = config(broker, points=HYDRANT)
    before = counter("firegate_sensor_samples_total", result="duplicate")
    async with running(cfg, thresholds=THRESHOLDS) as r:
        # the sensor got no answer: its next frame carries the old records again, and one new one
        first = hydrant(0.12, T0 + timedelta(minutes=2), records=(300, 120, 120))
        again = hydrant(0.13, T0 + timedelta(minutes=3), records=(300, 120, 120, 130))
        await publish(broker, "sensors/h", first, again, first)
        await r.wait_for("analog_value", 4)
        await wait_until(lambda: counter("firegate_sensor_samples_total", result="duplicate") - before >= 6)
        await asyncio.sleep(0.3)
        times = [e.occurred_at for e in r.of("analog_value")]
        assert len(times) == 4 == len(set(times))
        assert len(r.of("fault_raised")) == 1


async def test_state_changes_resent_beyond_the_duplicate_window_are_not_raised_again(
    broker: MosquittoBroker,
) -> None:
    """After a restart (in-process dedupe forgotten) and past the stream's window (every id is
    stored again), the point's stored state still keeps a resent fault from being raised twice."""
    cfg = config(broker, points=HYDRANT)
    sink, memory = KeepAllSink(), MemoryStatusMemory()
    low = hydrant(0.12, T0)
    async with running(cfg, sink=sink, memory=memory, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", low)
        await r.wait_for("fault_raised")
    async with running(cfg, sink=sink, memory=memory, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", low)
        await wait_until(lambda: len(r.of("analog_value")) == 2)
        await asyncio.sleep(0.3)
        assert len(r.of("fault_raised")) == 1


async def test_messages_published_while_firegate_is_down_arrive_afterwards(broker: MosquittoBroker) -> None:
    cfg = config(broker, points=HYDRANT)
    async with running(cfg, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", hydrant(0.3, T0))
        await r.wait_for("analog_value")
    # firegate is down: the broker queues for its persistent session
    await publish(broker, "sensors/h", *(hydrant(0.3, T0 + timedelta(minutes=i)) for i in range(1, 4)))
    async with running(cfg, thresholds=THRESHOLDS) as r:
        readings = await r.wait_for("analog_value", 3)
        assert sorted(e.occurred_at for e in readings) == [T0 + timedelta(minutes=i) for i in range(1, 4)]


async def test_a_broker_restart_is_survived_and_loses_nothing(broker: MosquittoBroker) -> None:
    cfg = config(broker, points=HYDRANT)
    async with running(cfg, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", hydrant(0.3, T0))
        await r.wait_for("analog_value")
        await crash(broker)
        await wait_until(lambda: not r.source.connected.is_set(), 10)
        ok, detail = r.source.readiness()
        assert (not ok and "down" in detail) or "connecting" in detail
        assert counter("firegate_sensor_broker_up", source="test") == 0
        await broker.start()
        await asyncio.wait_for(r.source.connected.wait(), 10)
        assert r.source.readiness()[0] and counter("firegate_sensor_broker_up", source="test") == 1
        await publish(broker, "sensors/h", hydrant(0.3, T0 + timedelta(minutes=1)))
        await r.wait_for("analog_value", 2)
    # and what was queued for firegate while it was away survives a broker crash
    await publish(broker, "sensors/h", *(hydrant(0.3, T0 + timedelta(minutes=i)) for i in range(2, 5)))
    await asyncio.sleep(1.5)  # Mosquitto saves its database every second here
    await crash(broker)
    await broker.start()
    async with running(cfg, thresholds=THRESHOLDS) as r:
        readings = await r.wait_for("analog_value", 3)
        assert sorted(e.occurred_at for e in readings) == [T0 + timedelta(minutes=i) for i in range(2, 5)]


async def test_a_message_is_acknowledged_only_once_stored(broker: MosquittoBroker) -> None:
    """The store fails: no PUBACK, so the broker sends the message again once it works."""
    cfg = config(broker, points=HYDRANT)
    sink = MemorySink()
    sink.fail = True
    async with running(cfg, sink=sink, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", hydrant(0.3, T0))
        await wait_until(lambda: counter("firegate_sensor_messages_total", result="not_stored") > 0, 10)
        assert not sink.events
        sink.fail = False
        await r.wait_for("analog_value", within=10)


async def test_bad_payloads_are_counted_and_never_stop_the_source(
    broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(broker, points=HYDRANT)
    before = {
        r: counter("firegate_sensor_bad_payloads_total", reason=r)
        for r in ("hex", "checksum", "device", "time")
    }
    bad_messages = counter("firegate_sensor_messages_total", result="bad_payload")
    corrupt = DOCUMENTED[:-8] + "000055aa"
    async with running(cfg, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/bad", "not a frame", corrupt, hydrant(0.3, T0, device="BAD ID 12345"))
        clock_never_set = hydrant(0.3, datetime(1970, 1, 2, tzinfo=UTC))
        await publish(broker, "sensors/bad", clock_never_set)
        await publish(broker, "sensors/good", hydrant(0.3, T0))
        await r.wait_for("analog_value")
    after = {r: counter("firegate_sensor_bad_payloads_total", reason=r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {"hex": 1, "checksum": 1, "device": 1, "time": 1}
    assert counter("firegate_sensor_messages_total", result="bad_payload") - bad_messages == 4
    assert "sensors/bad" in caplog.text


async def test_a_silent_sensor_goes_offline_and_a_last_will_at_once(broker: MosquittoBroker) -> None:
    cfg = config(
        broker,
        codec="json",
        codec_options=SMOKE_OPTIONS,
        points=SMOKE_POINTS,
        topics=["smoke/+/up"],
        will_topics=["smoke/+/will"],
        device_topic_level=1,
        report_interval=1.0,
    )
    async with running(cfg) as r:
        await publish(broker, "smoke/SMK-1/up", smoke("", T0))
        await publish(broker, "smoke/SMK-2/up", smoke("", T0))
        await r.wait_for("device_online", 2)
        await publish(broker, "smoke/SMK-2/will", "offline")
        (gone,) = await r.wait_for("device_offline", 1, within=0.9)  # before the interval: the will
        assert isinstance(gone, DeviceOffline) and gone.device == "SMK-2" and gone.origin == "mqtt:json"
        assert gone.silent_s is not None and gone.silent_s < 1.0  # silent since its last message only
        offline = await r.wait_for("device_offline", 2, within=5)
        assert {e.device for e in offline} == {"SMK-1", "SMK-2"}
        await publish(broker, "smoke/SMK-1/up", smoke("", T0 + timedelta(minutes=1)))
        back = await r.wait_for("device_online", 3)
        assert back[-1].device == "SMK-1" and isinstance(back[-1], DeviceOnline) and back[-1].outage_s


async def test_a_full_nb_iot_buffer_is_stored_whole(broker: MosquittoBroker) -> None:
    """200 buffered records (an NB-IoT sensor's most): data units of at most 63 analog values."""
    cfg = config(broker, points=HYDRANT)
    records = tuple(300 + i % 7 for i in range(200))
    async with running(cfg, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", hydrant(0.3, T0, records=records))
        readings = await r.wait_for("analog_value", 200)
        times = sorted(e.occurred_at for e in readings if e.occurred_at is not None)
        assert len(set(times)) == 200 and times[0] == T0 - timedelta(minutes=199) and times[-1] == T0


async def test_after_a_restart_a_threshold_starts_from_the_points_stored_state(
    broker: MosquittoBroker,
) -> None:
    """A value inside the hysteresis band after a restart does not clear the stored fault."""
    cfg = config(broker, points=HYDRANT)
    sink, memory = MemorySink(), MemoryStatusMemory()
    async with running(cfg, sink=sink, memory=memory, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", hydrant(0.12, T0))
        await r.wait_for("fault_raised")
    async with running(cfg, sink=sink, memory=memory, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", hydrant(0.15, T0 + timedelta(minutes=1)))  # in the band
        await r.wait_for("analog_value", 2)
        await asyncio.sleep(0.3)
        assert not r.of("fault_cleared")
        await publish(broker, "sensors/h", hydrant(0.16, T0 + timedelta(minutes=2)))
        await r.wait_for("fault_cleared")


async def test_after_a_restart_an_old_buffered_sample_does_not_raise_again_a_cleared_fault(
    broker: MosquittoBroker,
) -> None:
    """The trial's case: a sensor re-sends its older buffer after firegate restarted, when a newer
    sample had already cleared the fault. The old values are kept (stored once), the fault is not
    raised again; a new low value raises it as before."""
    cfg = config(broker, points=HYDRANT)
    sink, memory = MemorySink(), MemoryStatusMemory()
    async with running(cfg, sink=sink, memory=memory, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", hydrant(0.12, T0))
        await r.wait_for("fault_raised")
        await publish(broker, "sensors/h", hydrant(0.30, T0 + timedelta(minutes=3)))
        await r.wait_for("fault_cleared")
    stale = counter("firegate_sensor_samples_total", result="stale")
    async with running(cfg, sink=sink, memory=memory, thresholds=THRESHOLDS) as r:
        await publish(broker, "sensors/h", hydrant(0.11, T0 + timedelta(minutes=1)))  # from before
        await wait_until(lambda: counter("firegate_sensor_samples_total", result="stale") > stale)
        await asyncio.sleep(0.3)
        assert len([e for e in sink.events if e.type == "fault_raised"]) == 1
        assert len([e for e in sink.events if e.type == "analog_value"]) == 3  # the old value kept
        await publish(broker, "sensors/h", hydrant(0.10, T0 + timedelta(minutes=4)))  # new, low
        await wait_until(lambda: len([e for e in sink.events if e.type == "fault_raised"]) == 2)


async def test_a_sensor_silent_since_before_a_restart_still_goes_offline(broker: MosquittoBroker) -> None:
    """The trial's case: detectors that reported, then firegate restarted, then they fell silent.
    Their last-seen records outlive the process: they go offline after report_interval, once;
    one that reports after the restart brings no second device_online; an offline one's return
    is an online with its outage."""
    cfg = config(
        broker,
        codec="json",
        codec_options=SMOKE_OPTIONS,
        points=SMOKE_POINTS,
        topics=["smoke/+/up"],
        device_topic_level=1,
        report_interval=1.0,
    )
    seen, sink = MemorySeen(), MemorySink()
    async with running(cfg, sink=sink, seen=seen) as r:
        await publish(broker, "smoke/SMK-1/up", smoke("", T0))
        await publish(broker, "smoke/SMK-2/up", smoke("", T0))
        await r.wait_for("device_online", 2)
        await wait_until(lambda: set(seen.data.get("test", {})) == {"SMK-1", "SMK-2"}, 10)
    async with running(cfg, sink=sink, seen=seen) as r:
        await publish(broker, "smoke/SMK-2/up", smoke("", T0 + timedelta(minutes=1)))
        await wait_until(
            lambda: any(e.type == "device_offline" and e.device == "SMK-1" for e in sink.events), 5
        )
        assert len(r.of("device_online")) == 2  # SMK-2 was online already: no new record
        await wait_until(lambda: not seen.data["test"]["SMK-1"].online, 10)
    async with running(cfg, sink=sink, seen=seen) as r:
        await asyncio.sleep(1.5)  # SMK-1 was offline already: no second offline event for it
        assert len([e for e in r.of("device_offline") if e.device == "SMK-1"]) == 1
        await publish(broker, "smoke/SMK-1/up", smoke("", T0 + timedelta(minutes=5)))
        back = await r.wait_for("device_online", 3)
        assert back[-1].device == "SMK-1" and back[-1].outage_s  # type: ignore[attr-defined]


async def test_last_seen_records_round_trip_through_the_kv_bucket(tmp_path: Path) -> None:
    from firegate.bus.jetstream import ensure_kv
    from firegate.gateway.sensors.seen import BUCKET, KvSeen, Seen

    async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as nc:
        store = KvSeen(await ensure_kv(nc.jetstream(), BUCKET))
        at = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
        await store.save("a", {"SMK-1": Seen(at, True), "SMK-2": Seen(at, False)})
        await store.save("b", {"SMK-9": Seen(at, True)})
        assert await store.load("a") == {"SMK-1": Seen(at, True), "SMK-2": Seen(at, False)}
        assert await store.load("nobody") == {}
