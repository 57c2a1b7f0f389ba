"""The gateway: TCP and UDP listeners, the session registry, liveness and duty checks."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any, Literal, TypeVar, cast

from firegate.bus.events import DeviceOffline, DutyCheckResult
from firegate.codecs.gb26875 import (
    ClockSync,
    Command,
    DutyCheck,
    Frame,
    InfoObject,
    Reserved,
    TimeTag,
    UitdOperation,
)
from firegate.devicetime import device_now
from firegate.gateway import metrics
from firegate.gateway.addressing import DEVICE_ID, AddressMode
from firegate.gateway.liveness import DeviceTracker
from firegate.gateway.session import CommandFailed, Session
from firegate.gateway.udp import Addr, DatagramPeer
from firegate.ingest import Ingest, Lane, Report, carries_fire
from firegate.ops.logging import Throttle

log = logging.getLogger("firegate.gateway")
_T = TypeVar("_T")
REFUSALS_KEPT_FOR = 600.0  # seconds between two stored refusals of one device (fires: every one)


@dataclass(slots=True)
class GatewayOptions:
    host: str = "0.0.0.0"
    port: int = 9001
    udp_host: str | None = None
    udp_port: int | None = None
    center_address: int = 0  # 0: answer from the address the device sent to
    address_mode: AddressMode = "le_int"
    max_connections: int = 20000
    first_frame_timeout: float = 30.0
    idle_timeout: float = 100.0
    confirm_timeout: float = 10.0
    retries: int = 3
    patrol_interval: float = 0.0
    clock_sync_on_connect: bool = True
    clock_sync_daily_at: dt_time | None = None  # device-zone time of a daily clock sync of every device
    rate_limit: float = 20.0
    rate_burst: int = 40
    write_buffer_limit: int = 64 * 1024
    queue_limit: int = 64
    registry_policy: str = "accept"  # accept | flag | reject (unknown devices)
    known_devices: dict[str, list[str]] | None = None  # device -> allowed source networks ([] = any)
    sweep_interval: float = 1.0
    drain_timeout: float = 5.0
    greetings: int = 64  # clock syncs after connecting in flight at once: a reconnect storm waits


class DutyChecks:
    """Devices asked to answer a duty check (查岗), until their type-24 bit-5 upload arrives."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[float]] = {}

    def expect(self, device: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[device] = future
        return future

    def observe(self, device: str, objects: Iterable[InfoObject]) -> None:
        future = self.waiting.get(device)
        if future is None or future.done():
            return
        if any(isinstance(o, UitdOperation) and o.duty_check_answered for o in objects):
            future.set_result(time.monotonic())


@dataclass(slots=True)
class _Runtime:
    sessions: set[Session] = field(default_factory=set)
    by_device: dict[str, Session] = field(default_factory=dict)
    udp_peers: dict[Addr, Session] = field(default_factory=dict)


class Gateway:
    def __init__(
        self,
        options: GatewayOptions,
        ingest: Ingest,
        *,
        site_of: Callable[[str], str] | None = None,
    ) -> None:
        """``ingest`` stores what devices report; its owner runs it (it outlives the drain)."""
        self.options = options
        self.ingest = ingest
        self.site_of: Callable[[str], str] = site_of or ingest.normalizer.site_of
        self._greeting = asyncio.Semaphore(options.greetings)
        self.throttle = Throttle(log)  # lines every device of a storm would print at once
        self._refusals: dict[tuple[str, str], float] = {}  # (device, reason) -> last stored
        self.tracker = DeviceTracker(options.idle_timeout)
        self.duty = DutyChecks()
        self.device_id = DEVICE_ID[options.address_mode]
        self._rt = _Runtime()
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()
        self.port: int | None = None
        self.udp_port: int | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self.device_events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()  # ("up"|"down", device)
        # scale-out: which of these silent devices does another gateway serve now? (remote.py)
        self.served_elsewhere: Callable[[list[str]], Awaitable[set[str]]] | None = None
        self._background: set[asyncio.Task[Any]] = set()  # command work; cancelled at stop

    # ---- clocks (a seam for tests) --------------------------------------------------------------

    @staticmethod
    def now_local() -> datetime:
        """Now in the device time zone (aware), not the host's: what device clocks are compared
        with and set to (GB/T 26875.3 time tags carry no zone)."""
        return device_now()

    @staticmethod
    def now_utc() -> datetime:
        return datetime.now(UTC)

    # ---- lifecycle ------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Listen until stop(), then drain: stop accepting, finish queued frames, close."""
        loop = asyncio.get_running_loop()
        opts = self.options
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            server = await loop.create_server(
                lambda: Session(self), opts.host, opts.port, reuse_address=True, backlog=4096
            )
            self.port = server.sockets[0].getsockname()[1]
            if opts.udp_port is not None:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _UdpEndpoint(self), local_addr=(opts.udp_host or opts.host, opts.udp_port)
                )
                self.udp_port = self._udp.get_extra_info("sockname")[1]
            tg.create_task(self._sweeper())
            if opts.patrol_interval > 0:
                tg.create_task(self._patrol())
            if opts.clock_sync_daily_at is not None:
                tg.create_task(self._daily_clock_sync(opts.clock_sync_daily_at))
            log.info("gateway listening on %s:%s (tcp)", opts.host, self.port)
            self.ready.set()
            try:
                await self._stopping.wait()
            finally:
                server.close()
                await self._drain()
                for task in self._background:
                    task.cancel()  # pending duty-check windows, clock syncs: nothing to drain
                if self._udp is not None:
                    self._udp.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), 2)

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def _drain(self) -> None:
        sessions = list(self._rt.sessions)
        for s in sessions:
            if s.transport is not None:
                with contextlib.suppress(Exception):
                    s.transport.pause_reading()
        waits = [asyncio.ensure_future(s.idle.wait()) for s in sessions if not s.idle.is_set()]
        late: set[asyncio.Future[Any]] = set()
        if waits:
            _, late = await asyncio.wait(waits, timeout=self.options.drain_timeout)
            for w in late:
                w.cancel()
        peers = [*sessions, *self._rt.udp_peers.values()]
        for s in peers:
            s.close("shutdown")
            s.connection_lost(None)
        if peers:
            unfinished = f", {len(late)} with frames still unconfirmed" if late else ""
            log.info("closed %d device connections%s", len(peers), unfinished)

    # ---- sessions (called by Session) -----------------------------------------------------------

    def admit(self, session: Session) -> bool:
        if len(self._rt.sessions) >= self.options.max_connections:
            metrics.closed["max_connections"].inc()
            assert session.transport is not None
            session.transport.abort()
            return False
        return True

    def start_session(self, session: Session) -> None:
        self._rt.sessions.add(session)
        if self._tg is None or self.stopping:
            session.close("not_serving")

    def end_session(self, session: Session) -> None:
        self._rt.sessions.discard(session)
        if session.device is not None and self._rt.by_device.get(session.device) is session:
            del self._rt.by_device[session.device]
            self.device_events.put_nowait(("down", session.device))

    def claim(self, session: Session) -> None:
        """The newest session of a device wins; the old socket is closed (a reconnect)."""
        assert session.device is not None
        old = self._rt.by_device.get(session.device)
        self._rt.by_device[session.device] = session
        if old is not None and old is not session:
            old.close("replaced")
        else:
            self.device_events.put_nowait(("up", session.device))

    def greet(self, session: Session) -> None:
        """After a new session's first confirm: sync the device's clock (spec §8)."""
        if self.options.clock_sync_on_connect and self._tg is not None and session.device is not None:
            self._spawn(self._quietly(self._greet(session.device), "clock_sync"))

    async def _greet(self, device: str) -> None:
        async with self._greeting:  # 10,000 devices reconnecting must not sync 10,000 clocks at once
            await self.clock_sync(device)

    def registry_refusal(self, device: str, peer: str) -> Literal["unknown_device", "wrong_network"] | None:
        """Why the site registry does not admit this device from this peer; None: admitted."""
        known = self.options.known_devices
        if known is None:
            return None
        nets = known.get(device)
        if nets is None:
            if self.options.registry_policy == "reject":
                return "unknown_device"
            if self.options.registry_policy == "flag":
                fields = {"device": device, "peer": peer}
                log.warning("unregistered device %s from %s", device, peer, extra=fields)
            return None
        if not nets:
            return None
        host = peer.rsplit(":", 1)[0].strip("[]")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return "wrong_network"
        if any(address in ipaddress.ip_network(n, strict=False) for n in nets):
            return None
        return "wrong_network"

    def refused(self, device: str, reason: str, *, fire: bool) -> bool:
        """Should this refusal be stored? Always for a fire; otherwise once per device in
        ``REFUSALS_KEPT_FOR`` (a refused device resends every 10 s)."""
        now = time.monotonic()
        if not fire and now - self._refusals.get((device, reason), -REFUSALS_KEPT_FOR) < REFUSALS_KEPT_FOR:
            return False
        self._refusals[(device, reason)] = now
        if len(self._refusals) > 10_000:  # addresses that come once: forget the oldest
            del self._refusals[next(iter(self._refusals))]
        return True

    def session_of(self, device: str) -> Session | None:
        return self._rt.by_device.get(device)

    def holds(self, device: str) -> bool:
        """Is the device's connection here and open (not being closed)?"""
        session = self._rt.by_device.get(device)
        return session is not None and session.transport is not None and not session.transport.is_closing()

    def serves(self, device: str) -> bool:
        """Held here and known online: this gateway reports the device's link state. (A held
        device whose online event could not be stored yet is not: its store is failing.)"""
        return self.holds(device) and self.tracker.is_online(device)

    @property
    def connections(self) -> int:
        return len(self._rt.sessions)

    # ---- commands down ---------------------------------------------------------------------------

    async def command(
        self, device: str, command: int, type_flag: int, objects: Sequence[InfoObject], action: str
    ) -> Frame:
        session = self.session_of(device)
        if session is None:
            metrics.command_result(action, "not_connected").inc()
            raise CommandFailed("not_connected", device)
        return await session.command(command, type_flag, objects, action=action)

    async def clock_sync(self, device: str) -> Frame:
        return await self.command(
            device,
            Command.CONTROL,
            90,
            [ClockSync(TimeTag.from_datetime(self.now_local().replace(microsecond=0)))],
            "clock_sync",
        )

    async def init_device(self, device: str) -> Frame:
        return await self.command(device, Command.CONTROL, 89, [Reserved(0)], "init")

    async def read(self, device: str, type_flag: int, objects: Sequence[InfoObject]) -> Frame:
        return await self.command(device, Command.REQUEST, type_flag, objects, f"read_{type_flag}")

    async def duty_check(self, device: str, timeout_minutes: int) -> DutyCheckResult:
        """Send 查岗 (91), then wait up to the window for the operator's answer (type 24, bit 5).
        The result is published and returned."""
        return await (await self.start_duty_check(device, timeout_minutes))

    async def start_duty_check(self, device: str, timeout_minutes: int) -> asyncio.Task[DutyCheckResult]:
        """Send 查岗 and return once the UITD confirmed it; the returned task (owned by the
        gateway's TaskGroup) waits for the answer and publishes the result."""
        if self._tg is None:
            raise CommandFailed("not_serving", device)
        answered = self.duty.expect(device)
        sent = time.monotonic()
        try:
            await self.command(device, Command.CONTROL, 91, [DutyCheck(timeout_minutes)], "duty_check")
        except BaseException:
            if self.duty.waiting.get(device) is answered:
                del self.duty.waiting[device]
            raise
        return self._spawn(self._await_duty_answer(device, timeout_minutes, answered, sent))

    async def _await_duty_answer(
        self, device: str, timeout_minutes: int, answered: asyncio.Future[float], sent: float
    ) -> DutyCheckResult:
        result = await self._duty_result(device, timeout_minutes, answered, sent)
        try:
            await self.ingest.store([result])
        except Exception as e:  # the check is over either way; its record is what failed
            log.error("duty check result for %s not stored: %s", device, e, extra={"device": device})
        return result

    async def _duty_result(
        self, device: str, timeout_minutes: int, answered: asyncio.Future[float], sent: float
    ) -> DutyCheckResult:
        try:
            try:
                at = await asyncio.wait_for(asyncio.shield(answered), timeout_minutes * 60.0)
                after: float | None = round(at - sent, 3)
            except TimeoutError:
                after = None
        finally:
            if self.duty.waiting.get(device) is answered:  # a newer check may have replaced it
                del self.duty.waiting[device]
        now = self.now_utc()
        result = DutyCheckResult(
            id=f"{device}.duty.{int(now.timestamp() * 1000)}",
            device=device,
            site=self.site_of(device),
            occurred_at=None,
            received_at=now,
            answered=after is not None,
            after_s=after,
            window_s=timeout_minutes * 60.0,
        )
        return result

    def _spawn(self, work: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        assert self._tg is not None
        task = self._tg.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _quietly(self, work: Awaitable[object], action: str) -> None:
        """Background work must never take the gateway's TaskGroup (and every session) down."""
        try:
            await work
        except CommandFailed as e:
            log.info("%s: %s", action, e)
        except Exception:
            log.exception("%s failed", action)

    # ---- background work -----------------------------------------------------------------------

    async def _sleep_or_stop(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _sweeper(self) -> None:
        opts = self.options
        while not await self._sleep_or_stop(opts.sweep_interval):
            now = time.monotonic()
            for s in list(self._rt.sessions):
                limit = opts.first_frame_timeout if s.valid_frames == 0 else opts.idle_timeout
                if now - s.last_rx > limit:
                    s.close("no_valid_frame" if s.valid_frames == 0 else "idle")
            offline = await self._not_moved(self.tracker.sweep(self.site_of))
            metrics.DEVICES_ONLINE.set(self.tracker.online)
            if offline:
                try:
                    await self.ingest.store(offline)
                except Exception as e:
                    log.error("could not publish %d offline events, retrying next sweep: %s", len(offline), e)
                    self.tracker.unsweep(offline)

    async def _not_moved(self, offline: list[DeviceOffline]) -> list[DeviceOffline]:
        """Behind a load balancer a device that reconnected went to another gateway: silent here
        is not offline. Forget it (its gateway now owns its link state) instead of raising a false
        link fault. When the question cannot be answered, the offline event stands."""
        if not offline or self.served_elsewhere is None:
            return offline
        try:
            moved = await self.served_elsewhere([e.device for e in offline])
        except Exception as e:  # TimeoutError included
            log.warning("could not ask other gateways about %d silent devices: %r", len(offline), e)
            moved = set()
        # the answer took a moment: a device that came back here meanwhile is neither
        # offline nor moved
        back = {e.device for e in offline if self.holds(e.device) or self.tracker.is_online(e.device)}
        for device in moved - back:
            self.tracker.forget(device)
            log.info("device %s moved to another gateway", device, extra={"device": device})
        return [e for e in offline if e.device not in moved and e.device not in back]

    async def _daily_clock_sync(self, at: dt_time) -> None:
        """Sync every connected device's clock once a day (GB 50440 keeps clocks within 5 s)."""
        while True:
            now = self.now_local()
            due = datetime.combine(now.date(), at, tzinfo=now.tzinfo)
            if due <= now:
                due += timedelta(days=1)
            if await self._sleep_or_stop((due - now).total_seconds()):
                return
            for device in list(self._rt.by_device):
                self._spawn(self._quietly(self.clock_sync(device), "clock_sync"))

    async def _patrol(self) -> None:
        """巡检: read every connected device's status (type 81) each patrol interval (GB 50440: <= 2 h)."""
        while not await self._sleep_or_stop(self.options.patrol_interval):
            for device in list(self._rt.by_device):
                await self._quietly(self._patrol_one(device), f"patrol of {device}")

    async def _patrol_one(self, device: str) -> None:
        reply = await self.read(device, 81, [Reserved(0)])
        unit = reply.data_unit
        if unit is not None and unit.known:
            lane = Lane.FIRE if carries_fire(unit.objects) else Lane.NORMAL
            report = Report(device, lane, unit, frame_time=reply.time.value, raw=reply.raw)
            if not await self.ingest.put(report):  # an Outcome: false when not stored
                log.warning("patrol of %s: its status was not stored", device, extra={"device": device})


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport on 3.11
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if self.gw.stopping:
            return  # draining: the device retransmits to whoever serves it next
        peers = self.gw._rt.udp_peers
        session = peers.get(addr)
        if session is None:
            assert self.transport is not None
            session = Session(self.gw)
            session.connection_made(DatagramPeer(self.transport, addr, self._closed))
            if session.transport is None or session.transport.is_closing():
                return  # refused (max_connections)
            peers[addr] = session
        session.feed(data)

    def _closed(self, addr: Addr) -> None:
        """The one place a UDP peer ends: DatagramPeer.close() calls it, as a TCP close would."""
        session = self.gw._rt.udp_peers.pop(addr, None)
        if session is not None:
            session.connection_lost(None)
