"""The `sensors` section: every problem named by its key, from the file and from the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firegate.config import load_settings
from firegate.errors import ConfigError

GOOD = """
sensors:
  thresholds:
    hydrant_low: {unit: MPa, low: 0.14, hysteresis: 0.02, min_duration: 60}
    residual: {unit: mA, high: 300, hysteresis: 30, raises: alarm}
  sources:
    - name: meokon
      url: mqtt://127.0.0.1:1883
      topics: ["GIOT-GW/UL/#"]
      codec: meokon
      points:
        - {point: pressure, component_type: 99, threshold: hydrant_low}
"""


def problems(path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    return str(e.value)


def test_a_good_section_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in __import__("os").environ if v.upper().startswith("FIREGATE_")]:
        monkeypatch.delenv(var)
    (tmp_path / "f.yaml").write_text(GOOD, encoding="utf-8")
    s = load_settings(tmp_path / "f.yaml").sensors
    (source,) = s.sources
    assert source.topics == ["GIOT-GW/UL/#"] and source.points[0].threshold == "hydrant_low"
    assert s.thresholds["residual"].raises == "alarm"


def test_bad_keys_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in __import__("os").environ if v.upper().startswith("FIREGATE_")]:
        monkeypatch.delenv(var)
    bad = GOOD.replace("mqtt://127.0.0.1:1883", "tcp://x").replace("GIOT-GW/UL/#", "a/#/b")
    bad = bad.replace("threshold: hydrant_low", "threshold: nope").replace("unit: mA", "unit: furlongs")
    (tmp_path / "f.yaml").write_text(bad, encoding="utf-8")
    text = problems(tmp_path / "f.yaml")
    for key in (
        "sensors.sources.0.url",
        "sensors.sources.0.topics.0",
        "sensors.sources.0.points.0.threshold",
        "sensors.thresholds.residual.unit",
    ):
        assert key in text, text


def test_codec_and_its_options_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    sources = [
        {"name": "a", "url": "mqtt://h:1", "topics": ["t"], "codec": "nope"},
        {"name": "b", "url": "mqtt://h:1", "topics": ["t"], "codec": "json", "codec_options": {}},
    ]
    monkeypatch.setenv("FIREGATE_SENSORS__SOURCES", json.dumps(sources))
    text = problems()
    assert "sensors.sources.0.codec" in text and "no message codec named 'nope'" in text
    assert "sensors.sources.1.codec_options" in text


def test_thresholds_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIREGATE_SENSORS__THRESHOLDS", json.dumps({"low": {"unit": "m", "low": 1.5}}))
    assert load_settings().sensors.thresholds["low"].low == 1.5
