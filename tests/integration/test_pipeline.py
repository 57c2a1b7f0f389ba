"""Gateway -> JetStream end to end against private nats-servers: durable, deduplicated, in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from firegate.bus.jetstream import StreamSettings, ensure_kv, ensure_stream
from firegate.bus.kvmemory import BUCKET, KvStatusMemory
from firegate.bus.publisher import Publisher, PublisherSettings
from firegate.bus.server import EmbeddedNatsServer
from firegate.bus.sink import JetStreamSink
from firegate.bus.spool import Spool
from firegate.codecs.gb26875 import Command, ComponentStatus, TimeTag
from firegate.gateway.server import Gateway, GatewayOptions
from tests.gateway.client import Uitd
from tests.gateway.standalone import make_gateway, serve
from tests.natsserver import nats_client, running_nats_server


@contextlib.asynccontextmanager
async def gateway_on(nc: NATS, spool_dir: Path, **opts: object) -> AsyncIterator[Gateway]:
    """One gateway process's worth: publisher, spool, KV memory, gateway."""
    js = nc.jetstream(timeout=5.0)
    kv = await ensure_kv(js, BUCKET)
    async with Spool(spool_dir) as spool, Publisher(nc, spool, PublisherSettings(retry_for=0.5)) as pub:
        options = GatewayOptions(host="127.0.0.1", port=0, clock_sync_on_connect=False, **opts)  # type: ignore[arg-type]
        gw = make_gateway(options, JetStreamSink(pub), memory=KvStatusMemory(kv, lambda: nc.is_connected))
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(serve(gw))
            replayer = tg.create_task(pub.run_replayer())
            await asyncio.wait_for(gw.ready.wait(), 5)
            try:
                yield gw
            finally:
                gw.stop()
                await serving
                replayer.cancel()


async def stored(nc: NATS, subject: str = "fire.>") -> list[dict[str, object]]:
    js = nc.jetstream(timeout=5.0)
    sub = await js.subscribe(subject, ordered_consumer=True)
    out = []
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        while True:
            msg = await sub.next_msg(timeout=1.0)
            out.append(json.loads(msg.data))
    await sub.unsubscribe()
    return out


def alarm(i: int, status: int = 0b11) -> ComponentStatus:
    return ComponentStatus.make(1, 1, 42, i, status, f"{i}号点", TimeTag.now())


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[EmbeddedNatsServer]:
    async with running_nats_server(tmp_path / "nats") as s:
        async with nats_client(s.url) as nc:
            await ensure_stream(nc.jetstream(timeout=5.0), StreamSettings())
        yield s


async def test_retransmission_to_another_gateway_is_stored_once(
    server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    async with nats_client(server.url) as nc:
        dev = Uitd(74565)
        raw = dev.frame(2, [alarm(1)])
        async with gateway_on(nc, tmp_path / "a") as a:
            await dev.connect(a.port or 0)
            assert (await dev.exchange(raw)).command == Command.CONFIRM
            await dev.close()
        async with gateway_on(nc, tmp_path / "b") as b:  # the confirm was lost; it retries elsewhere
            await dev.connect(b.port or 0)
            assert (await dev.exchange(raw)).command == Command.CONFIRM
            await dev.close()
        alarms = await stored(nc, "fire.alarm.74565")
        assert len(alarms) == 1 and alarms[0]["device"] == "74565"


async def test_nats_down_mid_load_spools_then_replays_exactly_once_in_order(
    server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    devices = [Uitd(1000 + i) for i in range(5)]
    sent: dict[str, list[int]] = {}
    async with nats_client(server.url) as nc, gateway_on(nc, tmp_path / "spool") as gw:
        for d in devices:
            await d.connect(gw.port or 0)
        for round_ in range(6):
            if round_ == 3:
                server.kill()  # NATS dies in the middle; confirms must still come, from the spool
            for d in devices:
                reply = await d.exchange(d.frame(2, [alarm(round_)]), timeout=10)
                assert reply.command == Command.CONFIRM
                sent.setdefault(str(d.address), []).append(round_)
        await server.start()
        # the replayer drains the spool once NATS answers again
        events: list[dict[str, object]] = []
        for _ in range(100):
            events = [e for e in await stored(nc, "fire.alarm.>")]
            if len(events) >= 30:
                break
            await asyncio.sleep(0.2)
        for d in devices:
            await d.close()
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)) == 30
    for device, rounds in sent.items():
        mine = [e for e in events if e["device"] == device]
        assert [e["point"]["component_address"] for e in mine] == rounds  # type: ignore[index]


async def test_fault_edges_survive_a_gateway_restart(server: EmbeddedNatsServer, tmp_path: Path) -> None:
    faulty = ComponentStatus.make(1, 1, 40, 7, 0b101, "烟感", TimeTag.now())
    async with nats_client(server.url) as nc:
        for _ in range(2):  # two gateway lifetimes, the same repeated fault status
            async with gateway_on(nc, tmp_path / "s") as gw:
                dev = await Uitd(2000).connect(gw.port or 0)
                await dev.exchange(
                    dev.frame(2, [ComponentStatus.make(1, 1, 40, 7, 0b101, "烟感", TimeTag.now())])
                )
                await dev.close()
        async with gateway_on(nc, tmp_path / "s") as gw:
            dev = await Uitd(2000).connect(gw.port or 0)
            await dev.exchange(dev.frame(2, [ComponentStatus.make(1, 1, 40, 7, 0b1, "烟感", TimeTag.now())]))
            await dev.close()
        faults = await stored(nc, "fire.fault.2000")
        assert faulty.fault
        assert [f["type"] for f in faults] == ["fault_raised", "fault_cleared"]
        assert faults[1]["duration_s"] is not None
