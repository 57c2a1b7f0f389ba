"""Process-level metrics and a catalogue walk of the default Prometheus registry.

Each layer defines its own metrics in its own ``metrics`` module
(``firegate.bus.metrics``, ``firegate.gateway.metrics``, ...); docs/metrics.md
lists them all and a test keeps the two in step.
"""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.metrics import MetricWrapperBase

import firegate

# (type, label names) of one metric, keyed by its exposition name
MetricInfo = tuple[str, tuple[str, ...]]

# Label names that would make one series per device: tens of thousands of them.
FORBIDDEN_LABELS = frozenset({"device", "device_id", "serial", "address"})


def firegate_version() -> str:
    try:
        return version("firegate")
    except PackageNotFoundError:  # running from a source tree
        return firegate.__version__


BUILD_INFO = Gauge("firegate_build_info", "Always 1; the version label says which firegate runs", ["version"])
BUILD_INFO.labels(version=firegate_version()).set(1)

EVENT_LOOP_LAG = Gauge(
    "firegate_event_loop_lag_seconds",
    "How late the event loop ran a 1 s timer, last sample: sustained lag delays every frame's confirm",
)


_registry_reloads = Counter(
    "firegate_site_registry_reloads_total",
    "SIGHUP reloads of the site registry, by result (failed: the previous registry stays in force)",
    ["result"],
)
SITE_REGISTRY_RELOADS = {r: _registry_reloads.labels(result=r) for r in ("ok", "failed")}
SITE_REGISTRY_STALE = Gauge(
    "firegate_site_registry_stale",
    "1 while the site registry's file failed its last reload (the previous registry is in force), else 0",
)


async def watch_event_loop_lag(interval: float = 1.0) -> None:
    """Sample the event loop's lag forever (run it as a task; cancel to stop)."""
    while True:
        start = time.monotonic()
        await asyncio.sleep(interval)
        EVENT_LOOP_LAG.set(max(0.0, time.monotonic() - start - interval))


def _exposed_name(name: str, kind: str) -> str:
    # prometheus_client stores counters without "_total" and infos without "_info"
    suffix = {"counter": "_total", "info": "_info"}.get(kind, "")
    return name if name.endswith(suffix) else name + suffix


def all_firegate_metrics(registry: CollectorRegistry = REGISTRY) -> dict[str, MetricInfo]:
    """Every ``firegate_*`` metric registered: exposition name -> (type, label names).

    Works for metrics with no series yet (labelled, never incremented), which a
    scrape would not show.
    """
    found: dict[str, MetricInfo] = {}
    with registry._lock:
        collectors = list(registry._collector_to_names)
    for collector in collectors:
        if isinstance(collector, MetricWrapperBase):
            kind = collector._type or "untyped"
            entries: list[tuple[str, str, tuple[str, ...]]] = [
                (_exposed_name(collector._name, kind), kind, tuple(collector._labelnames))
            ]
        else:  # a custom collector: learn the labels from what it yields now
            entries = []
            for family in collector.collect():
                seen = dict.fromkeys(
                    k for s in family.samples for k in s.labels if k not in ("le", "quantile")
                )
                entries.append((_exposed_name(family.name, family.type), family.type, tuple(seen)))
        for name, kind, labels in entries:
            if name.startswith("firegate_"):
                found[name] = (kind, labels)
    return found
