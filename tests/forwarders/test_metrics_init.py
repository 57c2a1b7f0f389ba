"""The forwarders' failure, retry and dead-letter series exist at 0 before their first event,
so that ``increase(...) > 0`` sees the first failure. In a fresh process: no other test has
touched its registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
from prometheus_client import generate_latest
from firegate.config import Settings
from firegate.forwarders.routes import dispatch_couriers, fault_couriers

print(generate_latest().decode())
print("# -- couriers created")
settings = Settings(
    dispatch119={"url": "http://119.example/incidents"},
    faults={"mqtt": [{"url": "mqtt://broker.example"}], "webhooks": [{"url": "https://ops.example/hook"}]},
)
dispatch_couriers(None, settings)
fault_couriers(None, settings)
print(generate_latest().decode())
"""


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_series_exist_at_zero_before_any_event() -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FIREGATE_")}
    p = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    at_import, created = (samples(part) for part in p.stdout.split("# -- couriers created"))

    # the lifecycle's fixed reasons and results: at import
    for found in (at_import, created):
        assert value(found, "firegate_lifecycle_errors_total", reason="ingest") == 0
        assert value(found, "firegate_lifecycle_errors_total", reason="consumer") == 0
        assert value(found, "firegate_alarms_ingested_total", result="unreadable") == 0
        assert value(found, "firegate_alarm_transitions_total", state="confirmed", how="policy") == 0
        assert value(found, "firegate_alarm_decision_seconds_count", how="operator") == 0

    # a destination's: once its courier exists, before any delivery
    assert value(at_import, "firegate_forward_failures_total", destination="119", reason="connect") is None
    for destination in ("119", "mqtt", "webhook"):
        for result in ("accepted", "failed"):
            assert (
                value(created, "firegate_forward_attempts_total", destination=destination, result=result) == 0
            )
        assert value(created, "firegate_forward_retries_total", destination=destination) == 0
        assert value(created, "firegate_forward_filtered_total", destination=destination) == 0
        for reason in ("max_age", "refused", "unreadable"):
            dead = value(
                created, "firegate_forward_dead_letters_total", destination=destination, reason=reason
            )
            assert dead == 0, (destination, reason)
        assert value(created, "firegate_forward_latency_seconds_count", destination=destination) == 0
    for destination in ("119", "webhook"):
        for reason in ("connect", "timeout", "tls", "http_4xx", "http_5xx", "http_other", "internal"):
            failed = value(created, "firegate_forward_failures_total", destination=destination, reason=reason)
            assert failed == 0, (destination, reason)
    for reason in ("broker", "refused", "closed", "republish", "internal"):
        assert value(created, "firegate_forward_failures_total", destination="mqtt", reason=reason) == 0
    # an MQTT failure reason is not an HTTP destination's series
    assert value(created, "firegate_forward_failures_total", destination="119", reason="broker") is None
