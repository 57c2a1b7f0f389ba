"""MqttFaultDestination against a private Mosquitto (tests/mqttbroker.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiomqtt
import pytest

from firegate.bus.events import (
    DeviceOffline,
    DeviceOnline,
    Envelope,
    FaultCleared,
    FaultRaised,
    Point,
    StatusChanged,
)
from firegate.forwarders.delivery import Delivery
from firegate.forwarders.errors import DeliveryError
from firegate.forwarders.mqtt import MqttFaultDestination
from tests.mqttbroker import MosquittoBroker, running_mosquitto

pytestmark = pytest.mark.timeout(10)

SITE = "站点-1"  # non-ASCII on purpose: payloads are UTF-8 JSON, not \u escapes
DEVICE = "123456789012"
RECEIVED = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
POINT = Point(system_type=1, system_address=2, component_address=42, location="B1 泵房")
FAULT_TOPIC = f"firegate/faults/{SITE}/{DEVICE}/1-2-42/fault"
OFFLINE_TOPIC = f"firegate/faults/{SITE}/{DEVICE}/device/offline"
_ids = itertools.count(1)


def common(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": f"{DEVICE}.test.{next(_ids)}",
        "device": DEVICE,
        "site": SITE,
        "occurred_at": None,
        "received_at": RECEIVED,
    }
    fields.update(overrides)
    return fields


def raised(condition: str = "fault", point: Point = POINT, **kw: Any) -> FaultRaised:
    return FaultRaised(condition=condition, point=point, **common(**kw))


def cleared(**kw: Any) -> FaultCleared:
    return FaultCleared(condition="fault", point=POINT, duration_s=60.0, **common(**kw))


def offline() -> DeviceOffline:
    return DeviceOffline(last_seen=RECEIVED, silent_s=90.0, **common())


def online() -> DeviceOnline:
    return DeviceOnline(peer="127.0.0.1:50000", outage_s=120.0, **common())


def delivery(event: Envelope) -> Delivery:
    return Delivery(event=event, subject=event.subject, data=event.model_dump_json().encode(), stream_seq=1)


def saved(broker: MosquittoBroker, topic: str) -> bool:
    try:
        return topic.encode() in broker.db_path.read_bytes()
    except FileNotFoundError:
        return False


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[MosquittoBroker]:
    async with running_mosquitto(tmp_path / "mqtt") as b:
        yield b


@contextlib.asynccontextmanager
async def destination(url: str, **kw: Any) -> AsyncIterator[MqttFaultDestination]:
    dest = MqttFaultDestination(url, **{"timeout": 2.0, **kw})
    try:
        yield dest
    finally:
        await dest.close()


@contextlib.asynccontextmanager
async def subscribed(broker: MosquittoBroker, *filters: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port, timeout=3.0) as client:
        for f in filters:
            await client.subscribe(f, qos=1)
        yield client


async def take(client: aiomqtt.Client, n: int, within: float = 3.0) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    async with asyncio.timeout(within):
        async for m in client.messages:
            assert isinstance(m.payload, bytes)
            got.append((m.topic.value, m.payload))
            if len(got) == n:
                return got
    raise AssertionError("unreachable")


async def retained(broker: MosquittoBroker, topic_filter: str = "firegate/faults/#") -> dict[str, Any]:
    """What a NEW subscriber gets: the broker sends retained messages on SUBSCRIBE, before it
    handles our later publish to a probe topic, so the probe marks the end (no guessed sleep)."""
    probe = f"probe/{uuid4().hex}"
    async with subscribed(broker, topic_filter, probe) as client:
        await client.publish(probe, b"end", qos=1)
        state: dict[str, Any] = {}
        async with asyncio.timeout(3.0):
            async for m in client.messages:
                if m.topic.value == probe:
                    return state
                assert m.retain and isinstance(m.payload, bytes)
                state[m.topic.value] = json.loads(m.payload)
    raise AssertionError("unreachable")


async def test_fault_raised_then_cleared(broker: MosquittoBroker) -> None:
    up, down = raised(), cleared()
    async with destination(broker.url) as dest, subscribed(broker, "firegate/#") as live:
        await dest.deliver(delivery(up))
        after_raise = await retained(broker)
        await dest.deliver(delivery(down))
        after_clear = await retained(broker)
        seen = await take(live, 4)

    events_base = f"firegate/events/{SITE}/{DEVICE}"
    assert [t for t, _ in seen] == [
        f"{events_base}/fault_raised",
        FAULT_TOPIC,
        f"{events_base}/fault_cleared",
        FAULT_TOPIC,
    ]
    assert seen[0][1] == delivery(up).data
    assert json.loads(seen[2][1])["id"] == down.id
    assert seen[3][1] == b""  # the clear
    assert SITE.encode() in seen[1][1]  # UTF-8, not \u escaped

    state = after_raise[FAULT_TOPIC]
    assert state["state"] == "open"
    assert state["since"] == "2024-05-01T08:30:00Z"
    assert state["event"]["id"] == up.id
    assert state["event"]["point"]["location"] == "B1 泵房"
    assert list(after_raise) == [FAULT_TOPIC]
    assert after_clear == {}


async def test_device_offline_then_online(broker: MosquittoBroker) -> None:
    async with destination(broker.url) as dest, subscribed(broker, "firegate/events/#") as live:
        down = offline()
        await dest.deliver(delivery(down))
        after_offline = await retained(broker)
        await dest.deliver(delivery(online()))
        after_online = await retained(broker)
        seen = await take(live, 2)

    assert [t.rsplit("/", 1)[1] for t, _ in seen] == ["device_offline", "device_online"]
    assert after_offline[OFFLINE_TOPIC]["state"] == "open"
    assert after_offline[OFFLINE_TOPIC]["event"]["id"] == down.id
    assert list(after_offline) == [OFFLINE_TOPIC]
    assert after_online == {}


async def test_component_naming_and_events_only_types(broker: MosquittoBroker) -> None:
    uitd_fault = raised(point=Point(), condition="main_power_fault")
    system_fault = raised(point=Point(system_type=1, system_address=3), condition="bus_fault")
    odd = raised(site="a/b+#", device="dev")
    status = StatusChanged(point=POINT, status=1, status_flags=["normal"], set=[], cleared=[], **common())
    async with destination(broker.url) as dest:
        for event in (uitd_fault, system_fault, odd, status):
            await dest.deliver(delivery(event))
        assert len(dest.messages(delivery(status))) == 1  # events topic only
        state = await retained(broker)
    assert sorted(state) == sorted(
        [
            f"firegate/faults/{SITE}/{DEVICE}/device/main_power_fault",
            f"firegate/faults/{SITE}/{DEVICE}/1-3/bus_fault",
            "firegate/faults/a_b__/dev/1-2-42/fault",  # reserved characters cannot add levels
        ]
    )


async def test_broker_down_then_restarted(broker: MosquittoBroker) -> None:
    async with destination(broker.url, timeout=1.0) as dest:
        await dest.deliver(delivery(raised()))
        # Mosquitto saves after each change; wait for the retained topic to be on disk
        # before the crash, as a broker that crashed earlier would have lost it.
        async with asyncio.timeout(3.0):
            while not saved(broker, FAULT_TOPIC):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        broker.kill()

        loop = asyncio.get_running_loop()
        for _ in range(2):  # the kept connection dies, then a fresh connection is refused
            started = loop.time()
            with pytest.raises(DeliveryError) as failed:
                await dest.deliver(delivery(offline()))
            assert failed.value.retryable and failed.value.reason == "broker"
            assert loop.time() - started < 2.5  # the timeout (1 s) plus a short socket close, not a hang

        await broker.start()
        await dest.deliver(delivery(offline()))  # reconnects
        state = await retained(broker)
    assert state[FAULT_TOPIC]["state"] == "open"  # survived the crash
    assert state[OFFLINE_TOPIC]["state"] == "open"


async def test_idle_connection_lost_reconnects_within_one_delivery(broker: MosquittoBroker) -> None:
    async with destination(broker.url) as dest:
        await dest.deliver(delivery(raised()))
        await broker.stop()
        await broker.start()
        await asyncio.sleep(0.2)  # let the client notice the closed connection
        await dest.deliver(delivery(offline()))  # no failed try: reconnected at once
        assert OFFLINE_TOPIC in await retained(broker)


@contextlib.asynccontextmanager
async def mute_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """Accepts TCP but never answers CONNECT; the event is set when the client closes."""
    closed = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # returns at EOF
        closed.set()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"mqtt://127.0.0.1:{server.sockets[0].getsockname()[1]}", closed
    finally:
        server.close()
        await server.wait_closed()


async def test_unanswering_broker_times_out_and_closes_its_socket() -> None:
    async with mute_server() as (url, closed), destination(url, timeout=0.5) as dest:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(DeliveryError) as failed:
            await dest.deliver(delivery(raised()))
        assert failed.value.retryable and loop.time() - started < 2.0
        async with asyncio.timeout(2.0):
            await closed.wait()  # the half-open connection was not left behind


async def test_cancelled_while_connecting_closes_its_socket() -> None:
    async with mute_server() as (url, closed), destination(url, timeout=0.5) as dest:
        task = asyncio.create_task(dest.deliver(delivery(raised())))
        await asyncio.sleep(0.1)  # connected, awaiting CONNACK
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(2.0):
            await closed.wait()


async def test_concurrent_deliveries_share_one_connection(broker: MosquittoBroker) -> None:
    async with destination(broker.url) as dest:
        await asyncio.gather(*(dest.deliver(delivery(e)) for e in (raised(), offline())))
        state = await retained(broker)
    assert sorted(state) == sorted([FAULT_TOPIC, OFFLINE_TOPIC])
    assert broker.log_tail(200).count("New client connected") == 1 + 1  # dest + the retained() probe


async def test_prefixes_stay_separate(broker: MosquittoBroker) -> None:
    async with (
        destination(broker.url) as main,
        destination(broker.url, topic_prefix="acme/fire") as other,
        subscribed(broker, "firegate/#") as live,
    ):
        await main.deliver(delivery(raised()))
        await other.deliver(delivery(raised()))
        await main.deliver(delivery(cleared()))  # clears only under its own prefix
        firegate_state = await retained(broker)
        other_state = await retained(broker, "acme/#")
        seen = await take(live, 4)
    assert firegate_state == {}
    assert list(other_state) == [f"acme/fire/faults/{SITE}/{DEVICE}/1-2-42/fault"]
    assert all(topic.startswith("firegate/") for topic, _ in seen)


async def test_close_then_deliver_refused(broker: MosquittoBroker) -> None:
    dest = MqttFaultDestination(broker.url, timeout=2.0)
    await dest.deliver(delivery(raised()))
    await dest.close()
    await dest.close()  # idempotent
    with pytest.raises(DeliveryError) as failed:
        await dest.deliver(delivery(cleared()))
    assert failed.value.reason == "closed"


@pytest.mark.parametrize(
    ("url", "kw"),
    [
        ("http://127.0.0.1:1883", {}),
        ("mqtt://:1883", {}),
        ("mqtt://127.0.0.1:1883", {"topic_prefix": "a/+"}),
        ("mqtt://127.0.0.1:1883", {"topic_prefix": "/"}),
        ("mqtt://127.0.0.1:1883", {"timeout": 0}),
        ("mqtt://127.0.0.1:99999", {}),
    ],
)
def test_bad_configuration(url: str, kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        MqttFaultDestination(url, **kw)


def test_default_ports() -> None:
    assert MqttFaultDestination("mqtt://broker").port == 1883
    assert MqttFaultDestination("mqtts://broker").port == 8883
    assert MqttFaultDestination("mqtts://broker:9000").port == 9000


async def test_the_link_gauge_follows_the_connection(broker: MosquittoBroker) -> None:
    from firegate.forwarders.metrics import forward_connections

    gauge = forward_connections.labels(destination="mqtt")
    before = gauge._value.get()
    async with destination(broker.url) as dest:
        await dest.deliver(delivery(raised()))
        assert gauge._value.get() == before + 1
        broker.kill()
        with pytest.raises(DeliveryError):
            await dest.deliver(delivery(raised()))
        assert gauge._value.get() == before
        await broker.start()
        await dest.deliver(delivery(raised()))
        assert gauge._value.get() == before + 1
    assert gauge._value.get() == before
