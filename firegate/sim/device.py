"""A simulated UITD (用户信息传输装置): one TCP connection (or UDP socket) to a monitoring center.

Upstream it runs the send/confirm flow of spec §6: every send-data frame (cmd 2) waits for a
confirm with the same serial and is retransmitted byte for byte after `confirm_timeout` or on a
deny, up to `retries` times. The serial restarts at `serial_start` on every connection (§7).
Downstream it confirms control commands (89 init, 90 clock sync, 91 duty check), replies to reads
(cmd 4 → cmd 5) and denies what it cannot serve or what fails the checks of §6.5.3.

State per device is kept small (shared settings and counters, slotted fields, one task): a load
run holds 10,000 of them in one process.
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import random
from collections import deque
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from time import perf_counter, time
from types import TracebackType
from typing import Any, Self, cast

from firegate.codecs.gb26875 import (
    MAX_DATA,
    ClockSync,
    Command,
    DataUnitError,
    Frame,
    Framer,
    HeaderInfo,
    TimeTag,
    UitdOperation,
    address_bytes,
    answer,
    build_frame,
)
from firegate.codecs.gb26875.tables import FIRE_BIT, NORMAL_BIT
from firegate.devicetime import device_now
from firegate.sim import payloads
from firegate.sim.payloads import URGENT_KINDS, Kind
from firegate.sim.report import SimStats

_CONTROL_TYPES = frozenset({89, 90, 91})  # sent as cmd 1 (§6.2); some centers send cmd 4, accepted too
_MAX_OPS = 16  # UITD operation records kept for reads of type 84


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """Behaviour of a simulated UITD. One instance is shared by every device of a load run."""

    heartbeat_interval: float | None = 30.0  # None or 0: no periodic heartbeat
    heartbeat_on_connect: bool = True  # announce the device (its address) as soon as it connects
    random_phase: bool = False  # first periodic heartbeat after a random part of the interval,
    # so that a fleet connected in a burst does not heartbeat in bursts
    confirm_timeout: float = 10.0  # STD §6.5.4: should not exceed 10 s
    retries: int = 3  # STD §6.5.5
    window: int = 1  # outstanding exchanges; real UITDs keep one
    serial_start: int = 0  # 0 (STD) or 1 (some servers skip 0); also where the counter wraps to
    connect_timeout: float = 5.0
    reconnect_min: float = 0.5  # backoff after a drop or a failed connect, doubled up to the max
    reconnect_max: float = 30.0
    duty_answer_delay: float | None = 5.0  # seconds until the duty operator answers; None: never
    latch_fire: bool = False  # keep the fire bit in later status uploads and reads (until init)
    queue_limit: int = 1000  # non-fire items waiting locally; beyond it they are shed
    center_address: int = 0
    version: tuple[int, int] = (1, 1)
    software_version: tuple[int, int] = (1, 0)
    operator_id: int = 1
    clock_skew: float = 0.0  # initial clock error in seconds, until the center syncs the clock
    test_mode: bool = False  # status objects with bit 0 clear: the standard's test mode (§4)

    def __post_init__(self) -> None:
        if self.serial_start not in (0, 1):
            raise ValueError(f"serial_start must be 0 or 1, got {self.serial_start}")
        if self.retries < 0 or self.window < 1 or self.queue_limit < 1:
            raise ValueError("retries must be >= 0, window and queue_limit >= 1")
        if self.confirm_timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("confirm_timeout and connect_timeout must be > 0")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")


@dataclass(slots=True)
class Faults:
    """Fault injection, mutable while the device runs."""

    drop_confirms: int = 0  # ignore the next N matching confirms: forces retransmissions
    chunk_writes: bool = False  # TCP: write every frame in random small pieces
    garbage_rate: float = 0.0  # probability of writing junk bytes before a frame


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    FAILED = "failed"  # retries exhausted (timeouts or denies)
    ABANDONED = "abandoned"  # the device stopped before the exchange ended


@dataclass(frozen=True, slots=True)
class ExchangeResult:
    outcome: Outcome
    kind: str
    serial: int | None
    attempts: int  # transmissions, the first one included
    latency: float | None  # seconds from the first transmission (on any connection) to the confirm
    frame: bytes  # the bytes sent (every retransmission repeats them); b"" if never sent
    sent_at: float | None = None  # wall clock (time.time()) of the first transmission; None: never sent

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.CONFIRMED


_Answer = tuple[int, float]  # (command 3 or 6, perf_counter() at arrival)


class _Item:
    __slots__ = ("data", "first", "first_wall", "kind", "result", "urgent")

    def __init__(
        self,
        kind: str,
        data: bytes,
        result: asyncio.Future[ExchangeResult] | None = None,
        urgent: bool | None = None,
    ) -> None:
        self.kind = kind
        self.data = data
        self.result = result
        self.urgent = kind in URGENT_KINDS if urgent is None else urgent
        # first transmission (perf_counter, time.time()): kept when a drop sends the item again
        self.first: float | None = None
        self.first_wall: float | None = None


class _Link(abc.ABC):
    """One connection's transport and framer; the device sees only this."""

    __slots__ = ()
    stream: bool
    closed: bool
    framer: Framer

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class _TcpLink(_Link, asyncio.Protocol):
    __slots__ = ("closed", "device", "framer", "transport")
    stream = True

    def __init__(self, device: SimulatedUitd) -> None:
        self.device = device
        self.framer = Framer()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.device._attach(self)

    def data_received(self, data: bytes) -> None:
        self.device._on_data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.device._detach(self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _UdpLink(_Link, asyncio.DatagramProtocol):
    __slots__ = ("closed", "device", "framer", "transport")
    stream = False

    def __init__(self, device: SimulatedUitd) -> None:
        self.device = device
        self.framer = Framer()
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.device._attach(self)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.device._on_data(self, data)

    def error_received(self, exc: Exception) -> None:
        """ICMP unreachable and the like: that datagram is lost; its exchange times out and retries."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.device._detach(self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.sendto(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SimulatedUitd:
    """A UITD with address `address` (6 bytes LE on the wire) that talks to host:port.

    Run it with `await device.run()` inside your own TaskGroup (stop with `stop()` or `close()`),
    or as `async with SimulatedUitd(...) as device:`, which runs it until the block ends.
    """

    __slots__ = (
        "_center_raw",
        "_clock_offset",
        "_delayed",
        "_ever_connected",
        "_fault",
        "_fire",
        "_inflight",
        "_link",
        "_normal",
        "_ops",
        "_power",
        "_raw",
        "_rng",
        "_seq",
        "_serial",
        "_session_ok",
        "_started",
        "_stopping",
        "_task",
        "_tg",
        "_up",
        "_urgent",
        "_waiting",
        "_wake",
        "address",
        "faults",
        "host",
        "port",
        "settings",
        "stats",
    )

    def __init__(
        self,
        address: int,
        host: str,
        port: int,
        *,
        settings: DeviceSettings | None = None,
        stats: SimStats | None = None,
        faults: Faults | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.address = address
        self.host = host
        self.port = port
        self.settings = settings or DeviceSettings()
        self.stats = stats if stats is not None else SimStats()
        self.faults = faults or Faults()
        self._raw = address_bytes(address)
        self._center_raw = address_bytes(self.settings.center_address)
        self._rng = rng or random.Random()
        self._urgent: deque[_Item] = deque()
        self._normal: deque[_Item] = deque()
        self._delayed: list[tuple[float, int, Kind]] = []  # heap of (due, seq, kind)
        self._seq = 0
        self._waiting: dict[int, asyncio.Future[_Answer]] = {}
        self._inflight = 0
        self._serial = self.settings.serial_start
        self._link: _Link | None = None
        self._ever_connected = False
        self._session_ok = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._clock_offset = self.settings.clock_skew
        self._fire = -1
        self._fault = -1
        self._power = 0  # UITD power fault bits (type 21), latched until an init (89)
        self._ops: list[UitdOperation] | None = None
        self._started = TimeTag.now()
        self._tg: asyncio.TaskGroup | None = None
        self._task: asyncio.Task[None] | None = None

    # ---- public state ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.closed

    @property
    def connected_once(self) -> bool:
        return self._ever_connected

    @property
    def clock_offset(self) -> float:
        """Seconds added to the host clock for this device's time tags (set by a clock sync)."""
        return self._clock_offset

    @property
    def next_serial(self) -> int:
        return self._serial

    @property
    def uitd_status(self) -> int:
        """Type 21 status byte: normal monitoring (bit 0 clear in test mode), plus the fire bit while
        a latched fire lasts and the power faults reported so far."""
        return self._st(NORMAL_BIT | (FIRE_BIT if self._fire >= 0 else 0) | self._power)

    async def wait_connected(self) -> None:
        """Until the device is connected; bound it with `asyncio.timeout`."""
        await self._up.wait()

    # ---- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        self._task = tg.create_task(self.run(), name=f"uitd-{self.address}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, task = self._tg, self._task
        self._tg = self._task = None
        self.close()
        if task is not None:
            task.cancel()
        if tg is not None:
            # pass only a cancellation on: any other error of the block propagates as itself
            cancelled = et is not None and issubclass(et, asyncio.CancelledError)
            await tg.__aexit__(et, exc, tb) if cancelled else await tg.__aexit__(None, None, None)

    def stop(self) -> None:
        """Stop gracefully: start no new exchange, let the current one finish, then disconnect."""
        self._stopping = True
        self._wake.set()

    def close(self) -> None:
        """Stop now: drop the connection; exchanges in flight end as abandoned."""
        self.stop()
        if self._link is not None:
            self._link.close()

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff after a drop, until `stop()` or `close()`."""
        s = self.settings
        backoff = s.reconnect_min
        try:
            while not self._stopping:
                try:
                    async with asyncio.timeout(s.connect_timeout):
                        link = await self._open()
                except (OSError, TimeoutError):
                    self.stats.connect_failures += 1
                    await self._pause(backoff * (0.5 + 0.5 * self._rng.random()))
                    backoff = min(backoff * 2, s.reconnect_max)
                    continue
                self._session_ok = False
                await self._session(link)
                if not link.closed:
                    link.close()
                if self._session_ok:
                    backoff = s.reconnect_min
                if not self._stopping:
                    # jittered, so that a center restart is not met by all devices at once; a
                    # center that drops every connection unanswered is retried ever more slowly
                    await self._pause(backoff * (0.5 + 0.5 * self._rng.random()))
                    if not self._session_ok:
                        backoff = min(backoff * 2, s.reconnect_max)
        finally:
            self._shutdown()

    async def _open(self) -> _Link:
        loop = asyncio.get_running_loop()
        _, link = await loop.create_connection(lambda: _TcpLink(self), self.host, self.port)
        return link

    def _shutdown(self) -> None:
        if self._link is not None:
            self._link.close()
        for queue in (self._urgent, self._normal):
            while queue:
                item = queue.popleft()
                self.stats.abandoned += 1
                gone = ExchangeResult(Outcome.ABANDONED, item.kind, None, 0, None, b"", item.first_wall)
                self._resolve(item, gone)
        self._delayed.clear()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up for stop()."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._stopping:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(left):
                    await self._wake.wait()
            except TimeoutError:
                return

    # ---- connection callbacks (from the protocol) ------------------------------------------

    def _attach(self, link: _Link) -> None:
        self._link = link
        self.stats.connected(first=not self._ever_connected)
        self._ever_connected = True
        self._up.set()

    def _detach(self, link: _Link) -> None:
        if link is not self._link:
            return
        self._link = None
        self.stats.disconnected()
        self._up.clear()
        lost = ConnectionError("connection to the center lost")
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(lost)
        self._waiting.clear()
        self._wake.set()

    # ---- sending ----------------------------------------------------------------------------

    async def _session(self, link: _Link) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        self._serial = s.serial_start  # STD §7: serials start afresh on every connection
        interval = s.heartbeat_interval or 0.0
        inf = float("inf")
        now = loop.time()
        phase = interval * self._rng.random() if s.random_phase else interval
        next_hb = now if s.heartbeat_on_connect else (now + phase if interval else inf)
        announced = not s.heartbeat_on_connect
        async with asyncio.TaskGroup() as tg:  # holds exchanges only when window > 1
            while not self._stopping and not link.closed:
                now = loop.time()
                item: _Item | None = None
                if self._inflight < s.window:
                    if self._urgent:
                        item = self._urgent.popleft()
                    elif now >= next_hb:
                        item = _Item(Kind.HEARTBEAT, b"")
                        if not interval:
                            next_hb = inf
                        elif not announced:
                            next_hb, announced = now + phase, True
                        else:
                            next_hb = max(next_hb + interval, now + interval / 2)  # late: no burst
                    elif self._delayed and self._delayed[0][0] <= now:
                        kind = heapq.heappop(self._delayed)[2]
                        real, data = self._build(kind)
                        item = _Item(real, data)
                    elif self._normal:
                        item = self._normal.popleft()
                if item is None:
                    until = next_hb
                    if self._delayed:
                        until = min(until, self._delayed[0][0])
                    if self._inflight >= s.window:
                        until = inf  # an exchange ending sets _wake
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(None if until == inf else max(0.0, until - now)):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    continue
                if s.window == 1:
                    await self._exchange(link, item)
                else:
                    self._inflight += 1  # counted before the task starts, so the window holds
                    tg.create_task(self._exchange(link, item, counted=True))

    def _take_serial(self) -> int:
        while True:
            serial = self._serial
            self._serial = serial + 1 if serial < 0xFFFF else self.settings.serial_start
            if serial not in self._waiting:
                return serial

    async def _exchange(self, link: _Link, item: _Item, counted: bool = False) -> None:
        s, stats = self.settings, self.stats
        if not counted:
            self._inflight += 1
        serial, frame, attempts = None, b"", 0
        outcome, latency = Outcome.FAILED, None
        try:
            serial = self._take_serial()
            frame = build_frame(
                serial=serial,
                command=Command.SEND_DATA,
                source=self._raw,
                destination=self._center_raw,
                data=item.data,
                time=self._tag(),
                version=s.version,
            )
            stats.count_sent(item.kind)
            if item.kind == Kind.HEARTBEAT:
                stats.heartbeats += 1
            if item.first is None:
                item.first, item.first_wall = perf_counter(), time()
            started = item.first
            while True:
                attempts += 1
                command, at = await self._attempt(link, serial, frame)
                if command == Command.CONFIRM:
                    outcome, latency = Outcome.CONFIRMED, at - started
                    self._session_ok = True
                    stats.confirmed += 1
                    stats.latency.add(latency)
                    break
                if command == Command.DENY:
                    stats.denied += 1
                if attempts > s.retries:
                    stats.failed += 1
                    break
                stats.retransmitted += 1
        except ConnectionError:
            if not self._stopping:
                # a real UITD keeps the data and sends it on the next connection (new serial)
                stats.interrupted += 1
                self._requeue(item)
                return
            outcome = Outcome.ABANDONED
        except asyncio.CancelledError:
            self._resolve(
                item,
                ExchangeResult(Outcome.ABANDONED, item.kind, serial, attempts, None, frame, item.first_wall),
            )
            raise
        finally:
            self._inflight -= 1
            self._wake.set()
        result = ExchangeResult(outcome, item.kind, serial, attempts, latency, frame, item.first_wall)
        self._resolve(item, result)

    async def _attempt(self, link: _Link, serial: int, frame: bytes) -> _Answer:
        """One transmission; (3 or 6, arrival time), or (0, 0.0) after confirm_timeout."""
        if link.closed:
            raise ConnectionError("connection to the center lost")
        fut: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._waiting[serial] = fut
        try:
            self._write(link, frame)
            try:
                async with asyncio.timeout(self.settings.confirm_timeout):
                    return await fut
            except TimeoutError:
                return 0, 0.0
        finally:
            if self._waiting.get(serial) is fut:
                del self._waiting[serial]

    def _write(self, link: _Link, data: bytes) -> None:
        f = self.faults
        if f.garbage_rate and self._rng.random() < f.garbage_rate:
            self.send_garbage()
        if f.chunk_writes and link.stream:
            rng, i = self._rng, 0
            while i < len(data):
                n = rng.choice((1, 2, 3, 5, 8, 13, 27, 31))
                link.write(data[i : i + n])
                i += n
        else:
            link.write(data)

    def send_garbage(self, data: bytes | None = None) -> None:
        """Write junk now (default: 1-16 random bytes without '@', so no frame start is faked)."""
        link = self._link
        if link is None or link.closed:
            return
        if data is None:
            rng = self._rng
            data = bytes(rng.choice(_JUNK) for _ in range(rng.randint(1, 16)))
        self.stats.garbage_sent += 1
        link.write(data)

    def _resolve(self, item: _Item, result: ExchangeResult) -> None:
        if item.result is not None and not item.result.done():
            if result.kind != item.kind:
                result = replace(result, kind=item.kind)
            item.result.set_result(result)

    def _requeue(self, item: _Item) -> None:
        if item.kind == Kind.HEARTBEAT and item.result is None:
            return  # the next connection announces itself anyway (unless someone waits for this one)
        (self._urgent if item.urgent else self._normal).appendleft(item)

    # ---- what to send ----------------------------------------------------------------------

    def _tag(self) -> TimeTag:
        """Now on this device's clock: the device time zone (as the center reads it, whatever
        the host's zone), plus the offset a clock sync or ``clock_skew`` set."""
        if not self._clock_offset:
            return TimeTag.now()
        when = device_now() + timedelta(seconds=self._clock_offset)
        return TimeTag.from_datetime(when.replace(microsecond=0))

    def _build(self, kind: Kind) -> tuple[Kind, bytes]:
        """The data unit for a kind, updating the device's state; FAULT turns into CLEAR while a
        fault is active, so faults and their clearings alternate."""
        rng, tag = self._rng, self._tag()
        if kind in (Kind.FIRE, Kind.MANUAL):
            index = rng.choice(payloads.DETECTORS if kind == Kind.FIRE else payloads.CALL_POINTS)
            if self.settings.latch_fire:
                self._fire = index
            status = self._st(payloads.component_status(index, index, self._fault))
            return kind, payloads.component_unit(index, status, tag)
        if kind == Kind.FAULT and self._fault < 0:
            index = rng.randrange(len(payloads.BUILDING))
            self._fault = index
            status = self._st(payloads.component_status(index, -1, index))
            return kind, payloads.component_unit(index, status, tag)
        if kind in (Kind.FAULT, Kind.CLEAR):
            index = self._fault if self._fault >= 0 else rng.randrange(len(payloads.BUILDING))
            self._fault = -1
            status = self._st(payloads.component_status(index, self._fire, -1))
            return Kind.CLEAR, payloads.component_unit(index, status, tag)
        if kind == Kind.STATUS:
            status = self._st(payloads.system_status(self._fire, self._fault))
            return kind, payloads.system_unit(status, tag)
        if kind in payloads.POWER_FAULT_BITS:
            self._power |= payloads.POWER_FAULT_BITS[kind]
            return kind, payloads.uitd_unit(self.uitd_status, tag)
        if kind == Kind.UITD:
            return kind, payloads.uitd_unit(self.uitd_status, tag)
        if kind == Kind.ANALOG:
            return kind, payloads.analog_unit(rng, tag)
        if kind == Kind.DUTY:
            op, data = payloads.duty_answer_unit(self.settings.operator_id, tag)
            self._record(op)
            return kind, data
        if kind == Kind.HEARTBEAT:
            return kind, b""
        raise ValueError(f"cannot build a data unit for kind {kind!r}")

    def _st(self, status: int) -> int:
        """A status word as this device reports it: bit 0 (normal) cleared in test mode."""
        return status & ~NORMAL_BIT if self.settings.test_mode else status

    def _record(self, op: UitdOperation) -> None:
        ops = self._ops if self._ops is not None else []
        ops.append(op)
        del ops[:-_MAX_OPS]
        self._ops = ops

    def _enqueue(self, item: _Item) -> bool:
        if item.urgent:
            self._urgent.append(item)  # fire alarms jump the queue and are never shed
        elif len(self._normal) >= self.settings.queue_limit:
            self.stats.shed += 1
            return False
        else:
            self._normal.append(item)
        self._wake.set()
        return True

    def submit(self, kind: Kind | str) -> bool:
        """Queue one item of `kind` without waiting for it (load generation). False: shed."""
        if self._stopping:
            return False
        real, data = self._build(Kind(kind))
        return self._enqueue(_Item(real, data))

    def post(self, kind: Kind | str) -> asyncio.Future[ExchangeResult]:
        """Queue one item of `kind` now (its data unit is built at once, so items posted one after
        the other keep their order, fires first) and return the future of its exchange: thousands
        of devices can have items in flight without a task each. Abandoned at once when shed."""
        real, data = self._build(Kind(kind))
        return self._post(real, data)

    def _post(self, kind: str, data: bytes, urgent: bool | None = None) -> asyncio.Future[ExchangeResult]:
        fut: asyncio.Future[ExchangeResult] = asyncio.get_running_loop().create_future()
        if self._stopping or not self._enqueue(_Item(kind, data, fut, urgent)):
            fut.set_result(ExchangeResult(Outcome.ABANDONED, kind, None, 0, None, b""))
        return fut

    async def send(self, kind: Kind | str) -> ExchangeResult:
        """Queue one item and wait for its exchange to end. Bound the wait yourself: it lasts
        until the device is connected, plus up to confirm_timeout x (retries + 1)."""
        real, data = self._build(Kind(kind))
        return await self._send_item(real, data)

    async def send_data(self, data: bytes, *, urgent: bool = False) -> ExchangeResult:
        """Send an arbitrary data unit (empty: a heartbeat) as it is, valid or not."""
        if len(data) > MAX_DATA:
            raise ValueError(f"a data unit holds at most {MAX_DATA} bytes, got {len(data)}")
        return await self._send_item(Kind.CUSTOM, data, urgent)

    async def _send_item(self, kind: str, data: bytes, urgent: bool | None = None) -> ExchangeResult:
        return await self._post(kind, data, urgent)

    async def send_fire_alarm(self, *, manual: bool = False) -> ExchangeResult:
        return await self.send(Kind.MANUAL if manual else Kind.FIRE)

    async def send_fault(self) -> ExchangeResult:
        """A component fault, or the clearing of the active one."""
        return await self.send(Kind.FAULT)

    async def clear_fault(self) -> ExchangeResult:
        return await self.send(Kind.CLEAR)

    async def send_system_status(self) -> ExchangeResult:
        return await self.send(Kind.STATUS)

    async def send_uitd_status(self) -> ExchangeResult:
        return await self.send(Kind.UITD)

    async def send_power_fault(self, *, backup: bool = False) -> ExchangeResult:
        """The UITD's own main (or backup) power fault, type 21; latched until an init."""
        return await self.send(Kind.BACKUP_POWER if backup else Kind.MAIN_POWER)

    async def send_analog(self) -> ExchangeResult:
        return await self.send(Kind.ANALOG)

    async def send_heartbeat(self) -> ExchangeResult:
        return await self.send(Kind.HEARTBEAT)

    # ---- receiving --------------------------------------------------------------------------

    def _on_data(self, link: _Link, data: bytes) -> None:
        for item in link.framer.feed(data):
            if isinstance(item, Frame):
                self._on_frame(link, item)
            elif item.header is not None and item.header.command not in (Command.CONFIRM, Command.DENY):
                self._deny(link, item.header)  # a check error of §6.5.3 in a command: deny it
            else:
                # no header, or a damaged answer: denying an answer could ping-pong; the
                # exchange times out and retransmits instead
                self.stats.bad_frames += 1

    def _on_frame(self, link: _Link, frame: Frame) -> None:
        command = frame.command
        if command == Command.CONFIRM or command == Command.DENY:
            fut = self._waiting.get(frame.serial)
            if fut is None or fut.done():
                self.stats.unmatched += 1
            elif command == Command.CONFIRM and self.faults.drop_confirms > 0:
                self.faults.drop_confirms -= 1
                self.stats.confirms_dropped += 1
            else:
                fut.set_result((command, perf_counter()))
        elif command == Command.CONTROL or command == Command.REQUEST:
            self._serve(link, frame)
        else:
            self._deny(link, frame)  # a center sends neither data nor replies to a UITD

    def _serve(self, link: _Link, frame: Frame) -> None:
        try:
            unit = frame.data_unit
        except DataUnitError:
            unit = None
        if unit is None or not unit.objects:
            self._deny(link, frame)
            return
        kind = unit.type
        if kind in _CONTROL_TYPES:
            obj = unit.objects[0]
            if kind == 90:
                if not isinstance(obj, ClockSync) or obj.time.value is None:
                    self._deny(link, frame)
                    return
                # the device's clock runs in the device time zone (as the center's), not the host's
                now = device_now().replace(tzinfo=None)
                self._clock_offset = round((obj.time.value - now).total_seconds())
            elif kind == 89:
                self._fire = self._fault = -1
                self._power = 0
                self._ops = None
            elif kind == 91 and self.settings.duty_answer_delay is not None:
                self._schedule(Kind.DUTY, self.settings.duty_answer_delay)
            self._write(link, answer(frame, Command.CONFIRM, center_address=self._raw, time=self._tag()))
            self.stats.commands_answered += 1
            return
        data = payloads.read_reply(unit, self._snapshot(), self._rng) if frame.command == 4 else None
        if data is None:
            self._deny(link, frame)
            return
        reply = build_frame(
            serial=frame.serial,
            command=Command.REPLY,
            source=self._raw,
            destination=frame.source_raw,
            data=data,
            time=self._tag(),
            version=frame.version,
        )
        self._write(link, reply)
        self.stats.commands_answered += 1

    def _deny(self, link: _Link, to: Frame | HeaderInfo) -> None:
        self._write(link, answer(to, Command.DENY, center_address=self._raw, time=self._tag()))
        self.stats.commands_denied += 1

    def _schedule(self, kind: Kind, delay: float) -> None:
        self._seq += 1
        due = asyncio.get_running_loop().time() + delay
        heapq.heappush(self._delayed, (due, self._seq, kind))
        self._wake.set()

    def _snapshot(self) -> payloads.Snapshot:
        return payloads.Snapshot(
            now=self._tag(),
            started=self._started,
            fire=self._fire,
            fault=self._fault,
            uitd_status=self.uitd_status,
            software_version=self.settings.software_version,
            description=f"firegate simulated UITD {self.address}",
            operations=tuple(self._ops or ()),
        )


class UdpSimulatedUitd(SimulatedUitd):
    """The same device over UDP (STD §5.1): one datagram per frame, no connection to lose, so the
    serial restarts only when the socket is reopened."""

    __slots__ = ()

    async def _open(self) -> _Link:
        loop = asyncio.get_running_loop()
        _, link = await loop.create_datagram_endpoint(
            lambda: _UdpLink(self), remote_addr=(self.host, self.port)
        )
        return link


_JUNK = bytes(b for b in range(256) if b != 0x40)
