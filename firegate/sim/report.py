"""Counters, latencies and the load report of the UITD simulator.

One `SimStats` is shared by every device of a load run: per-device state stays small, and the
report is a snapshot of the shared counters.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any


class LatencyRecorder:
    """Exact count, sum and max; a bounded uniform sample (reservoir) for the percentiles, and the
    samples since the last `take_recent()` (bounded) for a progress line."""

    __slots__ = ("_cap", "_rng", "count", "max", "recent", "samples", "total")
    RECENT_CAP = 20_000

    def __init__(self, cap: int = 100_000, rng: random.Random | None = None) -> None:
        self._cap = cap
        self._rng = rng or random.Random(0)
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.samples: list[float] = []
        self.recent: list[float] = []

    def take_recent(self) -> list[float]:
        recent, self.recent = self.recent, []
        return recent

    def add(self, seconds: float) -> None:
        if len(self.recent) < self.RECENT_CAP:
            self.recent.append(seconds)
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds
        if len(self.samples) < self._cap:
            self.samples.append(seconds)
        else:
            slot = self._rng.randrange(self.count)
            if slot < self._cap:
                self.samples[slot] = seconds

    def percentiles(self, *qs: float) -> list[float | None]:
        """Nearest-rank percentiles (q in 0..1) in seconds; None when nothing was recorded."""
        return percentiles(self.samples, *qs)


def percentiles(samples: list[float], *qs: float) -> list[float | None]:
    if not samples:
        return [None for _ in qs]
    ordered = sorted(samples)
    n = len(ordered)
    return [ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] for q in qs]


@dataclass(slots=True)
class SimStats:
    """Counters of one device, or of all devices of a load run (shared)."""

    sent: int = 0  # new send-data frames (heartbeats included), not counting retransmissions
    confirmed: int = 0
    retransmitted: int = 0
    failed: int = 0  # retries exhausted
    denied: int = 0  # denies received (each one triggers a retransmission or the failure)
    interrupted: int = 0  # the connection dropped mid-exchange; the data is sent again afterwards
    heartbeats: int = 0
    shed: int = 0  # non-fire items refused because the device's local queue was full
    abandoned: int = 0  # items still queued when their device stopped: generated faster than sent
    connects: int = 0
    reconnects: int = 0  # connections made after a device's first one
    connect_failures: int = 0
    disconnects: int = 0
    connections: int = 0  # open now
    connections_peak: int = 0
    commands_answered: int = 0  # center commands and requests confirmed or replied to
    commands_denied: int = 0  # denies this side sent (bad checksum, unknown request, ...)
    bad_frames: int = 0  # undeniable garbage from the center (no readable header)
    unmatched: int = 0  # confirms or denies for no outstanding exchange
    confirms_dropped: int = 0  # fault injection: confirms ignored on purpose
    garbage_sent: int = 0  # fault injection: garbage writes
    sent_by_kind: dict[str, int] = field(default_factory=dict)
    latency: LatencyRecorder = field(default_factory=LatencyRecorder)

    def count_sent(self, kind: str) -> None:
        self.sent += 1
        self.sent_by_kind[kind] = self.sent_by_kind.get(kind, 0) + 1

    def connected(self, first: bool) -> None:
        self.connects += 1
        if not first:
            self.reconnects += 1
        self.connections += 1
        if self.connections > self.connections_peak:
            self.connections_peak = self.connections

    def disconnected(self) -> None:
        self.disconnects += 1
        self.connections -= 1

    @property
    def unfinished(self) -> int:
        """Exchanges still waiting for their answer (so far, or when a run was cut off)."""
        return self.sent - self.confirmed - self.failed - self.interrupted


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a load run achieved. Latencies are send (first transmission) to confirm, in ms."""

    host: str
    port: int
    transport: str
    devices: int
    duration_s: float  # the measured window (load generation), without the drain
    generated: int  # mix items handed to devices
    sent: int
    confirmed: int
    retransmitted: int
    failed: int
    denied: int
    interrupted: int
    unfinished: int
    shed: int
    abandoned: int
    heartbeats: int
    frames_per_s: float  # new frames sent per second of the window
    confirmed_per_s: float
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    latency_mean_ms: float | None
    connections_held: int  # open at the end of the window
    connections_peak: int
    never_connected: int  # devices that did not connect once
    reconnects: int
    connect_failures: int
    disconnects: int
    commands_answered: int
    commands_denied: int
    sent_by_kind: dict[str, int]
    nofile_limit: int | None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Nothing failed: every exchange that ended was confirmed, and every device connected and
        was still connected when the window closed."""
        return self.failed == 0 and self.never_connected == 0 and self.connections_held == self.devices

    @classmethod
    def from_stats(
        cls,
        stats: SimStats,
        *,
        host: str,
        port: int,
        transport: str,
        devices: int,
        duration_s: float,
        generated: int,
        connections_held: int,
        never_connected: int,
        nofile_limit: int | None,
        notes: tuple[str, ...] = (),
    ) -> LoadReport:
        p50, p90, p99 = stats.latency.percentiles(0.5, 0.9, 0.99)
        lat = stats.latency
        window = max(duration_s, 1e-9)
        return cls(
            host=host,
            port=port,
            transport=transport,
            devices=devices,
            duration_s=round(duration_s, 3),
            generated=generated,
            sent=stats.sent,
            confirmed=stats.confirmed,
            retransmitted=stats.retransmitted,
            failed=stats.failed,
            denied=stats.denied,
            interrupted=stats.interrupted,
            unfinished=stats.unfinished,
            shed=stats.shed,
            abandoned=stats.abandoned,
            heartbeats=stats.heartbeats,
            frames_per_s=round(stats.sent / window, 1),
            confirmed_per_s=round(stats.confirmed / window, 1),
            latency_p50_ms=_ms(p50),
            latency_p90_ms=_ms(p90),
            latency_p99_ms=_ms(p99),
            latency_max_ms=_ms(lat.max) if lat.count else None,
            latency_mean_ms=_ms(lat.total / lat.count) if lat.count else None,
            connections_held=connections_held,
            connections_peak=stats.connections_peak,
            never_connected=never_connected,
            reconnects=stats.reconnects,
            connect_failures=stats.connect_failures,
            disconnects=stats.disconnects,
            commands_answered=stats.commands_answered,
            commands_denied=stats.commands_denied,
            sent_by_kind={str(k): v for k, v in sorted(stats.sent_by_kind.items())},
            nofile_limit=nofile_limit,
            notes=notes,
        )

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["notes"] = list(self.notes)
        doc["ok"] = self.ok
        return doc

    def render(self) -> str:
        """A short human table."""

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        kinds = "  ".join(f"{k} {v}" for k, v in self.sent_by_kind.items()) or "-"
        lines = [
            f"firegate sim: {self.devices} devices -> {self.host}:{self.port} ({self.transport}), "
            f"{self.duration_s:g} s",
            f"  connections  held {self.connections_held}/{self.devices}  peak {self.connections_peak}  "
            f"never connected {self.never_connected}  reconnects {self.reconnects}  "
            f"connect failures {self.connect_failures}",
            f"  frames       sent {self.sent}  confirmed {self.confirmed}  "
            f"retransmitted {self.retransmitted}  failed {self.failed}  denied {self.denied}  "
            f"interrupted {self.interrupted}  "
            f"unfinished {self.unfinished}  shed {self.shed}  abandoned {self.abandoned}",
            f"  by kind      {kinds}",
            f"  rate         {self.frames_per_s:g} frames/s sent, {self.confirmed_per_s:g}/s confirmed "
            f"({self.generated} generated)",
            f"  latency ms   p50 {num(self.latency_p50_ms)}  p90 {num(self.latency_p90_ms)}  "
            f"p99 {num(self.latency_p99_ms)}  max {num(self.latency_max_ms)}",
            f"  center       commands answered {self.commands_answered}  denied {self.commands_denied}",
        ]
        lines += [f"  note         {n}" for n in self.notes]
        lines.append(f"  result       {'OK' if self.ok else 'FAILED'}")
        return "\n".join(lines)
