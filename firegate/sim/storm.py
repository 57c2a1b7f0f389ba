"""The district-wide storm, a monitoring center's design load: a district loses mains power and
every UITD in it reports within the same second.

`run_storm` starts `devices` simulated UITDs over `connect_over` seconds; each settles: it connects
and sends a heartbeat that the center confirms. Then, within `burst_over` seconds and in random
order, every device reports a fault (default: its own main-power fault, type 21 bit 3) and a
`fire_share` of them a fire alarm (type 2: a detector, or a manual call point) just before it.
The devices are `SimulatedUitd`s as in a load run: one exchange outstanding (fires jump the local
queue), the same bytes resent after `confirm_timeout` up to `retries` times, the center's commands
(clock sync, reads, ...) answered, periodic heartbeats with random phases. The run ends when every
burst frame has been confirmed or has failed, or `burst_timeout` seconds after the burst began.

The devices report real alarms and faults unless `test_mode` (or `settings.test_mode`) puts them
in the standard's test state (status bit 0 clear), which `firegate sim storm` does unless `--real`:
firegate never confirms a test alarm by policy nor sends it to 119 as a real fire.

Latencies run from a frame's first transmission to its confirm; each fire's `sent_at` is the wall
clock (time.time()) of its first transmission, to match against what reached the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, TextIO

from firegate.ops.limits import raise_nofile_limit
from firegate.sim.device import DeviceSettings, ExchangeResult, Outcome, SimulatedUitd
from firegate.sim.load import FIRST_ADDRESS
from firegate.sim.payloads import Kind
from firegate.sim.report import SimStats, percentiles

FIRE_KINDS: dict[str, Kind] = {"detector": Kind.FIRE, "manual": Kind.MANUAL}
# what every device reports in the burst; "none": only the fire share reports (fires alone)
FAULT_KINDS: dict[str, Kind | None] = {
    "main_power": Kind.MAIN_POWER,  # type 21, UITD status bit 3: the blackout itself
    "backup_power": Kind.BACKUP_POWER,  # type 21, UITD status bit 4
    "component": Kind.FAULT,  # type 2, a building component's fault bit
    "none": None,
}
_STOP_WAIT = 10.0  # seconds for devices to close after the run before they are cancelled


def fire_count(devices: int, share: float) -> int:
    """Devices that report a fire: the share rounded, but at least one when the share is > 0."""
    n = round(devices * share)
    return max(1, n) if share > 0 else 0


@dataclass(frozen=True, slots=True)
class FireRecord:
    """One device's fire alarm in the burst."""

    device: int  # the address; its device id on the bus is str(device)
    sent_at: float | None  # time.time() of the first transmission; None: never sent
    outcome: str  # confirmed, failed, abandoned (cut off by the timeout or never sent)
    attempts: int
    latency_ms: float | None


@dataclass(frozen=True, slots=True)
class StormReport:
    """What a storm run achieved. Burst counts are of burst frames only (not the settling heartbeats
    or periodic ones); latencies in ms from a frame's first transmission to its confirm."""

    host: str
    port: int
    devices: int
    first_address: int  # the devices are first_address .. first_address + devices - 1
    fire_kind: str
    fault_kind: str
    fire_share: float
    test_mode: bool
    connect_over_s: float
    burst_over_s: float
    connected: int  # connections open when the burst began
    settled: int  # devices whose settling heartbeat was confirmed before the burst
    never_connected: int  # devices that did not connect once during the whole run
    settle_s: float  # from the first device's start to the burst
    burst_started_at: float  # time.time() when the burst began
    burst_s: float  # from the burst's start until its last frame ended (or the timeout)
    burst_frames: int  # planned: one fault per device (unless "none") plus the fires
    fire_frames: int
    sent: int  # burst frames transmitted at least once
    confirmed: int
    failed: int  # retries exhausted without a confirm
    unfinished: int  # neither confirmed nor failed when the run ended (timeout)
    retransmissions: int  # of burst frames
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    fire_confirmed: int
    fire_failed: int
    fire_latency_p50_ms: float | None
    fire_latency_p99_ms: float | None
    fire_latency_max_ms: float | None
    heartbeats: int  # every heartbeat sent, settling ones included
    retransmissions_total: int  # every exchange's, heartbeats included
    reconnects: int
    disconnects: int
    connect_failures: int
    commands_answered: int  # the center's commands and requests answered (clock sync, reads, ...)
    commands_denied: int
    nofile_limit: int | None
    fires: tuple[FireRecord, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Every burst frame was confirmed."""
        return self.confirmed == self.burst_frames and self.failed == 0

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["fires"] = [asdict(f) for f in self.fires]
        doc["notes"] = list(self.notes)
        doc["ok"] = self.ok
        return doc

    def render(self) -> str:
        """A short human summary."""

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        fault = f"{self.fault_kind} fault" if self.fault_kind != "none" else "no fault"
        lines = [
            f"firegate sim storm: {self.devices} devices -> {self.host}:{self.port}, {fault} from every "
            f"device, {self.fire_frames} {self.fire_kind} fire alarms first"
            + (" (test mode)" if self.test_mode else ""),
            f"  settle       connected {self.connected}/{self.devices}  settled {self.settled}  "
            f"never connected {self.never_connected}  in {self.settle_s:.1f} s "
            f"(ramp {self.connect_over_s:g} s)",
            f"  burst        {self.burst_frames} frames over {self.burst_over_s:g} s: sent {self.sent}  "
            f"confirmed {self.confirmed}  failed {self.failed}  unfinished {self.unfinished}  "
            f"retransmissions {self.retransmissions}  done in {self.burst_s:.1f} s",
            f"  latency ms   p50 {num(self.latency_p50_ms)}  p99 {num(self.latency_p99_ms)}  "
            f"max {num(self.latency_max_ms)}",
            f"  fires ms     p50 {num(self.fire_latency_p50_ms)}  p99 {num(self.fire_latency_p99_ms)}  "
            f"max {num(self.fire_latency_max_ms)}  (confirmed {self.fire_confirmed}/{self.fire_frames}, "
            f"failed {self.fire_failed})",
            f"  links        reconnects {self.reconnects}  disconnects {self.disconnects}  "
            f"connect failures {self.connect_failures}  heartbeats {self.heartbeats}  "
            f"retransmissions (all) {self.retransmissions_total}",
            f"  center       commands answered {self.commands_answered}  denied {self.commands_denied}",
        ]
        lines += [f"  note         {n}" for n in self.notes]
        lines.append(f"  result       {'OK' if self.ok else 'FAILED'}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event a center stored for the storm, as read back from its stream."""

    kind: str  # the subject's second token: "alarm" or "fault"
    device: str  # the device id: the decimal address
    id: str  # the event id (the stream's Nats-Msg-Id)
    seq: int  # stream sequence


@dataclass(frozen=True, slots=True)
class StoredAudit:
    """What a center stored against what the storm's devices said: each fire alarm once and each
    device's fault once (confirmed only after storage, deduplicated by event id)."""

    expected: int
    stored: int  # events read back (duplicates included)
    lost: int  # expected (kind, device) pairs with no stored event
    duplicated: int  # stored events whose id was stored before
    unexpected: int  # distinct stored events beyond the expected ones
    fire_after_fault: int  # fire devices whose fire alarm was stored after their fault
    lost_sample: tuple[str, ...] = ()  # a few "kind.device" that were lost, for a first look

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.fire_after_fault)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["lost_sample"] = list(self.lost_sample)
        return doc


def expected_events(report: StormReport) -> set[tuple[str, str]]:
    """(kind, device) of every event the storm should leave in the stream."""
    out = {("alarm", str(f.device)) for f in report.fires}
    if report.fault_kind != "none":
        first = report.first_address
        out |= {("fault", str(first + i)) for i in range(report.devices)}
    return out


def audit_stored(report: StormReport, events: Iterable[StoredEvent]) -> StoredAudit:
    """Compare what a center stored (fire.alarm.> and fire.fault.> events read back) with the storm."""
    expected = expected_events(report)
    ids: set[str] = set()
    first_seq: dict[tuple[str, str], int] = {}
    stored = duplicated = unexpected = 0
    for e in events:
        stored += 1
        if e.id in ids:
            duplicated += 1
            continue
        ids.add(e.id)
        key = (e.kind, e.device)
        if key not in expected or key in first_seq:
            unexpected += 1
        if key not in first_seq or e.seq < first_seq[key]:
            first_seq[key] = e.seq
    lost = sorted(f"{k}.{d}" for k, d in expected - first_seq.keys())
    late = sum(
        1
        for f in report.fires
        if (fire_seq := first_seq.get(("alarm", str(f.device)))) is not None
        and (fault_seq := first_seq.get(("fault", str(f.device)))) is not None
        and fire_seq > fault_seq
    )
    return StoredAudit(
        expected=len(expected),
        stored=stored,
        lost=len(lost),
        duplicated=duplicated,
        unexpected=unexpected,
        fire_after_fault=late,
        lost_sample=tuple(lost[:10]),
    )


class _Tally:
    """Counts exchanges as they end (done callbacks: no task per frame) and wakes the run."""

    __slots__ = ("all_settled", "burst_confirmed", "burst_done", "burst_failed", "devices", "settled")

    def __init__(self, devices: int) -> None:
        self.devices = devices
        self.settled = 0
        self.all_settled = asyncio.Event()
        self.burst_done = 0
        self.burst_confirmed = 0
        self.burst_failed = 0

    def on_settle(self, fut: asyncio.Future[ExchangeResult]) -> None:
        if not fut.cancelled() and fut.result().ok:
            self.settled += 1
            if self.settled >= self.devices:
                self.all_settled.set()

    def on_burst(self, fut: asyncio.Future[ExchangeResult]) -> None:
        self.burst_done += 1
        outcome = None if fut.cancelled() else fut.result().outcome
        if outcome is Outcome.CONFIRMED:
            self.burst_confirmed += 1
        elif outcome is Outcome.FAILED:
            self.burst_failed += 1


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _result(fut: asyncio.Future[ExchangeResult]) -> ExchangeResult | None:
    return fut.result() if fut.done() and not fut.cancelled() else None


async def run_storm(
    host: str,
    port: int,
    *,
    devices: int = 10_000,
    connect_over: float = 10.0,
    settle_timeout: float = 30.0,
    burst_over: float = 1.0,
    fire_share: float = 0.01,
    fire_kind: str = "detector",
    fault_kind: str = "main_power",
    test_mode: bool = False,
    burst_timeout: float = 60.0,
    heartbeat_interval: float | None = 30.0,
    settings: DeviceSettings | None = None,
    first_address: int = FIRST_ADDRESS,
    seed: int | None = None,
    progress: bool = False,
    progress_out: TextIO | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> StormReport:
    """Run the storm of the module doc against host:port and report it.

    Devices have addresses `first_address`, `first_address + 1`, ...; they start evenly over
    `connect_over` seconds, then the run waits up to `settle_timeout` more seconds for every one to
    settle (the burst comes anyway after that, with a note). `burst_timeout` bounds the burst
    phase, from its first frame on.
    `settings` gives every device's behaviour (confirm timeout, retries, ...); `heartbeat_interval`
    (None: no periodic heartbeats) and `test_mode` override it (`test_mode` True puts the devices in
    test mode; False keeps `settings.test_mode`, real alarms by default). `on_phase` is called with
    "settled" (the burst is about to begin) and "done" (the burst has ended, devices still
    connected), e.g. for a benchmark to read CPU counters.
    """
    fire = FIRE_KINDS.get(fire_kind)
    if fire is None:
        raise ValueError(f"fire_kind must be one of {', '.join(FIRE_KINDS)}, got {fire_kind!r}")
    if fault_kind not in FAULT_KINDS:
        raise ValueError(f"fault_kind must be one of {', '.join(FAULT_KINDS)}, got {fault_kind!r}")
    fault = FAULT_KINDS[fault_kind]
    if devices < 1 or connect_over < 0 or settle_timeout < 0 or burst_over < 0 or burst_timeout <= 0:
        raise ValueError(
            "need devices >= 1, connect_over, settle_timeout, burst_over >= 0 and burst_timeout > 0"
        )
    if not 0 <= fire_share <= 1:
        raise ValueError(f"fire_share must be within 0..1, got {fire_share}")
    fires = fire_count(devices, fire_share)
    if fault is None and fires == 0:
        raise ValueError("fault_kind 'none' with no fire share leaves nothing to send")

    base = settings or DeviceSettings()
    # the settling heartbeat is posted before each device connects, so it is the first frame on the
    # connection: an announcing heartbeat on top would double it
    base = replace(
        base,
        heartbeat_interval=heartbeat_interval,
        heartbeat_on_connect=False,
        random_phase=True,
        test_mode=test_mode or base.test_mode,
    )
    limit = raise_nofile_limit()
    notes: list[str] = []
    if limit is not None and devices + 64 > limit:
        notes.append(f"RLIMIT_NOFILE is {limit}: too low for {devices} connections")

    rng = random.Random(seed)
    stats = SimStats()
    fleet = [
        SimulatedUitd(first_address + i, host, port, settings=base, stats=stats, rng=rng)
        for i in range(devices)
    ]
    fire_devices = set(rng.sample(range(devices), fires))
    order = list(range(devices))
    rng.shuffle(order)
    planned = fires + (devices if fault is not None else 0)

    loop = asyncio.get_running_loop()
    tally = _Tally(devices)
    all_done = asyncio.Event()
    runs: list[asyncio.Task[None]] = []
    burst: list[tuple[int, bool, asyncio.Future[ExchangeResult]]] = []  # (index, fire?, exchange)
    phase = "connect"
    t0 = loop.time()
    tb = t0
    connected_at_burst = settled_at_burst = 0
    burst_wall = 0.0
    burst_end = t0

    def on_burst(fut: asyncio.Future[ExchangeResult]) -> None:
        tally.on_burst(fut)
        if tally.burst_done >= planned:
            all_done.set()

    async def report_progress(out: TextIO) -> None:
        while True:
            await asyncio.sleep(1.0)
            elapsed = loop.time() - t0
            line = (
                f"[{elapsed:6.1f}s] {phase:7} conns {stats.connections}/{devices}  "
                f"settled {tally.settled}  burst {tally.burst_done}/{planned}  "
                f"confirmed {tally.burst_confirmed}  failed {tally.burst_failed}  "
                f"retx {stats.retransmitted}"
            )
            out.write(line + "\n")
            out.flush()

    progress_task = asyncio.create_task(report_progress(progress_out or sys.stderr)) if progress else None
    # the fleet is long-lived: keep it out of the collector's scans, so that a gen-2 collection over
    # 10,000 devices does not stall the loop for ~0.1 s in the middle of the burst (as in run_load)
    gc.freeze()
    try:
        for i, device in enumerate(fleet):
            due = t0 + connect_over * i / devices
            if due - loop.time() > 0.005:
                await asyncio.sleep(due - loop.time())
            device.post(Kind.HEARTBEAT).add_done_callback(tally.on_settle)
            runs.append(asyncio.create_task(device.run(), name=f"uitd-{device.address}"))
            if i % 500 == 499:
                gc.freeze()  # what the ramp has opened so far
        phase = "settle"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(t0 + connect_over + settle_timeout):
                await tally.all_settled.wait()
        gc.freeze()
        if tally.settled < devices:
            notes.append(
                f"only {tally.settled} of {devices} devices settled within {settle_timeout:g} s after the "
                "ramp; the burst came anyway"
            )
        phase = "burst"
        connected_at_burst, settled_at_burst = stats.connections, tally.settled
        if on_phase is not None:
            on_phase("settled")
        tb, burst_wall = loop.time(), time.time()
        try:
            async with asyncio.timeout_at(tb + burst_timeout):
                for k, i in enumerate(order):
                    due = tb + burst_over * k / devices
                    if due - loop.time() > 0.005:
                        await asyncio.sleep(due - loop.time())
                    device = fleet[i]
                    # posted back to back: the fire (urgent) goes first, the fault on its confirm
                    if i in fire_devices:
                        burst.append((i, True, device.post(fire)))
                        burst[-1][2].add_done_callback(on_burst)
                    if fault is not None:
                        burst.append((i, False, device.post(fault)))
                        burst[-1][2].add_done_callback(on_burst)
                await all_done.wait()
        except TimeoutError:
            notes.append(f"the burst did not end within {burst_timeout:g} s")
        burst_end = loop.time()
        phase = "done"
        if on_phase is not None:
            on_phase("done")
    finally:
        for device in fleet:
            device.close()
        if runs:
            _, pending = await asyncio.wait(runs, timeout=_STOP_WAIT)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=_STOP_WAIT)
        if progress_task is not None:
            progress_task.cancel()
        gc.unfreeze()
    for task in runs:
        if task.done() and not task.cancelled() and task.exception() is not None:
            notes.append(f"device task {task.get_name()} failed: {task.exception()!r}")

    latencies: list[float] = []
    fire_latencies: list[float] = []
    sent = confirmed = failed = retransmissions = fire_confirmed = fire_failed = 0
    records: dict[int, FireRecord] = {}
    for index, is_fire, fut in burst:
        r = _result(fut)
        if r is None:
            continue
        sent += r.sent_at is not None
        retransmissions += max(0, r.attempts - 1)
        if r.outcome is Outcome.CONFIRMED and r.latency is not None:
            confirmed += 1
            latencies.append(r.latency)
            if is_fire:
                fire_confirmed += 1
                fire_latencies.append(r.latency)
        elif r.outcome is Outcome.FAILED:
            failed += 1
            fire_failed += is_fire
        if is_fire:
            records[index] = FireRecord(
                fleet[index].address, r.sent_at, str(r.outcome), r.attempts, _ms(r.latency)
            )
    for index in fire_devices - records.keys():  # cut off before it was posted
        records[index] = FireRecord(fleet[index].address, None, str(Outcome.ABANDONED), 0, None)
    p50, p99 = percentiles(latencies, 0.5, 0.99)
    f50, f99 = percentiles(fire_latencies, 0.5, 0.99)
    return StormReport(
        host=host,
        port=port,
        devices=devices,
        first_address=first_address,
        fire_kind=fire_kind,
        fault_kind=fault_kind,
        fire_share=fire_share,
        test_mode=base.test_mode,
        connect_over_s=connect_over,
        burst_over_s=burst_over,
        connected=connected_at_burst,
        settled=settled_at_burst,
        never_connected=sum(1 for d in fleet if not d.connected_once),
        settle_s=round(tb - t0, 3),
        burst_started_at=burst_wall,
        burst_s=round(burst_end - tb, 3),
        burst_frames=planned,
        fire_frames=fires,
        sent=sent,
        confirmed=confirmed,
        failed=failed,
        unfinished=planned - confirmed - failed,
        retransmissions=retransmissions,
        latency_p50_ms=_ms(p50),
        latency_p99_ms=_ms(p99),
        latency_max_ms=_ms(max(latencies)) if latencies else None,
        fire_confirmed=fire_confirmed,
        fire_failed=fire_failed,
        fire_latency_p50_ms=_ms(f50),
        fire_latency_p99_ms=_ms(f99),
        fire_latency_max_ms=_ms(max(fire_latencies)) if fire_latencies else None,
        heartbeats=stats.heartbeats,
        retransmissions_total=stats.retransmitted,
        reconnects=stats.reconnects,
        disconnects=stats.disconnects,
        connect_failures=stats.connect_failures,
        commands_answered=stats.commands_answered,
        commands_denied=stats.commands_denied,
        nofile_limit=limit,
        fires=tuple(sorted(records.values(), key=lambda f: f.device)),
        notes=tuple(notes),
    )
