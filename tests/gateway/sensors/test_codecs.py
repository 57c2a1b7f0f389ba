"""The built-in sensor payload codecs, through the codec registry as the sensor input finds them:
golden payloads (tests/data/sensors_*.json), bad ones with their reasons, and random input."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firegate.codecs.api import MessageCodec, Sample
from firegate.codecs.errors import CodecError
from firegate.codecs.registry import discover
from firegate.codecs.sensors.meokon import MeokonFrame, encode, parse

DATA = Path(__file__).resolve().parents[2] / "data"
MEOKON = json.loads((DATA / "sensors_meokon.json").read_text(encoding="utf-8"))
JSON = json.loads((DATA / "sensors_json.json").read_text(encoding="utf-8"))
REGISTRY = discover()


def codec(name: str, options: dict[str, Any] | None = None) -> MessageCodec:
    return REGISTRY.message_codec(name, options)


def test_both_are_registered_as_message_codecs() -> None:
    assert {"json", "meokon"} <= {n for n, c in REGISTRY.codecs.items() if c.kind == "message"}
    assert not REGISTRY.broken


@pytest.mark.parametrize("case", MEOKON["frames"], ids=lambda c: c["name"])
def test_meokon_golden_frames(case: dict[str, Any]) -> None:
    samples = codec("meokon").decode(case["hex"].encode(), "GIOT-GW/UL/x")
    assert len(samples) == case["samples"]
    assert {s.device for s in samples} == {case["device"]}
    assert {(s.point, s.unit) for s in samples} == {("pressure", case["unit"])}
    first, last = samples[0], samples[-1]
    assert (first.time, first.value) == (
        datetime.fromisoformat(case["first"]["time"]),
        case["first"]["value"],
    )
    assert (last.time, last.value) == (datetime.fromisoformat(case["last"]["time"]), case["last"]["value"])
    assert sorted(last.flags) == case["last"]["flags"]
    assert all(not s.flags for s in samples[:-1])  # the alarm bits are the newest sample's
    times = [s.time for s in samples]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_meokon_takes_the_binary_frame_too() -> None:
    case = MEOKON["frames"][0]
    as_hex = codec("meokon").decode(case["hex"].encode(), "t")
    assert codec("meokon").decode(bytes.fromhex(case["hex"]), "t") == as_hex


@pytest.mark.parametrize("case", MEOKON["bad"], ids=lambda c: c["name"])
def test_meokon_bad_payloads_name_their_reason(case: dict[str, Any]) -> None:
    payload = case.get("text", case.get("hex", "")).encode()
    with pytest.raises(CodecError) as e:
        codec("meokon").decode(payload, "t")
    assert e.value.reason == case["reason"]


def test_meokon_device_types_extend_by_option() -> None:
    case = next(c for c in MEOKON["bad"] if c["name"] == "unknown_type")
    options = {"device_types": {"77": {"point": "level", "unit": "m", "step": 0.01}}}
    (sample,) = codec("meokon", options).decode(case["hex"].encode(), "t")
    assert (sample.point, sample.value, sample.unit) == ("level", 0.01, "m")
    with pytest.raises(ValueError, match=r"device_types\.77"):
        codec("meokon", {"device_types": {"77": {"unit": "m"}}})


frames = st.builds(
    MeokonFrame,
    device=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=12, max_size=12),
    battery=st.integers(0, 255),
    rssi=st.integers(-128, 127),
    interval=st.integers(1, 9999),
    device_type=st.sampled_from([0, 1, 2]),
    alarm=st.integers(0, 255),
    low_limit=st.integers(-32768, 32767),
    high_limit=st.integers(-32768, 32767),
    current=st.integers(-32768, 32767),
    time=st.datetimes(datetime(2001, 1, 1), datetime(2100, 1, 1)).map(
        lambda d: d.replace(microsecond=0, tzinfo=UTC)
    ),
    records=st.lists(st.integers(-32768, 32767), max_size=40).map(tuple),
)


@given(frames)
def test_meokon_round_trip(frame: MeokonFrame) -> None:
    data = encode(frame)
    assert parse(data) == frame
    samples = codec("meokon").decode(data.hex().upper().encode(), "t")
    assert len(samples) == max(1, len(frame.records))
    assert samples[-1].time == frame.time
    if frame.records:
        assert samples[0].time == frame.time - timedelta(seconds=frame.interval * (len(frame.records) - 1))


@given(st.binary(max_size=300))
def test_meokon_random_bytes_are_a_codec_error_at_worst(data: bytes) -> None:
    for payload in (data, data.hex().encode(), b"\xa5\x5a" + data):
        with contextlib.suppress(CodecError):
            codec("meokon").decode(payload, "t")


def _expected(s: dict[str, Any]) -> Sample:
    when = datetime.fromisoformat(s["time"]) if s["time"] else None
    return Sample(s["device"], s["point"], when, s["value"], s["unit"], frozenset(s["flags"]))


@pytest.mark.parametrize("case", JSON["cases"], ids=lambda c: c["name"])
def test_json_golden_payloads(case: dict[str, Any]) -> None:
    samples = codec("json", case["options"]).decode(json.dumps(case["payload"]).encode(), case["topic"])
    assert samples == [_expected(s) for s in case["samples"]]


@pytest.mark.parametrize("case", JSON["bad"], ids=lambda c: c["name"])
def test_json_bad_payloads_name_their_reason(case: dict[str, Any]) -> None:
    payload = case["payload_text"] if "payload_text" in case else json.dumps(case["payload"])
    with pytest.raises(CodecError) as e:
        codec("json", JSON["bad_options"]).decode(payload.encode(), "t")
    assert e.value.reason == case["reason"]


def test_json_flags_cleared_are_a_sample_too() -> None:
    """An alarm that ends must reach the point: flags read and none set is a sample without flags."""
    options = {"flags": {"fire": "smoke"}, "flag_point": "smoke"}
    (sample,) = codec("json", options).decode(b'{"smoke": 0}', "t")
    assert (sample.point, sample.flags, sample.value) == ("smoke", frozenset(), None)


def test_json_options_are_checked_when_the_codec_is_made() -> None:
    with pytest.raises(ValueError, match="give points"):
        codec("json", {})
    with pytest.raises(ValueError, match="needs value"):
        codec("json", {"points": {"p": {"unit": "kPa"}}})


@given(st.binary(max_size=200))
def test_json_random_bytes_are_a_codec_error_at_worst(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        codec("json", JSON["bad_options"]).decode(data, "t")
