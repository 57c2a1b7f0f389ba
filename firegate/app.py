"""`firegate run`: everything in one process, under one TaskGroup, stopped cleanly by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

from nats.aio.client import Client as NATS

from firegate.aio import cancel_and_wait
from firegate.bus.errors import NatsConnectError, NatsServerError, StreamConfigError
from firegate.bus.jetstream import connect, connect_options, ensure_kv, tls_context
from firegate.bus.kvmemory import BUCKET, KvStatusMemory
from firegate.bus.permissions import identity, refused_start
from firegate.bus.publisher import Publisher, PublisherSettings
from firegate.bus.retention import StreamLayout, StreamWatch, ensure_streams
from firegate.bus.server import EmbeddedNatsServer
from firegate.bus.sink import JetStreamSink
from firegate.bus.spool import Spool
from firegate.config import ROLES, Role, Settings, parse_host_port
from firegate.devicetime import set_device_zone
from firegate.errors import StartupError, mask_url
from firegate.forwarders.courier import Courier, couriers_readiness, ensure_dead_letter_stream
from firegate.forwarders.faults import BUCKET as FAULTS_BUCKET
from firegate.forwarders.faults import FaultTracker
from firegate.forwarders.incident import Policy
from firegate.forwarders.lifecycle import Lifecycle, site_info_lookup
from firegate.forwarders.precedence import Precedence
from firegate.forwarders.routes import center_info, dispatch_couriers, fault_couriers
from firegate.forwarders.store import BUCKET as ALARMS_BUCKET
from firegate.forwarders.store import AlarmStore
from firegate.forwarders.supervise import restarting
from firegate.gateway.remote import CommandServer
from firegate.gateway.sensors.seen import BUCKET as SENSORS_BUCKET
from firegate.gateway.sensors.seen import KvSeen
from firegate.gateway.sensors.source import SensorSites, run_sources
from firegate.gateway.sensors.source import readiness as sensor_readiness
from firegate.gateway.serial.lines import PanelSites, run_lines, serial_lines
from firegate.gateway.server import Gateway, GatewayOptions
from firegate.ingest import Ingest
from firegate.ingest.normalize import Normalizer
from firegate.ops.http import Check, HealthServer
from firegate.ops.limits import DataDirInUse, DataDirLock, calm_garbage_collector, raise_nofile_limit
from firegate.ops.metrics import SITE_REGISTRY_RELOADS, SITE_REGISTRY_STALE
from firegate.sites import LiveSites

log = logging.getLogger("firegate")
_T = TypeVar("_T")


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
        try:
            await server.start()
        except NatsServerError as e:
            raise StartupError("nats.embedded_port", settings.nats.embedded_port, e.summary) from e
        log.info("embedded nats-server on %s", server.url)
    try:
        try:
            nc = await connect(
                settings.nats.urls,
                "firegate",
                connect_timeout=settings.nats.connect_timeout,
                inbox_prefix=settings.nats.inbox_prefix,
                **connect_options(settings.nats),
            )
        except NatsConnectError as e:
            s = settings.nats
            who = identity(s.user, s.creds_file, s.token is not None, s.nkey_file)
            if e.refused_credentials and who.value:  # the server is there: who we said we are is wrong
                raise StartupError(who.setting, who.value, str(e)) from e
            urls = ",".join(mask_url(u) for u in s.urls)  # credentials in a URL are shown masked
            raise StartupError("nats.url", urls, str(e)) from e
        try:
            yield nc
        finally:
            try:
                await asyncio.wait_for(nc.drain(), 5)
            except Exception as e:  # TimeoutError, or the connection already lost: close anyway
                log.warning("NATS drain did not finish cleanly (%r); closing", e)
                with contextlib.suppress(Exception):
                    await nc.close()
    finally:
        if server is not None:
            await server.stop()


class _Readiness:
    """/readyz: NATS connected, and each role of this process able to work (the UITD listener
    bound and the spool below its limit; the alarm lifecycle consuming; forwarders subscribed).

    The spool check fails at ``SPOOL_NOT_READY_AT`` of ``bus.spool_max_bytes``, before the spool
    is full: a load balancer then moves devices to another gateway while this one can still
    take their frames, rather than after it has begun to refuse them."""

    SPOOL_NOT_READY_AT = 0.9

    def __init__(self) -> None:
        self._nc: NATS | None = None
        self._gateway: Gateway | None = None
        self._spool: Spool | None = None
        self._publisher: Publisher | None = None
        self._limit = 0
        self.draining = False  # SIGTERM came: still serving, about to drain

    def attach_nats(self, nc: NATS) -> None:
        self._nc = nc

    def attach_gateway(
        self, gateway: Gateway, spool: Spool, limit: int, publisher: Publisher | None = None
    ) -> None:
        self._gateway, self._spool, self._limit, self._publisher = gateway, spool, limit, publisher

    def store(self) -> tuple[bool, str]:
        """Can this process store events (a writable stream), or is it spooling?"""
        if self._publisher is None:
            return False, "starting"
        return self._publisher.storing()

    def nats(self) -> tuple[bool, str]:
        ok = self._nc is not None and self._nc.is_connected
        return ok, "connected" if ok else "starting" if self._nc is None else "down"

    def listener(self) -> tuple[bool, str]:
        gateway = self._gateway
        if self.draining or (gateway is not None and gateway.stopping):
            return False, "draining"  # let a load balancer move devices elsewhere
        ok = gateway is not None and gateway.ready.is_set()
        return ok, "bound" if ok else "starting"

    def spool(self) -> tuple[bool, str]:
        if self._spool is None:
            return False, "starting"
        pending = self._spool.pending_bytes
        ok = pending < self._limit * self.SPOOL_NOT_READY_AT
        detail = f"{pending} of {self._limit} bytes pending"
        return ok, detail if ok else f"nearly full: {detail}"


async def _serve(gateway: Gateway, settings: Settings) -> None:
    try:
        await gateway.serve()
    except* OSError as errors:
        if gateway.ready.is_set():
            raise
        reason = "; ".join(e.strerror or str(e) for e in errors.exceptions if isinstance(e, OSError))
        g = settings.gb26875
        # the TCP listener binds first: with its port known, it was the UDP one that failed
        if gateway.port is None:
            raise StartupError("gb26875.listen", g.listen, f"cannot listen: {reason}") from errors
        raise StartupError("gb26875.udp_listen", g.udp_listen, f"cannot listen: {reason}") from errors


async def _listening(gateway: Gateway, serving: asyncio.Task[None]) -> None:
    """Wait until the UITD listener is bound: a port already taken stops the start here, before
    anything else starts (the task group cancels this wait and raises _serve's error)."""
    bound = asyncio.ensure_future(gateway.ready.wait())
    try:
        await asyncio.wait({bound, serving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        bound.cancel()


class _LateChecks:
    """Readiness checks registered before /readyz answers, bound to their service once it exists."""

    def __init__(self) -> None:
        self._bound: dict[str, Check] = {}

    def check(self, name: str) -> Check:
        return lambda: self._bound[name]() if name in self._bound else (False, "starting")

    def bind(self, name: str, check: Check) -> None:
        self._bound[name] = check


async def _setup(step: Awaitable[_T]) -> _T:
    """A start-up request to JetStream; one the NATS server refused (a missing permission) only
    times out, so the start stops naming the user, the subject and the setting instead."""
    try:
        return await step
    except Exception as e:
        refused = refused_start(e)
        if refused is None:
            raise
        raise StartupError(*refused) from e


def _stream_refused(error: StreamConfigError, layout: StreamLayout) -> StartupError:
    """The setting behind a stream NATS will not create: most often a store too small for
    bus.max_bytes (or bus.telemetry_max_bytes), or more replicas than the cluster has servers."""
    telemetry = error.stream == layout.telemetry.name
    stream, prefix = (layout.telemetry, "bus.telemetry_") if telemetry else (layout.records, "bus.")
    reason = error.reason.lower()
    if "replica" in reason or "peers" in reason:
        return StartupError("bus.replicas", stream.num_replicas, str(error))
    if "storage" in reason or "resources" in reason or "bytes" in reason:
        return StartupError(f"{prefix}max_bytes", stream.max_bytes, str(error))
    return StartupError(f"{prefix}stream", stream.name, str(error))


def _event_check(event: asyncio.Event, ok: str, not_ok: str) -> Check:
    return lambda: (event.is_set(), ok if event.is_set() else not_ok)


def _couriers_check(couriers: list[Courier]) -> Check:
    return lambda: couriers_readiness(couriers)


def _policy(settings: Settings) -> Policy:
    a = settings.alarms
    return Policy(
        incident_window=a.incident_window,
        manual=a.auto_confirm.manual,
        detectors=a.auto_confirm.detectors,
        detector_window=a.auto_confirm.detector_window,
        escalate_after=a.auto_confirm.escalate_after,
    )


async def run(settings: Settings) -> None:
    set_device_zone(settings.gb26875.device_timezone)  # as `firegate run` does, for in-process callers
    roles = set(settings.roles)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    data_dir = Path(settings.data_dir)
    try:
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    except OSError as e:
        raise StartupError("data_dir", str(data_dir), f"cannot create it: {e.strerror or e}") from e
    lock = DataDirLock(data_dir)
    if "gateway" in roles or settings.nats.embedded:  # the spool, or the embedded server's store
        try:
            lock.acquire()
        except DataDirInUse as e:
            raise StartupError("data_dir", str(data_dir), str(e)) from e
        except OSError as e:
            raise StartupError("data_dir", str(data_dir), f"cannot lock it: {e.strerror or e}") from e
    try:
        await _run_locked(settings, roles, stop, data_dir)
    finally:
        lock.release()


async def _run_locked(settings: Settings, roles: set[Role], stop: asyncio.Event, data_dir: Path) -> None:
    loop = asyncio.get_running_loop()
    if "gateway" in roles:
        log.info("open files limit %s", raise_nofile_limit())  # one descriptor per UITD connection
    sites = LiveSites(settings.sites)
    site_of, location_of = sites.site_of, sites.location_of
    sensor_sites = SensorSites(site_of)  # unregistered sensors: the site their topic or source names
    # every frame asks its site: a layer only where it has something to say
    if settings.sensors.sources:
        site_of = sensor_sites.site_of
    panel_sites = PanelSites(settings.panels, site_of)  # a serial panel's configured site
    if panel_sites.sites:
        site_of = panel_sites.site_of
    gateways: list[Gateway] = []

    def registered() -> dict[str, list[str]] | None:
        # the registry is an allow-list only when unknown devices are to be flagged or refused
        return sites.known_devices() if settings.gb26875.registry_policy != "accept" else None

    registry_state = {"detail": f"loaded from {sites.path}" if sites.path else "none configured"}

    def reload_sites() -> None:
        error = sites.reload()
        if error:
            SITE_REGISTRY_RELOADS["failed"].inc()
            SITE_REGISTRY_STALE.set(1)
            registry_state["detail"] = f"reload failed, the previous registry stays in force: {error}"
            log.error("site registry not reloaded, the previous one stays in force: %s", error)
        else:
            SITE_REGISTRY_RELOADS["ok"].inc()
            SITE_REGISTRY_STALE.set(0)
            registry_state["detail"] = f"reloaded from {sites.path}"
            log.info("site registry reloaded from %s", sites.path)
            if gateways:
                gateways[0].options.known_devices = registered()

    loop.add_signal_handler(signal.SIGHUP, reload_sites)

    http_host, http_port = parse_host_port(settings.http.listen)
    health = HealthServer(http_host, http_port)
    # registered before the server answers, so /readyz says "not ready" while we start
    up = _Readiness()
    health.add_check("nats", up.nats)
    # never failing: a registry that did not reload leaves the previous one working; shown here
    # (and in firegate_site_registry_stale) so that the failed edit is seen
    health.add_check("site_registry", lambda: (True, registry_state["detail"]))
    if "gateway" in roles:
        health.add_check("gb26875_listener", up.listener)
        health.add_check("spool", up.spool)
        health.add_check("store", up.store)
    # the other roles' services exist only once NATS is up; their checks answer "starting" till then
    late = _LateChecks()
    if "gateway" in roles and settings.sensors.sources:
        health.add_check("sensor_brokers", late.check("sensor_brokers"))
    for role, names in (("lifecycle", ("alarm_lifecycle", "fault_tracker")), ("forwarders", ("forwarders",))):
        if role in roles:
            for name in names:
                health.add_check(name, late.check(name))
    try:
        await health.start()
    except OSError as e:
        raise StartupError("http.listen", settings.http.listen, f"cannot listen: {e.strerror or e}") from e
    log.info("roles: %s", ", ".join(r for r in ROLES if r in roles))
    stopping: float | None = None
    try:
        async with nats_connection(settings) as nc, contextlib.AsyncExitStack() as stack:
            up.attach_nats(nc)
            js = nc.jetstream()
            replicas = settings.effective_replicas
            bus = settings.bus
            layout = StreamLayout.build(  # records and telemetry apart (migrates a single stream)
                records=bus.stream,
                telemetry=bus.telemetry_stream,
                duplicate_window=bus.duplicate_window,
                max_age=bus.max_age_days * 86400,
                max_bytes=bus.max_bytes,
                telemetry_max_age=bus.telemetry_max_age_days * 86400,
                telemetry_max_bytes=bus.telemetry_bytes,
                num_replicas=replicas,
            )
            try:
                await _setup(ensure_streams(js, layout))
            except StreamConfigError as e:
                raise _stream_refused(e, layout) from e
            async with asyncio.TaskGroup() as tg:
                # each stream's use and oldest record, for the alert before a record would be evicted
                watch = StreamWatch(nc, [s.name for s in layout.streams])
                watching = tg.create_task(watch.run(), name="stream usage")
                precedence = Precedence()  # this process's fire work goes before its fault work
                consumers: list[asyncio.Task[object]] = []
                gateway: Gateway | None = None
                serving: asyncio.Task[None] | None = None
                gateway_tasks: list[asyncio.Task[object]] = []
                commands: asyncio.Task[None] | None = None
                if "gateway" in roles:
                    kv = await _setup(ensure_kv(js, BUCKET, replicas=replicas, allow_atomic=True))
                    spool = await Spool.open(data_dir / "spool", max_bytes=settings.bus.spool_max_bytes)
                    stack.push_async_callback(spool.close)
                    pub = await stack.enter_async_context(
                        Publisher(
                            nc,
                            spool,
                            PublisherSettings(
                                retry_for=settings.bus.publish_retry,
                                dedupe_window=settings.bus.duplicate_window,
                            ),
                        )
                    )
                    memory = KvStatusMemory(kv, lambda: nc.is_connected)
                    normalizer = Normalizer(memory, site_of=site_of, location_of=location_of)
                    ingest = Ingest(JetStreamSink(pub), normalizer)
                    ingesting = tg.create_task(ingest.run(), name="ingest")
                    options = gateway_options(settings)
                    options.known_devices = registered()
                    gateway = Gateway(options, ingest, site_of=site_of)
                    gateways.append(gateway)
                    up.attach_gateway(gateway, spool, settings.bus.spool_max_bytes, pub)
                    serving = tg.create_task(_serve(gateway, settings))
                    await _listening(gateway, serving)
                    commands = tg.create_task(CommandServer(nc, gateway).run())
                    gateway_tasks.append(tg.create_task(pub.run_replayer(), name="spool replayer"))
                    gateway_tasks.append(tg.create_task(memory.run_flusher(), name="status flusher"))
                    mirror = restarting("status memory mirror", memory.run_mirror)
                    gateway_tasks.append(tg.create_task(mirror, name="status mirror"))
                    lines = serial_lines(settings.panels, gateway)  # StartupError names panels.N.dialect
                    gateway_tasks.append(tg.create_task(run_lines(lines), name="serial lines"))
                    if settings.sensors.sources:
                        seen_kv = await _setup(ensure_kv(js, SENSORS_BUCKET, replicas=replicas))
                        sensing = run_sources(
                            settings.sensors.sources,
                            ingest,
                            thresholds=dict(settings.sensors.thresholds),
                            sites=sensor_sites,
                            tls_context=tls_context,
                            ready=lambda s: late.bind("sensor_brokers", lambda: sensor_readiness(s)),
                            seen=KvSeen(seen_kv),
                        )
                        gateway_tasks.append(tg.create_task(sensing, name="sensor sources"))
                    gateway_tasks.append(ingesting)
                if "lifecycle" in roles:
                    alarms_kv = await _setup(ensure_kv(js, ALARMS_BUCKET, replicas=replicas))
                    lifecycle = Lifecycle(
                        nc,
                        AlarmStore(alarms_kv),
                        site_info_lookup(lambda site_id: sites.registry.sites.get(site_id)),
                        _policy(settings),
                        stream=settings.bus.stream,
                        retention=settings.alarms.retention,
                        catch_up=settings.alarms.catch_up,
                        precedence=precedence,
                        center=center_info(settings.center),
                        attest=not settings.nats.embedded,  # any local client may forge it there
                    )
                    ready = lifecycle.readiness
                    late.bind("alarm_lifecycle", ready)
                    consumers.append(tg.create_task(lifecycle.run(), name="alarm lifecycle"))
                    tracker = FaultTracker(
                        nc,
                        await _setup(ensure_kv(js, FAULTS_BUCKET, replicas=replicas)),
                        stream=settings.bus.stream,
                        catch_up=settings.alarms.catch_up,
                        precedence=precedence,
                    )
                    late.bind("fault_tracker", _event_check(tracker.ready, "consuming", "starting"))
                    consumers.append(tg.create_task(tracker.run(), name="fault tracker"))
                if "forwarders" in roles:
                    await _setup(ensure_dead_letter_stream(js, replicas))
                    couriers = dispatch_couriers(js, settings, precedence) + fault_couriers(
                        js, settings, precedence
                    )
                    late.bind("forwarders", _couriers_check(couriers))
                    if not settings.dispatch119.urls:
                        log.warning("dispatch119.url is not set: confirmed fires go to no 119 endpoint")
                    consumers += [tg.create_task(c.run(), name=f"forwarder {c.label}") for c in couriers]
                calm_garbage_collector()  # everything started: what exists now lives on
                await stop.wait()
                stopping = loop.time()
                if gateway is not None and settings.gb26875.drain_grace:
                    # not ready while still serving: the load balancer's next check sees it
                    up.draining = True
                    log.info("stopping: draining in %g s", settings.gb26875.drain_grace)
                    await asyncio.sleep(settings.gb26875.drain_grace)
                log.info("stopping: draining")
                if commands is not None:
                    commands.cancel()  # no new device commands while draining
                if gateway is not None and serving is not None:
                    gateway.stop()
                    await serving
                    log.info("gateway drained in %.1f s", loop.time() - stopping)
                # consumers hold nothing unacked that would be lost: the stream redelivers it
                await cancel_and_wait([*gateway_tasks, *consumers, watching], log)
            log.info("tasks stopped after %.1f s", loop.time() - stopping)
    finally:
        await health.stop()
        if stopping is not None:
            log.info("stopped in %.1f s", loop.time() - stopping)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
