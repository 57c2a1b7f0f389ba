"""Many simulated UITDs in one process: one connection each, a shared traffic generator, a report.

The generator draws items at `rate` per second in total (over all devices), each from the mix, and
hands each to a random started device. Periodic heartbeats come on top, from every device.
Devices and load ramp up linearly over `ramp` seconds. At `duration` the generator stops, devices
finish the exchange in flight (for at most `drain` seconds) and disconnect.

The default mix holds fire alarms and manual call points. Whether a center takes them as real
fires is `settings.test_mode`'s choice (status bit 0 clear: the standard's test state). The
`firegate sim` command sets it unless `--real`; code that calls `run_load` sets it itself
(`DeviceSettings` defaults to real alarms).
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from time import perf_counter
from typing import TextIO

from firegate.ops.limits import raise_nofile_limit
from firegate.sim.device import DeviceSettings, SimulatedUitd, UdpSimulatedUitd
from firegate.sim.payloads import MIX_KINDS, Kind
from firegate.sim.report import LoadReport, SimStats, percentiles

DEFAULT_MIX: dict[str, float] = {
    "fire": 0.01,
    "manual": 0.005,
    "fault": 0.05,
    "status": 0.2,
    "uitd": 0.05,
    "analog": 0.2,
}
FIRST_ADDRESS = 100_000  # device i has address FIRST_ADDRESS + i unless told otherwise
_TICK = 0.01
_MIX_NAMES = {str(k): k for k in MIX_KINDS}


@dataclass(frozen=True, slots=True)
class Mix:
    """Which kind each generated item is. Weights summing to more than 1 are normalised; a sum
    below 1 leaves the remainder to heartbeats (the bulk of a real center's traffic)."""

    kinds: tuple[Kind, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, weights: Mapping[str, float]) -> Mix:
        clean: dict[Kind, float] = {}
        for name, weight in weights.items():
            kind = _MIX_NAMES.get(name.strip().lower())
            if kind is None:
                raise ValueError(f"unknown traffic kind {name!r} (known: {', '.join(MIX_KINDS)})")
            if not weight >= 0:  # also refuses NaN
                raise ValueError(f"weight of {name!r} must be >= 0, got {weight}")
            clean[kind] = clean.get(kind, 0.0) + weight
        total = sum(clean.values())
        if total < 1.0:
            clean[Kind.HEARTBEAT] = clean.get(Kind.HEARTBEAT, 0.0) + (1.0 - total)
            total = 1.0
        kinds = tuple(k for k, w in clean.items() if w > 0)
        acc, cumulative = 0.0, []
        for k in kinds:
            acc += clean[k] / total
            cumulative.append(acc)
        return cls(kinds, tuple(cumulative))

    def pick(self, rng: random.Random) -> Kind:
        i = bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])
        return self.kinds[min(i, len(self.kinds) - 1)]

    def shares(self) -> dict[str, float]:
        prev, out = 0.0, {}
        for k, c in zip(self.kinds, self.cumulative, strict=True):
            out[str(k)] = round(c - prev, 6)
            prev = c
        return out


def parse_mix(text: str) -> Mix:
    """`fire=0.01,fault=0.05,status=0.2` -> Mix. Raises ValueError with the reason."""
    weights: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"expected kind=weight, got {part.strip()!r}")
        try:
            weights[name.strip()] = weights.get(name.strip(), 0.0) + float(value)
        except ValueError:
            raise ValueError(f"weight of {name.strip()!r} is not a number: {value.strip()!r}") from None
    return Mix.of(weights)


def auto_ramp(devices: int, duration: float) -> float:
    """Connect about 2,000 devices per second, within the first half of the run."""
    return min(duration / 2, devices / 2000)


async def run_load(
    host: str,
    port: int,
    *,
    devices: int = 1,
    rate: float = 10.0,
    duration: float = 10.0,
    mix: Mix | Mapping[str, float] | str | None = None,
    heartbeat_interval: float | None = 30.0,
    ramp: float | None = None,
    udp: bool = False,
    settings: DeviceSettings | None = None,
    first_address: int = FIRST_ADDRESS,
    drain: float = 1.0,
    seed: int | None = None,
    progress: bool = False,
    progress_out: TextIO | None = None,
) -> LoadReport:
    """Drive `devices` simulated UITDs against host:port for `duration` seconds; see the module doc.

    `settings` gives every device's behaviour, test mode included (`DeviceSettings.test_mode`;
    None: `DeviceSettings()`, real alarms); `heartbeat_interval` overrides its heartbeat, and
    heartbeat phases are random. `ramp` None picks `auto_ramp`. Returns when everything has
    stopped, at most `duration + drain` after the start.
    """
    if devices < 1 or duration <= 0 or rate < 0 or drain < 0:
        raise ValueError("need devices >= 1, duration > 0, rate >= 0 and drain >= 0")
    if isinstance(mix, str):
        mix = parse_mix(mix)
    elif mix is None or isinstance(mix, Mapping):
        mix = Mix.of(DEFAULT_MIX if mix is None else mix)
    base = replace(settings or DeviceSettings(), heartbeat_interval=heartbeat_interval, random_phase=True)
    ramp = auto_ramp(devices, duration) if ramp is None else max(0.0, min(ramp, duration))
    limit = raise_nofile_limit()
    notes: list[str] = []
    if limit is not None and devices + 64 > limit:
        notes.append(f"RLIMIT_NOFILE is {limit}: too low for {devices} connections")

    rng = random.Random(seed)
    stats = SimStats()
    cls = UdpSimulatedUitd if udp else SimulatedUitd
    fleet = [cls(first_address + i, host, port, settings=base, stats=stats, rng=rng) for i in range(devices)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    stop_at = t0 + duration
    state = _RunState()

    async def start_fleet(tg: asyncio.TaskGroup) -> None:
        for i, device in enumerate(fleet):
            due = t0 + ramp * i / devices
            if due - loop.time() > 0.005:
                await asyncio.sleep(due - loop.time())
            if loop.time() >= stop_at:
                return
            tg.create_task(device.run())
            state.started = i + 1

    async def generate() -> None:
        last, carry, freeze_at = loop.time(), 0.0, loop.time()
        while (now := loop.time()) < stop_at:
            if now >= freeze_at:
                # connections are long-lived too: freeze them as the ramp opens them, until all are up
                gc.freeze()
                freeze_at = now + 0.5 if stats.connections < devices else stop_at
            carry += rate * (now - last) * state.started / devices
            last = now
            while carry >= 1.0:
                carry -= 1.0
                fleet[rng.randrange(state.started)].submit(mix.pick(rng))
                state.generated += 1
            await asyncio.sleep(min(_TICK, stop_at - now))

    async def report_progress(out: TextIO) -> None:
        began = last = perf_counter()
        last_sent = 0
        while loop.time() < stop_at:
            await asyncio.sleep(min(1.0, max(0.0, stop_at - loop.time())))
            now = perf_counter()
            rate_now = (stats.sent - last_sent) / max(now - last, 1e-9)
            last, last_sent = now, stats.sent
            out.write(_progress_line(stats, now - began, devices, rate_now) + "\n")
            out.flush()

    # A gen-2 collection over 10,000 devices' objects stalls the loop for ~0.1 s, which would be
    # measured as center latency: the fleet is long-lived, so keep it out of the collector's scans
    # (gc.freeze is a list splice; objects frozen are still freed by reference counting).
    gc.freeze()
    try:
        async with asyncio.timeout_at(stop_at + drain), asyncio.TaskGroup() as tg:
            tg.create_task(start_fleet(tg))
            tg.create_task(generate())
            if progress:
                tg.create_task(report_progress(progress_out or sys.stderr))
            await asyncio.sleep(max(0.0, stop_at - loop.time()))
            state.held = stats.connections
            state.window = loop.time() - t0
            for device in fleet:
                device.stop()  # no new exchanges; those in flight get until the drain ends
    except TimeoutError:
        pass  # the drain ran out: the group cancelled the stragglers
    finally:
        gc.unfreeze()
    if not state.window:  # cut short before the window closed
        state.held, state.window = stats.connections, loop.time() - t0
    return LoadReport.from_stats(
        stats,
        host=host,
        port=port,
        transport="udp" if udp else "tcp",
        devices=devices,
        duration_s=state.window,
        generated=state.generated,
        connections_held=state.held,
        never_connected=sum(1 for d in fleet if not d.connected_once),
        nofile_limit=limit,
        notes=tuple(notes),
    )


class _RunState:
    __slots__ = ("generated", "held", "started", "window")

    def __init__(self) -> None:
        self.started = 0
        self.generated = 0
        self.held = 0
        self.window = 0.0


def _progress_line(stats: SimStats, elapsed: float, devices: int, rate_now: float) -> str:
    (p99,) = percentiles(stats.latency.take_recent(), 0.99)  # of the last second only
    p99_text = "-" if p99 is None else f"{p99 * 1000:.1f}"
    return (
        f"[{elapsed:6.1f}s] conns {stats.connections}/{devices}  sent {stats.sent}  "
        f"confirmed {stats.confirmed}  retx {stats.retransmitted}  failed {stats.failed}  "
        f"{rate_now:.0f} fr/s  p99 {p99_text} ms (last second)"
    )
