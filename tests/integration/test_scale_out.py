"""Several gateways behind one TCP load balancer, on one NATS: a device that reconnects to
another gateway is not reported offline by the one it left."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from firegate.bus.events import DeviceOffline, DeviceOnline
from firegate.gateway.remote import CommandServer
from firegate.gateway.server import Gateway, GatewayOptions
from firegate.ingest.sink import MemorySink
from tests.gateway.client import Uitd
from tests.gateway.standalone import make_gateway, serve
from tests.natsserver import nats_client, running_nats_server, wait_until

IDLE = 1.0  # gb26875.idle_timeout, shortened


@contextlib.asynccontextmanager
async def gateway(nc: NATS, **options: Any) -> AsyncIterator[tuple[Gateway, MemorySink]]:
    sink = MemorySink()
    options = GatewayOptions(
        host="127.0.0.1",
        port=0,
        clock_sync_on_connect=False,
        idle_timeout=IDLE,
        sweep_interval=0.1,
        **options,
    )
    gw = make_gateway(options, sink)
    async with asyncio.TaskGroup() as tg:
        serving = tg.create_task(serve(gw))
        commands = tg.create_task(CommandServer(nc, gw).run())
        await gw.ready.wait()
        try:
            yield gw, sink
        finally:
            commands.cancel()
            gw.stop()
            await serving


@contextlib.asynccontextmanager
async def two_gateways(
    tmp_path: Path, **b_options: Any
) -> AsyncIterator[tuple[Gateway, MemorySink, Gateway, MemorySink, str]]:
    """Gateways A and B behind one (imagined) load balancer, on one NATS."""
    async with (
        running_nats_server(tmp_path / "nats") as server,
        nats_client(server.url) as nc_a,
        nats_client(server.url) as nc_b,
        gateway(nc_a) as (gw_a, sink_a),
        gateway(nc_b, **b_options) as (gw_b, sink_b),
    ):
        yield gw_a, sink_a, gw_b, sink_b, server.url


def link_events(sink: MemorySink, device: str) -> list[str]:
    return [
        type(e).__name__
        for e in sink.events
        if isinstance(e, DeviceOnline | DeviceOffline) and e.device == device
    ]


async def heartbeats(gw: Gateway, address: int, seconds: float) -> Uitd:
    dev = await Uitd(address).connect(gw.port or 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await dev.exchange(dev.frame())
        await asyncio.sleep(0.2)
    return dev


async def test_a_device_that_moved_is_not_reported_offline_by_the_gateway_it_left(tmp_path: Path) -> None:
    async with two_gateways(tmp_path) as (gw_a, sink_a, gw_b, sink_b, _):
        dev = await heartbeats(gw_a, 501, 0.3)
        await dev.close()  # the link drops; the balancer sends the reconnect to B
        dev = await heartbeats(gw_b, 501, IDLE * 3)
        assert link_events(sink_a, "501") == ["DeviceOnline"]  # never a false offline
        assert "501" not in gw_a.tracker.devices  # B owns the device's link state now
        assert link_events(sink_b, "501") == ["DeviceOnline"]
        await dev.close()  # now it really goes silent: B, which serves it, says so
        await wait_until(lambda: link_events(sink_b, "501") == ["DeviceOnline", "DeviceOffline"], IDLE * 5)
        assert link_events(sink_a, "501") == ["DeviceOnline"]


async def test_a_device_connected_nowhere_else_is_reported_offline(tmp_path: Path) -> None:
    async with two_gateways(tmp_path) as (gw_a, sink_a, _, sink_b, _):
        dev = await heartbeats(gw_a, 502, 0.3)
        await dev.close()
        await wait_until(lambda: link_events(sink_a, "502") == ["DeviceOnline", "DeviceOffline"], IDLE * 5)
        assert link_events(sink_b, "502") == []


async def test_a_silent_device_still_connected_here_is_offline_despite_its_own_answer(
    tmp_path: Path,
) -> None:
    # the socket stays open but nothing comes: this gateway's own subscription must not count
    # as "served elsewhere"
    async with (
        running_nats_server(tmp_path / "nats") as server,
        nats_client(server.url) as nc,
        gateway(nc) as (gw, sink),
    ):
        dev = await heartbeats(gw, 503, 0.3)
        await wait_until(lambda: link_events(sink, "503") == ["DeviceOnline", "DeviceOffline"], IDLE * 5)
        await dev.close()


async def beat(dev: Uitd, seconds: float) -> None:
    """Heartbeats without waiting for their confirms, so command frames can interleave."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await dev.send(dev.frame())
        await asyncio.sleep(0.2)


async def test_presence_is_answered_while_a_device_command_is_still_running(tmp_path: Path) -> None:
    # the holding gateway is busy with a read the device is slow to answer (3 s): its answer
    # about presence must not wait behind it, or the gateway the device left reports it offline
    async with (
        two_gateways(tmp_path, confirm_timeout=3.0, retries=0) as (gw_a, sink_a, gw_b, sink_b, url),
        nats_client(url) as operator,
    ):
        dev = await heartbeats(gw_a, 601, 0.3)
        await dev.close()
        dev = await Uitd(601).connect(gw_b.port or 0)
        beating = asyncio.create_task(beat(dev, IDLE * 4))
        await wait_until(lambda: gw_b.serves("601"), 5)
        asking = asyncio.create_task(
            operator.request("firegate.cmd.601.read", json.dumps({"type": 81}).encode(), timeout=10)
        )
        await beating
        assert link_events(sink_a, "601") == ["DeviceOnline"]
        assert link_events(sink_b, "601") == ["DeviceOnline"]
        with contextlib.suppress(Exception):
            await asking
        await dev.close()


async def test_a_device_back_while_the_gateways_are_asked_is_not_offline(tmp_path: Path) -> None:
    async with (
        running_nats_server(tmp_path / "nats") as server,
        nats_client(server.url) as nc,
        gateway(nc) as (gw, sink),
    ):
        asked, answer = asyncio.Event(), asyncio.Event()
        real = gw.served_elsewhere
        assert real is not None

        async def slow(devices: list[str]) -> set[str]:  # the other gateways take their time
            asked.set()
            await answer.wait()
            return await real(devices)

        gw.served_elsewhere = slow
        dev = await heartbeats(gw, 801, 0.3)
        await asked.wait()  # silent: the sweep marked it offline and asks around...
        back = await Uitd(801).connect(gw.port or 0)
        await back.exchange(back.frame())  # ...while it comes back to this gateway
        answer.set()
        await asyncio.sleep(IDLE / 2)
        assert gw.holds("801") and gw.tracker.is_online("801")
        assert link_events(sink, "801")[-1] == "DeviceOnline"  # never left "offline" while here
        await back.close()
        await dev.close()


class StallingProxy:
    """A loopback TCP proxy to NATS whose client-to-server direction can be stopped: a link that
    black-holes (no FIN, no RST) while the gateway keeps writing."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, stoppable: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if stoppable:
                        await self.flowing.wait()
                    dst.write(data)
                    await dst.drain()

        self.tasks.add(asyncio.create_task(pump(reader, up_writer, True)))
        self.tasks.add(asyncio.create_task(pump(up_reader, writer, False)))

    async def close(self) -> None:
        self.flowing.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.server.close()


async def test_a_stalled_nats_link_delays_offline_events_by_the_presence_timeout_only(
    tmp_path: Path,
) -> None:
    async with running_nats_server(tmp_path / "nats") as server:
        proxy = StallingProxy(server.port)
        port = await proxy.start()
        try:
            async with (
                nats_client(f"nats://127.0.0.1:{port}", ping_interval=60) as nc,
                gateway(nc) as (gw, sink),
            ):
                devices = [await heartbeats(gw, 700 + i, 0.3) for i in range(5)]
                proxy.flowing.clear()  # the link black-holes; the devices go silent with it
                filler = asyncio.create_task(fill(nc))  # the gateway keeps writing to NATS
                began = time.monotonic()
                await wait_until(lambda: sum(isinstance(e, DeviceOffline) for e in sink.events) == 5, 8)
                # silent for IDLE, then one presence timeout (1.5 s at most) for the first
                # sweep; the next ones don't ask a link that stopped moving
                assert time.monotonic() - began < IDLE + 3
                filler.cancel()
                for dev in devices:
                    await dev.close()
                proxy.flowing.set()
        finally:
            await proxy.close()


async def fill(nc: NATS) -> None:
    with contextlib.suppress(Exception):
        while True:
            await nc.publish("junk", b"x" * 500_000)
            await asyncio.sleep(0)
