"""Prometheus metrics of the bus layer (default registry).

Label children are bound once here: ``.labels(...)`` on the hot path costs
four times a bound ``.inc()``. Labels stay low-cardinality (result, reason,
priority); never a device id or subject.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

PUBLISH_RESULTS: Final = ("stored", "duplicate", "spooled", "refused", "failed")
RETRY_REASONS: Final = ("timeout", "no_responders", "disconnected", "api_error", "closed", "batch_refused")
BATCH_RESULTS: Final = ("stored", "refused")
REFUSE_REASONS: Final = ("full", "io_error")
PRIORITIES: Final = ("fire", "other")

_publish_total = Counter(
    "firegate_publish_total",
    "Events handed to the publisher, by outcome (stored/duplicate in JetStream, spooled "
    "locally, refused by a full spool, failed on a spool I/O error).",
    ["result"],
)
publish_result: Final = {r: _publish_total.labels(result=r) for r in PUBLISH_RESULTS}

publish_latency: Final = Histogram(
    "firegate_publish_latency_seconds",
    "Time from publish() to a durable outcome (JetStream ack or spool fsync).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

_batches_total = Counter(
    "firegate_publish_batches_total",
    "Atomic batches sent to JetStream (one synchronous write each), by result (refused: the "
    "server had one of its msg ids, a resend; its records then went one by one).",
    ["result"],
)
batch_result: Final = {r: _batches_total.labels(result=r) for r in BATCH_RESULTS}

_store_writes_total = Counter(
    "firegate_store_writes_total",
    "Synchronous writes firegate asked of JetStream (each fsync'd on a single node, a quorum "
    "round on a cluster), by store: stream (events: one per atomic batch, one per event sent "
    "alone) and status (the status memory: one per batch of point states, one per state alone).",
    ["store"],
)
store_writes: Final = {s: _store_writes_total.labels(store=s) for s in ("stream", "status")}

batch_size: Final = Histogram(
    "firegate_publish_batch_size_events",
    "Events per stored atomic batch (the group commit: events per synchronous write).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)

_publish_retries_total = Counter(
    "firegate_publish_retries_total",
    "JetStream publish attempts that failed and were retried or spooled, by reason.",
    ["reason"],
)
publish_retry: Final = {r: _publish_retries_total.labels(reason=r) for r in RETRY_REASONS}

_spool_records = Gauge("firegate_spool_depth_records", "Records waiting in the local spool.", ["priority"])
spool_records: Final = {p: _spool_records.labels(priority=p) for p in PRIORITIES}

_spool_bytes = Gauge("firegate_spool_depth_bytes", "Bytes waiting in the local spool.", ["priority"])
spool_bytes: Final = {p: _spool_bytes.labels(priority=p) for p in PRIORITIES}

_spool_refused_total = Counter(
    "firegate_spool_refused_total",
    "Records the spool did not take, by reason (full: non-fire past the bound; io_error).",
    ["reason"],
)
spool_refused: Final = {r: _spool_refused_total.labels(reason=r) for r in REFUSE_REASONS}

spool_discarded_bytes: Final = Counter(
    "firegate_spool_discarded_bytes_total",
    "Spool bytes skipped as torn or corrupt (a record cut by a crash, or damaged on disk).",
)

_spool_replayed_total = Counter(
    "firegate_spool_replayed_total",
    "Spooled records delivered to JetStream by the replayer, by result.",
    ["result"],
)
spool_replayed: Final = {r: _spool_replayed_total.labels(result=r) for r in ("stored", "duplicate")}

nats_connected: Final = Gauge("firegate_nats_connected", "1 while the NATS client is connected, else 0.")

# -- retention: what each stream holds against its limits (refreshed from stream info) ------------

STREAM_INFO_FAILURES: Final = ("timeout", "not_found", "disconnected", "api_error")

stream_bytes: Final = Gauge(
    "firegate_stream_bytes",
    "Bytes a JetStream stream holds now, by stream (FIRE: records, FIRE_TELEMETRY).",
    ["stream"],
)
stream_limit_bytes: Final = Gauge(
    "firegate_stream_limit_bytes",
    "A stream's max_bytes, by stream (-1: no limit of its own). Past it, its oldest messages are discarded.",
    ["stream"],
)
stream_messages: Final = Gauge(
    "firegate_stream_messages", "Messages a stream holds now, by stream.", ["stream"]
)
stream_oldest_age: Final = Gauge(
    "firegate_stream_oldest_age_seconds",
    "Age of the oldest message a stream holds (0 when empty), by stream: the window it really keeps.",
    ["stream"],
)
stream_max_age: Final = Gauge(
    "firegate_stream_max_age_seconds", "A stream's max_age: the window it should keep, by stream.", ["stream"]
)
_stream_info_failures_total = Counter(
    "firegate_stream_info_failures_total",
    "Stream info requests for the retention metrics that failed, by reason (the gauges then keep "
    "their last values).",
    ["reason"],
)
stream_info_failures: Final = {r: _stream_info_failures_total.labels(reason=r) for r in STREAM_INFO_FAILURES}

PERMISSION_OPERATIONS: Final = ("publish", "subscribe")
_nats_permission_errors_total = Counter(
    "firegate_nats_permission_errors_total",
    "Publishes and subscriptions the NATS server refused for want of permission, by operation "
    "(firegate/bus/permissions.py).",
    ["operation"],
)
nats_permission_errors: Final = {
    op: _nats_permission_errors_total.labels(operation=op) for op in PERMISSION_OPERATIONS
}
