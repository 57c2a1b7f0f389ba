"""Sensor input metrics (docs/metrics.md, "Sensors"). Label values are declared in
``LABEL_VALUES`` and bound once; ``source`` is a configured source name (a handful)."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

MESSAGE_RESULTS: Final = ("mapped", "unmapped", "bad_payload", "duplicate", "not_stored")
BAD_PAYLOAD_REASONS: Final = (
    "hex",
    "length",
    "delimiter",
    "checksum",
    "device",  # no device id, or one that is not a single subject token
    "device_type",
    "json",
    "time",
    "value",
    "empty",
    "other",
)
SAMPLE_RESULTS: Final = ("mapped", "unmapped", "duplicate", "clamped", "stale")

_MESSAGES = Counter(
    "firegate_sensor_messages_total", "MQTT sensor messages taken, by source and result", ["source", "result"]
)
_BAD = Counter(
    "firegate_sensor_bad_payloads_total",
    "Sensor payloads no codec could read, by source",
    ["source", "reason"],
)
_SAMPLES = Counter(
    "firegate_sensor_samples_total", "Sensor samples, by source and what became of them", ["source", "result"]
)
BROKER_UP = Gauge("firegate_sensor_broker_up", "1 while the source's broker connection is up", ["source"])
LAG = Gauge(
    "firegate_sensor_lag_seconds",
    "Receipt time minus the sensor's own time of the newest sample in the source's last message",
    ["source"],
)


class SourceCounters:
    """One source's counters, every child bound once (a first bad payload is an increase)."""

    def __init__(self, source: str) -> None:
        self.messages = {r: _MESSAGES.labels(source, r) for r in MESSAGE_RESULTS}
        self.bad_payloads = {r: _BAD.labels(source, r) for r in BAD_PAYLOAD_REASONS}
        self.samples = {r: _SAMPLES.labels(source, r) for r in SAMPLE_RESULTS}


# every series here has a `source` label (configured, not declared): no pre-bound label values
LABEL_VALUES: Final[dict[str, dict[str, tuple[str, ...]]]] = {}
