"""Ingest metrics (docs/metrics.md): queue depth, time in queue and lag per lane, and outcomes.

Children are bound once per lane; ``.labels()`` per report would cost four times a bound call.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from firegate.ingest.priority import Lane

LANES: Final = tuple(lane.name.lower() for lane in Lane)
RESULTS: Final = ("stored", "stored_raw", "not_stored")

_depth = Gauge("firegate_ingest_queue_depth", "Reports waiting for ingest, by lane", ["lane"])
depth: Final = {lane: _depth.labels(lane.name.lower()) for lane in Lane}

_lag = Gauge(
    "firegate_ingest_lag_seconds",
    "How long the oldest report still waiting has waited, by lane (0 when none waits)",
    ["lane"],
)
lag: Final = {lane: _lag.labels(lane.name.lower()) for lane in Lane}

_queued = Histogram(
    "firegate_ingest_queue_seconds",
    "Time a report waited in ingest's queue before its batch was taken, by lane",
    ["lane"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
queued: Final = {lane: _queued.labels(lane.name.lower()) for lane in Lane}

_reports = Counter(
    "firegate_ingest_reports_total",
    "Reports ingest finished, by lane and result (stored_raw: normalization failed, the raw record "
    "was stored; not_stored: the device is not confirmed and resends)",
    ["lane", "result"],
)
reports: Final = {(lane, r): _reports.labels(lane.name.lower(), r) for lane in Lane for r in RESULTS}

batch_reports: Final = Histogram(
    "firegate_ingest_batch_reports",
    "Reports per ingest batch (stored together: one group commit)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)

paused: Final = Gauge(
    "firegate_ingest_paused_inputs",
    "Connections whose reading is paused because ingest's queue is full (back-pressure)",
)

DEVICE_TO_BUS: Final = Histogram(
    "firegate_gateway_device_to_bus_seconds",
    "From an event's device time tag to its durable storage (includes the device's clock error)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60, 300),
)

LABEL_VALUES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "firegate_ingest_queue_depth": {"lane": LANES},
    "firegate_ingest_lag_seconds": {"lane": LANES},
    "firegate_ingest_reports_total": {"lane": LANES, "result": RESULTS},
}
