"""Prometheus metrics of the alarm lifecycle and the forwarders (catalogue: docs/metrics.md).

Labels are low-cardinality: destination (119, mqtt, webhook), state, how, reason, result.

Every series is created at 0 as soon as its labels are known, so that an alert on
``increase(...) > 0`` sees the first failure: the lifecycle's fixed reasons and results at
import, a destination's series by `init_destination` when its courier is created.
``LABEL_VALUES`` lists the values fixed at import (tests/ops/test_metrics_doc.py).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

ALARM_STATES: Final = ("pending", "confirmed", "dismissed", "merged")
INGEST_RESULTS: Final = ("new", "joined", "duplicate_delivery", "unreadable")
# ingest, tick, resync: a step retried; view, api, consumer, ticker: the part that restarted
LIFECYCLE_ERRORS: Final = ("ingest", "tick", "resync", "view", "api", "consumer", "ticker")
DECISION_HOWS: Final = ("operator", "policy")
# (state reached, how) of the decisions the lifecycle takes; a later alarm of a confirmed
# incident is confirmed by "incident", a duplicate merged by "policy"
TRANSITIONS: Final = (
    ("confirmed", "operator"),
    ("confirmed", "policy"),
    ("confirmed", "incident"),
    ("dismissed", "operator"),
    ("merged", "policy"),
)
ATTEMPT_RESULTS: Final = ("accepted", "failed")
DEAD_LETTER_REASONS: Final = ("max_age", "refused", "unreadable")
_HTTP_FAILURES: Final = ("connect", "timeout", "tls", "http_4xx", "http_5xx", "http_other", "internal")
# the failure reasons each kind of destination can report (the courier adds "internal")
FAILURE_REASONS: Final = {
    "119": _HTTP_FAILURES,
    "webhook": _HTTP_FAILURES,
    "mqtt": ("broker", "refused", "closed", "republish", "internal"),
}

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
    "fire_alarm events the lifecycle consumed, by result (new, joined, duplicate_delivery, unreadable).",
    ["result"],
)
for _result in INGEST_RESULTS:
    alarms_ingested.labels(result=_result)

lifecycle_errors: Final = Counter(
    "firegate_lifecycle_errors_total",
    "Lifecycle steps that failed and will be retried (the message is redelivered), by reason.",
    ["reason"],
)
for _reason in LIFECYCLE_ERRORS:
    lifecycle_errors.labels(reason=_reason)
for _state, _how in TRANSITIONS:
    alarm_transitions.labels(state=_state, how=_how)
for _how in DECISION_HOWS:
    alarm_decision_seconds.labels(how=_how)

LABEL_VALUES: Final = {
    "firegate_alarms_ingested_total": {"result": INGEST_RESULTS},
    "firegate_lifecycle_errors_total": {"reason": LIFECYCLE_ERRORS},
}

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
forward_link_up: Final = Gauge(
    "firegate_forward_link_up",
    "1 while every outside system of this kind that keeps a connection (the MQTT brokers) is "
    "connected, 0 while one is lost.",
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


def init_destination(destination: str) -> None:
    """Create a destination's series at 0 (its courier is being created), so that the first
    failure, retry or dead letter is an increase from 0 rather than a new series."""
    for result in ATTEMPT_RESULTS:
        forward_attempts.labels(destination=destination, result=result)
    for reason in FAILURE_REASONS.get(destination, ("internal",)):
        forward_failures.labels(destination=destination, reason=reason)
    forward_retries.labels(destination=destination)
    for reason in DEAD_LETTER_REASONS:
        forward_dead_letters.labels(destination=destination, reason=reason)
    forward_filtered.labels(destination=destination)
    forward_in_flight.labels(destination=destination)
    forward_latency.labels(destination=destination)
