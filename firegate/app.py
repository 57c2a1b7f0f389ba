"""`firegate run`: everything in one process, under one TaskGroup, stopped cleanly by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.client import Client as NATS

from firegate.bus.jetstream import StreamSettings, connect, connect_options, ensure_kv, ensure_stream
from firegate.bus.kvmemory import BUCKET, KvStatusMemory
from firegate.bus.normalize import Normalizer
from firegate.bus.publisher import Publisher, PublisherSettings
from firegate.bus.server import EmbeddedNatsServer
from firegate.bus.sink import JetStreamSink
from firegate.bus.spool import Spool
from firegate.config import Settings, parse_host_port
from firegate.gateway.remote import CommandServer
from firegate.gateway.server import Gateway, GatewayOptions
from firegate.ops.http import HealthServer
from firegate.ops.limits import raise_nofile_limit
from firegate.sites import LiveSites

log = logging.getLogger("firegate")


def gateway_options(settings: Settings) -> GatewayOptions:
    g = settings.gb26875
    host, port = parse_host_port(g.listen)
    udp_host, udp_port = parse_host_port(g.udp_listen) if g.udp_listen else (None, None)
    return GatewayOptions(
        host=host,
        port=port,
        udp_host=udp_host,
        udp_port=udp_port,
        center_address=g.center_address,
        address_mode=g.address_mode,
        max_connections=g.max_connections,
        first_frame_timeout=g.first_frame_timeout,
        idle_timeout=g.idle_timeout,
        confirm_timeout=g.confirm_timeout,
        retries=g.retries,
        patrol_interval=g.patrol_interval,
        clock_sync_on_connect=g.clock_sync_on_connect,
        clock_sync_daily_at=g.clock_sync_daily_at,
        rate_limit=g.rate_limit_per_device,
        rate_burst=g.rate_burst,
        write_buffer_limit=g.write_buffer_limit,
        registry_policy=g.registry_policy,
    )


@contextlib.asynccontextmanager
async def nats_connection(settings: Settings) -> AsyncIterator[NATS]:
    """The embedded nats-server (when no URL is configured) and a client connected to it."""
    server: EmbeddedNatsServer | None = None
    if settings.nats.embedded:
        server = EmbeddedNatsServer(
            settings.data_dir / "nats",
            port=settings.nats.embedded_port,
            max_mem=settings.nats.embedded_max_mem,
            max_file=settings.nats.embedded_max_file,
            sync_always=settings.nats.embedded_sync,
        )
        await server.start()
        log.info("embedded nats-server on %s", server.url)
    try:
        nc = await connect(
            settings.nats.urls,
            "firegate",
            connect_timeout=settings.nats.connect_timeout,
            **connect_options(settings.nats),
        )
        try:
            yield nc
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.drain(), 5)
    finally:
        if server is not None:
            await server.stop()


class _Readiness:
    """/readyz: NATS connected, the UITD listener bound, the spool below its limit."""

    def __init__(self) -> None:
        self._nc: NATS | None = None
        self._gateway: Gateway | None = None
        self._spool: Spool | None = None
        self._limit = 0

    def attach(self, nc: NATS, gateway: Gateway, spool: Spool, limit: int) -> None:
        self._nc, self._gateway, self._spool, self._limit = nc, gateway, spool, limit

    def nats(self) -> tuple[bool, str]:
        ok = self._nc is not None and self._nc.is_connected
        return ok, "connected" if ok else "starting" if self._nc is None else "down"

    def listener(self) -> tuple[bool, str]:
        gateway = self._gateway
        if gateway is not None and gateway.stopping:
            return False, "draining"  # let a load balancer move devices elsewhere
        ok = gateway is not None and gateway.ready.is_set()
        return ok, "bound" if ok else "starting"

    def spool(self) -> tuple[bool, str]:
        if self._spool is None:
            return False, "starting"
        return self._spool.pending_bytes < self._limit, f"{self._spool.pending_bytes} bytes pending"


async def run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    data_dir = Path(settings.data_dir)
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    log.info("open files limit %s", raise_nofile_limit())  # one descriptor per UITD connection
    sites = LiveSites(settings.sites)
    site_of, location_of = sites.site_of, sites.location_of

    def reload_sites() -> None:
        error = sites.reload()
        if error:
            log.error("site registry not reloaded, the previous one stays in force: %s", error)
        else:
            log.info("site registry reloaded from %s", sites.path)
            if gateways:
                gateways[0].options.known_devices = registered()

    def registered() -> dict[str, list[str]] | None:
        # the registry is an allow-list only when unknown devices are to be flagged or refused
        return sites.known_devices() if settings.gb26875.registry_policy != "accept" else None

    gateways: list[Gateway] = []

    loop.add_signal_handler(signal.SIGHUP, reload_sites)

    http_host, http_port = parse_host_port(settings.http.listen)
    health = HealthServer(http_host, http_port)
    # registered before the server answers, so /readyz says "not ready" while we start
    up = _Readiness()
    health.add_check("nats", up.nats)
    health.add_check("gb26875_listener", up.listener)
    health.add_check("spool", up.spool)
    await health.start()
    try:
        async with nats_connection(settings) as nc:
            js = nc.jetstream()
            await ensure_stream(
                js,
                StreamSettings(
                    name=settings.bus.stream,
                    duplicate_window=settings.bus.duplicate_window,
                    max_age=settings.bus.max_age_days * 86400,
                    max_bytes=settings.bus.max_bytes,
                    num_replicas=settings.effective_replicas,
                ),
            )
            kv = await ensure_kv(js, BUCKET, replicas=settings.effective_replicas)
            spool = await Spool.open(data_dir / "spool", max_bytes=settings.bus.spool_max_bytes)
            try:
                async with Publisher(
                    nc, spool, PublisherSettings(retry_for=settings.bus.publish_retry)
                ) as pub:
                    memory = KvStatusMemory(kv, lambda: nc.is_connected)
                    normalizer = Normalizer(memory, site_of=site_of, location_of=location_of)
                    options = gateway_options(settings)
                    options.known_devices = registered()
                    gateway = Gateway(options, JetStreamSink(pub), normalizer=normalizer, site_of=site_of)
                    gateways.append(gateway)
                    up.attach(nc, gateway, spool, settings.bus.spool_max_bytes)
                    async with asyncio.TaskGroup() as tg:
                        serving = tg.create_task(gateway.serve())
                        replayer = tg.create_task(pub.run_replayer())
                        commands = tg.create_task(CommandServer(nc, gateway).run())
                        flusher = tg.create_task(memory.run_flusher())
                        await stop.wait()
                        log.info("stopping: draining the gateway")
                        commands.cancel()
                        gateway.stop()
                        await serving
                        replayer.cancel()
                        flusher.cancel()
            finally:
                await spool.close()
    finally:
        await health.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
