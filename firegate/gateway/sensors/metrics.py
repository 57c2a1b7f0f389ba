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
SAMPLE_RESULTS: Final = ("mapped", "unmapped", "duplicate", "clamped")

_MESSAGES = Counter("firegate_sensor_messages_total", "MQTT sensor messages taken, by result", ["result"])
_BAD = Counter("firegate_sensor_bad_payloads_total", "Sensor payloads no codec could read", ["reason"])
_SAMPLES = Counter("firegate_sensor_samples_total", "Sensor samples, by what became of them", ["result"])
BROKER_UP = Gauge("firegate_sensor_broker_up", "1 while the source's broker connection is up", ["source"])
LAG = Gauge(
    "firegate_sensor_lag_seconds",
    "Receipt time minus the sensor's own time of the newest sample in the source's last message",
    ["source"],
)

messages = {r: _MESSAGES.labels(result=r) for r in MESSAGE_RESULTS}
bad_payloads = {r: _BAD.labels(reason=r) for r in BAD_PAYLOAD_REASONS}
samples = {r: _SAMPLES.labels(result=r) for r in SAMPLE_RESULTS}

LABEL_VALUES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "firegate_sensor_messages_total": {"result": MESSAGE_RESULTS},
    "firegate_sensor_bad_payloads_total": {"reason": BAD_PAYLOAD_REASONS},
    "firegate_sensor_samples_total": {"result": SAMPLE_RESULTS},
}
