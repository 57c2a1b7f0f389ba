"""Codec throughput on one core. Prints one JSON object on its last line.

    python bench/codec.py [--seconds 1.0]

`type2_single_parse_fps` is a single-object component-status frame fully decoded: header, checksum,
data unit, status flags, GB18030 description and both time tags. `struct_baseline_fps` is a minimal
hand-written struct parse of the same frame (all fields, checksum included), in the same run.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firegate.codecs.gb26875 import (
    ComponentStatus,
    Framer,
    SystemStatus,
    TimeTag,
    UitdStatus,
    build_frame,
    encode_data_unit,
    parse_frame,
)

WHEN = TimeTag.from_datetime(datetime(2026, 11, 23, 10, 30, 5))


def component(i: int) -> ComponentStatus:
    return ComponentStatus.make(1, 1, 42, 0x0001_0000 + i, 0b11, f"{i}号楼大厅感烟探测器", WHEN)


def frame(data: bytes, serial: int = 1) -> bytes:
    return build_frame(serial=serial, command=2, source=889, destination=88888, data=data, time=WHEN)


CORPUS = {
    "heartbeat": frame(b""),
    "type2_single": frame(encode_data_unit(2, [component(1)])),
    "type2_ten": frame(encode_data_unit(2, [component(i) for i in range(10)])),
    "type1": frame(encode_data_unit(1, [SystemStatus(1, 1, 0b101, WHEN)])),
    "type21": frame(encode_data_unit(21, [UitdStatus(0b1, WHEN)])),
}


def full_decode(raw: bytes) -> object:
    f = parse_frame(raw)
    unit = f.data_unit
    if unit is not None:
        for obj in unit.objects:
            if isinstance(obj, ComponentStatus | SystemStatus | UitdStatus):
                obj.status_flags  # noqa: B018 - part of "fully decoded"
    return f


_HEAD = struct.Struct("<2sHBB6s6s6sHB")
_OBJ = struct.Struct("<BBBBBIH31s6s")
_NAMES = ("normal", "fire", "fault", "disabled", "supervisory", "started", "feedback", "delay", "power_fault")


def struct_baseline(raw: bytes) -> tuple[object, ...]:
    start, serial, major, minor, tag, src, dst, length, cmd = _HEAD.unpack_from(raw, 0)
    ok = sum(raw[2 : 27 + length]) & 0xFF == raw[27 + length] and raw[-2:] == b"##" and start == b"@@"
    type_flag, count, st, sa, ct, ca, status, desc, otag = _OBJ.unpack_from(raw, 27)
    flags = tuple(n for i, n in enumerate(_NAMES) if status >> i & 1)
    text = desc.split(b"\x00", 1)[0].decode("gb18030", "replace").rstrip(" ")
    t1 = datetime(2000 + tag[5], tag[4], tag[3], tag[2], tag[1], tag[0])
    t2 = datetime(2000 + otag[5], otag[4], otag[3], otag[2], otag[1], otag[0])
    return (
        serial,
        major,
        minor,
        t1,
        int.from_bytes(src, "little"),
        int.from_bytes(dst, "little"),
        cmd,
        ok,
        type_flag,
        count,
        st,
        sa,
        ct,
        ca,
        status,
        flags,
        text,
        t2,
    )


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, batch = 0, 200
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        n += batch
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    args = parser.parse_args()
    s = args.seconds
    results: dict[str, float | str] = {}
    single = CORPUS["type2_single"]
    assert struct_baseline(single)[16] == "1号楼大厅感烟探测器"  # the baseline decodes what we decode
    results["type2_single_parse_fps"] = rate(lambda: full_decode(single), s)
    results["struct_baseline_fps"] = rate(lambda: struct_baseline(single), s)
    results["ratio"] = results["type2_single_parse_fps"] / results["struct_baseline_fps"]
    for name, raw in CORPUS.items():
        results[f"{name}_parse_fps"] = rate(lambda raw=raw: full_decode(raw), s)
        unit = parse_frame(raw).data_unit
        objs = list(unit.objects) if unit else []

        def build(unit: object = unit, objs: list[object] = objs) -> bytes:
            return frame(encode_data_unit(unit.type, objs) if unit else b"")  # type: ignore[attr-defined,arg-type]

        results[f"{name}_build_fps"] = rate(build, s)
    stream = b"".join(CORPUS.values()) * 20
    framer = Framer()
    n_frames = len(CORPUS) * 20

    def framed() -> None:
        for i in range(0, len(stream), 1460):  # TCP-segment-sized chunks
            framer.feed(stream[i : i + 1460])

    results["framer_mixed_fps"] = rate(framed, s) * n_frames
    results["python"] = sys.version.split()[0]
    for key, value in results.items():
        if isinstance(value, float):
            results[key] = round(value, 3) if key == "ratio" else round(value)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
