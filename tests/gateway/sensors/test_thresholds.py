"""Limits judged in the sensor's own time, and samples placed on the standard's objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from firegate.codecs.api import STATUS, Sample
from firegate.codecs.gb26875 import AnalogValue, ComponentStatus
from firegate.config import SensorPoint, SensorThreshold
from firegate.gateway.sensors.mapping import Mapper
from firegate.gateway.sensors.thresholds import Limit, Thresholds
from firegate.gateway.sensors.units import QUANTITIES, raw_value

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
KEY = ("HYD-1", "pressure")


def run(limit: Limit, values: list[float], every: float = 60) -> list[bool]:
    thresholds = Thresholds()
    return [thresholds.judge(KEY, limit, v, T0 + timedelta(seconds=i * every)) for i, v in enumerate(values)]


def test_low_limit_raises_below_and_clears_only_past_the_hysteresis() -> None:
    limit = Limit(low=140.0, high=None, hysteresis=20.0)  # kPa
    assert run(limit, [300, 150, 139, 145, 159, 160, 130]) == [False, False, True, True, True, False, True]


def test_high_limit_with_hysteresis() -> None:
    limit = Limit(low=None, high=0.3, hysteresis=0.05)  # A
    assert run(limit, [0.1, 0.31, 0.28, 0.25, 0.31]) == [False, True, True, False, True]


def test_min_duration_needs_the_breach_to_last_in_sensor_time() -> None:
    limit = Limit(low=140.0, high=None, min_duration=120)
    # a one-sample dip never raises; a breach lasting 120 s of sensor time does
    assert run(limit, [100, 200, 100, 100, 100, 200]) == [False, False, False, False, True, False]


def test_states_are_per_point() -> None:
    thresholds = Thresholds()
    limit = Limit(low=1.0, high=None)
    assert thresholds.judge(("a", "level"), limit, 0.5, T0)
    assert not thresholds.judge(("b", "level"), limit, 2.0, T0)
    assert thresholds.judge(("a", "level"), limit, 1.0 - 1e-9, T0)


def test_raw_value_uses_the_type_step_and_clamps_to_int16() -> None:
    kpa = QUANTITIES["pressure"]
    assert raw_value(142.0, kpa) == (1420, False)  # 0.142 MPa at 0.1 kPa
    assert raw_value(5000.0, kpa) == (32767, True)  # 5 MPa does not fit type 5


POINTS = [
    SensorPoint(point="pressure", threshold="hydrant_low", component_type=99, component_address=7),
    SensorPoint(point="smoke", component_type=42, component_address=1, description="3F 走廊"),
    SensorPoint(device="EFM-7", point="*", quantity="current", component_type=17, threshold="residual"),
]
THRESHOLDS = {
    "hydrant_low": SensorThreshold(unit="MPa", low=0.14, hysteresis=0.02),
    "residual": SensorThreshold(unit="mA", high=300, hysteresis=30, raises="alarm"),
}


def test_mapping_pressure_in_mpa_becomes_kpa_and_a_fault_below_the_limit() -> None:
    mapper = Mapper(POINTS, THRESHOLDS)
    samples = [
        Sample("HYD-1", "pressure", T0, 0.32, "MPa"),
        Sample("HYD-1", "pressure", T0 + timedelta(minutes=1), 0.12, "MPa"),
    ]
    mapped = mapper.map("HYD-1", samples, T0)
    assert [(a.analog_type, a.value, a.component_type, a.component_address) for a in mapped.analog] == [
        (5, 3200, 99, 7),
        (5, 1200, 99, 7),
    ]
    assert all(isinstance(a, AnalogValue) for a in mapped.analog)
    statuses = [s for s in mapped.status if isinstance(s, ComponentStatus)]
    assert [s.status for s in statuses] == [STATUS["normal"], STATUS["normal"] | STATUS["fault"]]
    assert statuses[1].time is not None and statuses[1].time.value == datetime(2026, 12, 3, 16, 1)  # CST


def test_mapping_flags_and_device_specific_points() -> None:
    mapper = Mapper(POINTS, THRESHOLDS)
    (smoke,) = mapper.map("SMK-1", [Sample("SMK-1", "smoke", T0, flags=frozenset({"fire"}))], T0).status
    assert isinstance(smoke, ComponentStatus) and smoke.status & STATUS["fire"]
    assert smoke.description == "3F 走廊" and smoke.component_type == 42
    efm = mapper.map("EFM-7", [Sample(None, "ch1", T0, 320, "mA")], T0)
    (status,) = efm.status
    assert isinstance(status, ComponentStatus) and status.status & STATUS["fire"]  # raises: alarm
    (analog,) = efm.analog
    assert isinstance(analog, AnalogValue) and (analog.analog_type, analog.value) == (9, 3)  # 0.32 A at 0.1 A


def test_unmapped_samples_are_counted_not_guessed() -> None:
    mapper = Mapper(POINTS, THRESHOLDS)
    mapped = mapper.map("X", [Sample("X", "humidity", T0, 40, "%RH")], T0)
    assert (mapped.unmapped, mapped.analog, mapped.status) == (1, [], [])
    wrong_unit = mapper.map("HYD-1", [Sample("HYD-1", "pressure", T0, 3, "m")], T0)
    assert wrong_unit.unmapped == 1 and not wrong_unit.analog


def test_a_status_only_when_it_changes_or_the_newest_of_the_message() -> None:
    mapper = Mapper(POINTS, THRESHOLDS)
    samples = [Sample("HYD-1", "pressure", T0 + timedelta(minutes=i), 0.3, "MPa") for i in range(10)]
    mapped = mapper.map("HYD-1", samples, T0)
    assert len(mapped.analog) == 10 and len(mapped.status) == 2  # the first ever, and the newest


@given(
    st.lists(st.floats(0, 400, allow_nan=False), min_size=1, max_size=60),
    st.floats(0, 50, allow_nan=False),
)
def test_a_state_changes_only_beyond_the_limit_or_past_the_hysteresis(
    values: list[float], hyst: float
) -> None:
    limit = Limit(low=140.0, high=None, hysteresis=hyst)
    states = run(limit, values)
    before = False
    for value, now in zip(values, states, strict=True):
        if now and not before:
            assert value < 140.0
        if before and not now:
            assert value >= 140.0 + hyst
        if before == now:
            assert not (not before and value < 140.0) and not (before and value >= 140.0 + hyst)
        before = now
