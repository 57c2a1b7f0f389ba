"""Several gateways behind one TCP load balancer, on one NATS: a device that reconnects to
another gateway is not reported offline by the one it left."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.client import Client as NATS

from firegate.bus.events import DeviceOffline, DeviceOnline
from firegate.gateway.remote import CommandServer
from firegate.gateway.server import Gateway, GatewayOptions
from firegate.gateway.sink import MemorySink
from tests.gateway.client import Uitd
from tests.natsserver import nats_client, running_nats_server

IDLE = 1.0  # gb26875.idle_timeout, shortened


@contextlib.asynccontextmanager
async def gateway(nc: NATS) -> AsyncIterator[tuple[Gateway, MemorySink]]:
    sink = MemorySink()
    options = GatewayOptions(
        host="127.0.0.1", port=0, clock_sync_on_connect=False, idle_timeout=IDLE, sweep_interval=0.1
    )
    gw = Gateway(options, sink)
    async with asyncio.TaskGroup() as tg:
        serving = tg.create_task(gw.serve())
        commands = tg.create_task(CommandServer(nc, gw).run())
        await gw.ready.wait()
        try:
            yield gw, sink
        finally:
            commands.cancel()
            gw.stop()
            await serving


def link_events(sink: MemorySink, device: str) -> list[str]:
    return [type(e).__name__ for e in sink.events if isinstance(e, DeviceOnline | DeviceOffline)
            and e.device == device]


async def heartbeats(gw: Gateway, address: int, seconds: float) -> Uitd:
    dev = await Uitd(address).connect(gw.port or 0)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await dev.exchange(dev.frame())
        await asyncio.sleep(0.2)
    return dev


async def until(predicate: object, timeout: float) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_a_device_that_moved_is_not_reported_offline_by_the_gateway_it_left(tmp_path: Path) -> None:
    async with (
        running_nats_server(tmp_path / "nats") as server,
        nats_client(server.url) as nc_a,
        nats_client(server.url) as nc_b,
        gateway(nc_a) as (gw_a, sink_a),
        gateway(nc_b) as (gw_b, sink_b),
    ):
        dev = await heartbeats(gw_a, 501, 0.3)
        await dev.close()  # the link drops; the balancer sends the reconnect to B
        dev = await heartbeats(gw_b, 501, IDLE * 3)
        assert link_events(sink_a, "501") == ["DeviceOnline"]  # never a false offline
        assert "501" not in gw_a.tracker.devices  # B owns the device's link state now
        assert link_events(sink_b, "501") == ["DeviceOnline"]
        await dev.close()  # now it really goes silent: B, which serves it, says so
        await until(lambda: link_events(sink_b, "501") == ["DeviceOnline", "DeviceOffline"], IDLE * 5)
        assert link_events(sink_a, "501") == ["DeviceOnline"]


async def test_a_device_connected_nowhere_else_is_reported_offline(tmp_path: Path) -> None:
    async with (
        running_nats_server(tmp_path / "nats") as server,
        nats_client(server.url) as nc_a,
        nats_client(server.url) as nc_b,
        gateway(nc_a) as (gw_a, sink_a),
        gateway(nc_b) as (_, sink_b),
    ):
        dev = await heartbeats(gw_a, 502, 0.3)
        await dev.close()
        await until(lambda: link_events(sink_a, "502") == ["DeviceOnline", "DeviceOffline"], IDLE * 5)
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
        await until(lambda: link_events(sink, "503") == ["DeviceOnline", "DeviceOffline"], IDLE * 5)
        await dev.close()
