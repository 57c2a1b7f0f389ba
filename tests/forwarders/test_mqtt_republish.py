"""A broker that lost its retained messages gets every open fault again; its link state shows.

Against a private Mosquitto (tests/mqttbroker.py) and, for the fault tracker's bucket, a
private nats-server. "Restarted without persistence" is a SIGKILL, the broker's database
removed, and a start on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiomqtt
import pytest
from nats.js.client import JetStreamContext
from prometheus_client import REGISTRY

from firegate.bus.events import DeviceOffline, Envelope, FaultCleared, FaultRaised, Point
from firegate.bus.jetstream import MSG_ID_HEADER, StreamSettings, ensure_kv, ensure_stream
from firegate.config import MqttDestination, Settings
from firegate.forwarders.courier import Courier, CourierSettings, couriers_readiness
from firegate.forwarders.faults import BUCKET, FaultTracker
from firegate.forwarders.mqtt import MqttFaultDestination, OpenState
from firegate.forwarders.routes import OpenFaults, fault_couriers, fault_filter
from tests.mqttbroker import MosquittoBroker, running_mosquitto
from tests.natsserver import nats_client, running_nats_server, wait_until

pytestmark = pytest.mark.timeout(30)

T0 = datetime.now(UTC) - timedelta(hours=3)
POINT = Point(system_type=1, system_address=2, component_address=42, location="B1 泵房")


def raised(
    device: str, site: str, component: int = 42, at: datetime = T0, condition: str = "fault"
) -> FaultRaised:
    return FaultRaised(
        id=f"{device}.2.{component}.{at.timestamp():.0f}.{condition}",
        device=device,
        site=site,
        occurred_at=None,
        received_at=at,
        condition=condition,
        condition_zh="故障",
        point=POINT.model_copy(update={"component_address": component}),
        origin="serial:demo",  # not the default: shows whether the stored event was found
    )


def cleared(event: FaultRaised, at: datetime) -> FaultCleared:
    return FaultCleared(
        id=f"{event.id}.cleared",
        device=event.device,
        site=event.site,
        occurred_at=None,
        received_at=at,
        condition=event.condition,
        point=event.point,
    )


def offline(device: str, site: str) -> DeviceOffline:
    return DeviceOffline(
        id=f"{device}.offline.1",
        device=device,
        site=site,
        occurred_at=None,
        received_at=T0,
        last_seen=T0 - timedelta(seconds=100),
        silent_s=100.0,
    )


def topic(event: Envelope) -> str:
    if isinstance(event, DeviceOffline):
        return f"firegate/faults/{event.site}/{event.device}/device/offline"
    assert isinstance(event, FaultRaised)
    p = event.point
    component = f"{p.system_type}-{p.system_address}-{p.component_address}"
    return f"firegate/faults/{event.site}/{event.device}/{component}/{event.condition}"


async def retained(broker: MosquittoBroker) -> dict[str, Any]:
    """What a new subscriber to firegate/faults/# gets (a probe message marks the end)."""
    probe = f"probe/{uuid4().hex}"
    async with aiomqtt.Client(broker.host, broker.port, timeout=3.0) as client:
        await client.subscribe("firegate/faults/#", qos=1)
        await client.subscribe(probe, qos=1)
        await client.publish(probe, b"end", qos=1)
        state: dict[str, Any] = {}
        async with asyncio.timeout(3.0):
            async for m in client.messages:
                if m.topic.value == probe:
                    return state
                assert m.retain and isinstance(m.payload, bytes)
                state[m.topic.value] = json.loads(m.payload)
    raise AssertionError("unreachable")


async def restart_without_persistence(broker: MosquittoBroker) -> None:
    broker.kill()
    await broker.stop()  # reaped: the database is no longer written
    broker.db_path.unlink(missing_ok=True)
    await broker.start()


def link_metric() -> float | None:
    return REGISTRY.get_sample_value("firegate_forward_link_up", {"destination": "mqtt"})


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[MosquittoBroker]:
    async with running_mosquitto(tmp_path / "mqtt") as b:
        yield b


@contextlib.asynccontextmanager
async def kept(dest: MqttFaultDestination) -> AsyncIterator[MqttFaultDestination]:
    """The destination with its link kept, as a courier runs it."""
    task = asyncio.create_task(dest.keep_link())
    try:
        yield dest
    finally:
        await dest.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_restarted_broker_gets_the_open_faults_again_and_the_link_state_shows(
    broker: MosquittoBroker,
) -> None:
    fault, down = raised("100001", "S1"), offline("100002", "S1")
    asked = 0

    async def source() -> Sequence[OpenState]:
        nonlocal asked
        asked += 1
        return [(fault, False), (down, True)]

    dest = MqttFaultDestination(broker.url, timeout=1.0, open_faults=source)
    courier = Courier(None, dest, CourierSettings("fwd-test", ("fire.fault.>",)))  # type: ignore[arg-type]
    courier.ready.set()  # its consumer is open: only the link is in question here
    async with kept(dest):
        await wait_until(lambda: dest.link_up, 5)  # connected at once, without any delivery
        assert couriers_readiness([courier]) == (True, "1/1 consumers open")
        assert link_metric() == 1.0
        first = await retained(broker)
        assert sorted(first) == sorted([topic(fault), topic(down)]) and asked == 1

        broker.kill()
        await wait_until(lambda: not dest.link_up, 5)
        assert link_metric() == 0.0
        ok, detail = couriers_readiness([courier])
        assert ok and detail.startswith(f"1/1 consumers open; mqtt {broker.url} down for ")
        await restart_without_persistence(broker)
        assert await retained(broker) == {}  # the broker lost them

        await wait_until(lambda: dest.link_up, 10)  # reconnected by itself: no event came
        assert link_metric() == 1.0 and asked == 2
        again = await retained(broker)
    assert again == first
    assert again[topic(fault)]["event"]["origin"] == "serial:demo"
    assert "rebuilt" not in again[topic(fault)] and again[topic(down)]["rebuilt"] is True
    assert again[topic(down)]["since"] == again[topic(down)]["event"]["received_at"]


async def test_a_fault_source_that_fails_leaves_the_link_down_and_is_asked_again(
    broker: MosquittoBroker,
) -> None:
    calls = 0

    async def source() -> Sequence[OpenState]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError("bucket unreachable")
        return [(raised("100001", "S1"), False)]

    async with kept(MqttFaultDestination(broker.url, timeout=1.0, open_faults=source)) as dest:
        await wait_until(lambda: dest.link_up, 8)  # the second attempt, after 1 s
    assert calls == 2
    assert list(await retained(broker)) == [topic(raised("100001", "S1"))]


# -- the open faults from the fault tracker's bucket, through the configured route


@pytest.fixture
async def js(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as nc:
        ctx = nc.jetstream(timeout=5.0)
        await ensure_stream(ctx, StreamSettings())
        yield ctx


async def store(js: JetStreamContext, tracker: FaultTracker, *events: Envelope) -> None:
    """As the gateway and the fault tracker would: in the stream, and tracked."""
    for event in events:
        await js.publish(event.subject, event.model_dump_json().encode(), headers={MSG_ID_HEADER: event.id})
        await tracker.track(event)


async def test_open_faults_come_from_the_tracker_as_stored_and_filtered(js: JetStreamContext) -> None:
    tracker = FaultTracker(js._nc, await ensure_kv(js, BUCKET))
    one = raised("100001", "S1", 1)
    two, three = raised("100002", "S1", 2), raised("100002", "S1", 3, T0 + timedelta(minutes=1))
    gone = raised("100003", "S1", 4)
    elsewhere = raised("100004", "S2", 5)
    down = offline("100005", "S1")
    await store(js, tracker, one, two, three, gone, elsewhere, down, cleared(gone, T0 + timedelta(hours=1)))
    await js.publish("fire.device.100005", b"not an event")  # the device's latest: not usable

    only_s1 = fault_filter(MqttDestination(url="mqtt://127.0.0.1:1883", sites=["S1"]))
    got = {e.id: (e, rebuilt) for e, rebuilt in await OpenFaults(js, only_s1)()}
    assert sorted(got) == sorted([one.id, two.id, three.id, down.id])  # not cleared, not S2
    assert got[one.id] == (one, False)  # as stored
    assert got[three.id] == (three, False)  # the device's latest fault event
    rebuilt, was_rebuilt = got[two.id]  # the same device's other fault: from its record
    assert was_rebuilt and isinstance(rebuilt, FaultRaised) and rebuilt.origin == "gb26875"
    assert (rebuilt.point, rebuilt.condition, rebuilt.received_at) == (two.point, "fault", two.received_at)
    back, was_rebuilt = got[down.id]
    assert was_rebuilt and isinstance(back, DeviceOffline) and back.received_at == down.received_at

    faults_only = fault_filter(MqttDestination(url="mqtt://127.0.0.1:1883", kinds=["fault"]))
    assert down.id not in {e.id for e, _ in await OpenFaults(js, faults_only)()}


async def test_no_tracker_bucket_means_nothing_to_publish_again(js: JetStreamContext) -> None:
    assert await OpenFaults(js)() == []


async def test_the_configured_forwarder_rebuilds_the_retained_set_after_a_broker_restart(
    js: JetStreamContext, broker: MosquittoBroker
) -> None:
    tracker = FaultTracker(js._nc, await ensure_kv(js, BUCKET))
    s1 = [raised("100001", "S1", 1), raised("100001", "S1", 2), raised("100002", "S1", 3)]
    s2 = raised("100003", "S2", 4)
    await store(js, tracker, *s1, s2)
    settings = Settings(faults={"mqtt": [{"url": broker.url, "sites": ["S1"], "timeout": 1.0}]})  # type: ignore[arg-type]
    (courier,) = fault_couriers(js, settings)
    task = asyncio.create_task(courier.run())
    try:
        await wait_until(lambda: courier.ready.is_set() and courier.destination.link_up, 10)  # type: ignore[attr-defined]
        await wait_until(lambda: _retained_topics(broker, len(s1)), 10, 0.2)  # delivered, republished
        await restart_without_persistence(broker)
        await wait_until(lambda: _retained_topics(broker, len(s1)), 15, 0.2)
        state = await retained(broker)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert sorted(state) == sorted(topic(e) for e in s1)  # S2 is not this destination's
    assert all(s["state"] == "open" for s in state.values())


async def _retained_topics(broker: MosquittoBroker, n: int) -> bool:
    with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
        return len(await retained(broker)) == n
    return False
