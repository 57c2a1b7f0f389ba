"""Golden and vendor frames against the GB/T 26875.3 codec.

The data comes from tests/data/make_golden.py, which builds every frame with
``struct`` from the spec (/work/shared/spec/gb26875-3.md) and never touches
the codec. Each case's ``expect`` is a subset of the decoded-frame JSON
(the decoded-frame JSON contract): only the keys given are checked. Markers:
``{"$absent": true}`` means the key must be missing, ``{"$present": true}``
that it must be there with any value.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = json.loads((DATA / "gb26875_golden.json").read_text(encoding="utf-8"))
VENDOR = json.loads((DATA / "gb26875_vendor.json").read_text(encoding="utf-8"))
ALL = [pytest.param(c, id=f"golden:{c['name']}") for c in GOLDEN] + [
    pytest.param(c, id=f"vendor:{c['name']}") for c in VENDOR
]
DECODABLE = [p for p in ALL if "expect_error" not in p.values[0]]

ABSENT = {"$absent": True}
PRESENT = {"$present": True}
HEX_KEYS = {"raw", "time_raw"}

# Spec §2 Table 3 and §1 Table 2: what the golden file must cover.
UPSTREAM_TYPES = {1, 2, 3, 4, 5, 6, 7, 8, 21, 24, 25, 26, 28}
DOWNSTREAM_TYPES = {61, 62, 63, 64, 65, 66, 67, 68, 81, 84, 85, 86, 88, 89, 90, 91}
COMMAND_DIRECTIONS = {1: {"down"}, 2: {"up"}, 3: {"up", "down"}, 4: {"down"}, 5: {"up"}, 6: {"up", "down"}}


@pytest.fixture(scope="module")
def codec() -> ModuleType:
    return importlib.import_module("firegate.codecs.gb26875")


def assert_subset(actual: Any, expected: Any, path: str = "$") -> None:
    """Recursive subset match: dict keys given, list length and items, exact scalars."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, want in expected.items():
            where = f"{path}.{key}"
            if want == ABSENT:
                assert key not in actual, f"{where}: should be absent, got {actual[key]!r}"
                continue
            assert key in actual, f"{where}: missing (have {sorted(actual)})"
            if want == PRESENT:
                continue
            if key in HEX_KEYS and isinstance(want, str) and isinstance(actual[key], str):
                assert actual[key].lower() == want.lower(), f"{where}: {actual[key]!r} != {want!r}"
                continue
            assert_subset(actual[key], want, where)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{path}: {len(actual)} items, expected {len(expected)}"
        for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_subset(got, want, f"{path}[{i}]")
    elif isinstance(expected, bool) or expected is None:
        assert actual is expected, f"{path}: {actual!r} is not {expected!r}"
    elif isinstance(expected, float) or (isinstance(expected, int) and isinstance(actual, float)):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), f"{path}: {actual!r}"
        close = math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
        assert close, f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, int):
        assert isinstance(actual, int) and not isinstance(actual, bool), f"{path}: {actual!r} is not an int"
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


# ---------------------------------------------------------------- codec-free checks of the data


def test_data_files_are_up_to_date() -> None:
    """The committed JSON equals what make_golden.py generates now."""
    spec = importlib.util.spec_from_file_location("make_golden", DATA / "make_golden.py")
    assert spec is not None and spec.loader is not None
    make_golden = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_golden)
    golden_text = (DATA / "gb26875_golden.json").read_text("utf-8")
    vendor_text = (DATA / "gb26875_vendor.json").read_text("utf-8")
    assert make_golden.dumps(make_golden.golden_cases()) == golden_text
    assert make_golden.dumps(make_golden.all_vendor_cases()) == vendor_text


@pytest.mark.parametrize("case", ALL)
def test_frame_bytes_are_well_formed(case: dict[str, Any]) -> None:
    """Length and checksum of the data itself (spec §1), independent of the codec."""
    raw = bytes.fromhex(case["hex"])
    length = int.from_bytes(raw[24:26], "little")
    assert raw[:2] == b"@@" and raw[-2:] == b"##"
    assert len(raw) == 30 + length
    checksum_ok = sum(raw[2 : 27 + length]) % 256 == raw[27 + length]
    assert checksum_ok is ("expect_error" not in case)


def test_golden_covers_every_type_and_command() -> None:
    seen_types: dict[str, set[int]] = {"up": set(), "down": set()}
    seen_commands: dict[int, set[str]] = {}
    for case in GOLDEN:
        expect = case["expect"]
        seen_commands.setdefault(expect["command"], set()).add(case["direction"])
        if expect["length"] > 0:
            seen_types[case["direction"]].add(expect["type"])
    assert not UPSTREAM_TYPES - seen_types["up"], sorted(UPSTREAM_TYPES - seen_types["up"])
    assert not DOWNSTREAM_TYPES - seen_types["down"], sorted(DOWNSTREAM_TYPES - seen_types["down"])
    assert any(128 <= t <= 254 for t in seen_types["up"] | seen_types["down"]), "no user-defined type"
    for command, directions in COMMAND_DIRECTIONS.items():
        assert directions <= seen_commands.get(command, set()), (command, seen_commands.get(command))


def test_golden_covers_the_quirks() -> None:
    by_name = {c["name"]: c for c in GOLDEN}
    frames = {name: bytes.fromhex(c["hex"]) for name, c in by_name.items()}
    assert any(f.endswith(b"\x23\x23\x23") for f in frames.values()), "checksum 0x23"
    assert any(f[2:4] == b"@@" for f in frames.values()), "serial 0x4040"
    assert any(b"@@" in f[12:24] for f in frames.values()), "address bytes 40 40"
    assert any(f[4:6] == b"\x10\x00" for f in frames.values()), "version 10 00"
    assert any(f[6:12] == bytes(6) for f in frames.values()), "all-zero time tag"
    assert any(f[26] == 2 and f[24:26] == b"\x01\x00" and f[27] == 0x16 for f in frames.values())
    assert any(f[26] == 2 and f[24:26] == b"\x00\x00" for f in frames.values())


# ---------------------------------------------------------------- the codec against the data


@pytest.mark.parametrize("case", DECODABLE)
def test_decoded_json_matches(codec: ModuleType, case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["hex"])
    decoded = codec.frame_to_json(codec.parse_frame(raw))
    as_json = json.loads(json.dumps(decoded, ensure_ascii=False))  # must be plain JSON
    assert_subset(as_json, case["expect"])


@pytest.mark.parametrize("case", DECODABLE)
def test_build_frame_bytes_roundtrip(codec: ModuleType, case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["hex"])
    frame = codec.parse_frame(raw)
    assert frame.raw == raw
    assert codec.rebuild(frame) == raw
    # build_frame from the header fields and the data unit bytes, when the header time is a real date
    expect = case["expect"]
    if expect.get("time") is not None:
        built = codec.build_frame(
            serial=frame.serial,
            command=frame.command,
            source=frame.source,
            destination=frame.destination,
            data=frame.data,
            time=datetime.fromisoformat(expect["time"]),
            version=tuple(frame.version),
        )
        assert built == raw


@pytest.mark.parametrize("case", [p for p in ALL if "expect_error" in p.values[0]])
def test_bad_frames_are_refused_or_flagged(codec: ModuleType, case: dict[str, Any]) -> None:
    """A bad checksum raises the named FrameError subclass (or, at least, is flagged)."""
    raw = bytes.fromhex(case["hex"])
    error = getattr(codec, case["expect_error"])
    try:
        frame = codec.parse_frame(raw)
    except error:
        return
    assert frame.checksum_ok is False
