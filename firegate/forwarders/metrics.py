"""Prometheus metrics of the alarm lifecycle and the forwarders (catalogue: docs/metrics.md).

Labels are low-cardinality: destination (119, mqtt, webhook), state, how, reason, result.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

ALARM_STATES: Final = ("pending", "confirmed", "dismissed", "merged")

alarms_by_state: Final = Gauge(
    "firegate_alarms", "Fire alarms the lifecycle holds (retained in its KV bucket), by state.", ["state"]
)
alarm_state: Final = {s: alarms_by_state.labels(state=s) for s in ALARM_STATES}

incidents_open: Final = Gauge("firegate_incidents_pending", "Incidents waiting for a decision.")

alarm_transitions: Final = Counter(
    "firegate_alarm_transitions_total",
    "Alarm decisions, by the state reached and how (operator, policy, incident: a later alarm of "
    "a confirmed incident; duplicate merges count as policy).",
    ["state", "how"],
)

alarm_decision_seconds: Final = Histogram(
    "firegate_alarm_decision_seconds",
    "Time from an incident's first alarm to its confirmation or dismissal, by how it was decided.",
    ["how"],
    buckets=(1, 5, 15, 30, 60, 120, 180, 300, 600, 1800, 3600),
)

alarms_ingested: Final = Counter(
    "firegate_alarms_ingested_total",
    "fire_alarm events the lifecycle consumed, by result (new, joined, duplicate_delivery, "
    "unreadable).",
    ["result"],
)

lifecycle_errors: Final = Counter(
    "firegate_lifecycle_errors_total",
    "Lifecycle steps that failed and will be retried (the message is redelivered), by reason.",
    ["reason"],
)

forward_attempts: Final = Counter(
    "firegate_forward_attempts_total",
    "Delivery attempts to outside systems, by destination and result (accepted, failed).",
    ["destination", "result"],
)
forward_failures: Final = Counter(
    "firegate_forward_failures_total",
    "Failed delivery attempts, by destination and reason (connect, timeout, http_5xx, http_4xx, "
    "tls, broker, internal).",
    ["destination", "reason"],
)
forward_retries: Final = Counter(
    "firegate_forward_retries_total", "Deliveries scheduled for another attempt.", ["destination"]
)
forward_dead_letters: Final = Counter(
    "firegate_forward_dead_letters_total",
    "Events that could not be delivered (too old, or refused as malformed) and went to the "
    "dead-letter stream, by destination and reason.",
    ["destination", "reason"],
)
forward_filtered: Final = Counter(
    "firegate_forward_filtered_total",
    "Events a destination's filters (kind, site, system type) skipped.",
    ["destination"],
)
forward_in_flight: Final = Gauge(
    "firegate_forward_in_flight", "Events fetched and not yet delivered, by destination.", ["destination"]
)
forward_connections: Final = Gauge(
    "firegate_forward_connections",
    "Open connections to outside systems that keep one (the MQTT brokers), by destination.",
    ["destination"],
)
forward_latency: Final = Histogram(
    "firegate_forward_latency_seconds",
    "Time from an event's storage in the stream to its acceptance by the destination.",
    ["destination"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
confirm_to_119: Final = Histogram(
    "firegate_confirm_to_119_seconds",
    "Time from a fire's confirmation (operator or policy) to the 119 endpoint's acceptance "
    "(GB 50440 allows 3 s).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60),
)

faults_open: Final = Gauge(
    "firegate_faults_open", "Faults raised and not yet cleared, devices offline included (fault tracker)."
)
fault_repair_seconds: Final = Histogram(
    "firegate_fault_repair_seconds",
    "Time from a fault raised to its clearing (time to repair), devices offline included.",
    buckets=(60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400),
)
