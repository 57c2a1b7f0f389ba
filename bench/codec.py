"""Codec throughput on one core. Prints one JSON object on its last line.

    python bench/codec.py [--seconds 1.0]

`type2_single_parse_fps` is a single-object component-status frame fully decoded: header, checksum,
data unit, status flags, GB18030 description and both time tags. `struct_baseline_fps` is a minimal
hand-written struct parse of the same frame (all fields, checksum included), in the same run, and
`ratio` the first over the second. Further figures, each with its same-run baseline:

* `struct_tuned_baseline_fps` / `ratio_tuned`: the hand parse with the codec's two tricks that are
  not `struct` (the GB18030 decoder looked up once, the checksum by Adler-32): the fair ceiling.
* `construct_reference_fps` / `vs_construct`: the same full decode by the Construct definitions
  interpreted (firegate/codecs/gb26875/reference.py, the oracle the fast path is tested against).
* `type2_varied_parse_fps` / `varied_ratio`: 4,096 different type-2 frames in turn (descriptions,
  addresses, header and object times all differ, beyond the time-tag cache) against the one frame
  repeated: what caches contribute.
* `answer_fps` / `answer_ratio`: building the confirm for a frame (`answer()`, time tag of now)
  against a hand `struct` pack of the same bytes.
* `gateway_path_fps` / `gateway_path_ratio`: the codec's whole share of a frame in the gateway
  (firegate/gateway/session.py): `Framer.feed` on 1,460-byte chunks of the varied frames, the data
  unit, the fire check, `answer()`, against `type2_varied_parse_fps`.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import codecs
import zlib

from firegate.codecs.gb26875 import (
    ComponentStatus,
    DataUnit,
    Frame,
    Framer,
    SystemStatus,
    TimeTag,
    UitdStatus,
    answer,
    build_frame,
    encode_data_unit,
    parse_frame,
)
from firegate.codecs.gb26875.reference import decode_data_unit_reference, parse_frame_reference

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


def construct_decode(raw: bytes) -> object:
    f = parse_frame_reference(raw)
    unit = decode_data_unit_reference(f.data)
    if unit is not None:
        for obj in unit.objects:
            if isinstance(obj, ComponentStatus | SystemStatus | UitdStatus):
                obj.status_flags  # noqa: B018 - part of "fully decoded"
    return f


def varied_type2(n: int) -> list[bytes]:
    """`n` single-object type-2 frames that share no description, address or time tag."""
    out = []
    for i in range(n):
        when = TimeTag.from_datetime(datetime(2026, 1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60))
        obj = ComponentStatus.make(
            1, i % 256, 42, 0x0001_0000 + i, 0b11, f"{i}号楼{i % 17}层感烟探测器", when
        )
        sent = TimeTag.from_datetime(datetime(2025, 1 + i % 12, 1 + i % 28, i % 24, (i * 11) % 60, i % 60))
        out.append(
            build_frame(
                serial=i,
                command=2,
                source=900_000 + i,
                destination=88888,
                data=encode_data_unit(2, [obj]),
                time=sent,
            )
        )
    return out


def gateway_path(chunks: list[bytes], center: bytes) -> int:
    """What session.py asks of the codec per frame: frames, data unit, fire check, confirm."""
    framer = Framer()
    confirms = 0
    for chunk in chunks:
        for item in framer.feed(chunk):
            if isinstance(item, Frame):
                unit = item.data_unit
                fire = unit is not None and any(
                    isinstance(obj, ComponentStatus | SystemStatus | UitdStatus) and obj.status & 0b10
                    for obj in unit.objects
                )
                if item.is_heartbeat or fire or unit is not None:
                    answer(item, 3, center_address=center)
                    confirms += 1
    return confirms


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


_gb18030 = codecs.getdecoder("gb18030")


def struct_tuned_baseline(raw: bytes) -> tuple[object, ...]:
    start, serial, major, minor, tag, src, dst, length, cmd = _HEAD.unpack_from(raw, 0)
    ok = (zlib.adler32(raw[2 : 27 + length]) - 1) & 0xFF == raw[27 + length]  # sum for <= 256 bytes
    ok = ok and raw[-2:] == b"##" and start == b"@@"
    type_flag, count, st, sa, ct, ca, status, desc, otag = _OBJ.unpack_from(raw, 27)
    flags = tuple(n for i, n in enumerate(_NAMES) if status >> i & 1)
    text = _gb18030(desc.split(b"\x00", 1)[0], "replace")[0].rstrip(" ")
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


_CONFIRM = struct.Struct("<2sHBB6s6s6sHB")


def answer_baseline(f: Frame, center: bytes) -> bytes:
    now = datetime.now()
    tag = bytes((now.second, now.minute, now.hour, now.day, now.month, now.year - 2000))
    head = _CONFIRM.pack(b"@@", f.serial, *f.version, tag, center, f.source_raw, 0, 3)
    return head + bytes(((sum(head) - 0x80) & 0xFF,)) + b"##"


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
    fig: dict[str, float] = {}
    single = CORPUS["type2_single"]
    assert struct_baseline(single)[16] == "1号楼大厅感烟探测器"  # the baseline decodes what we decode
    fig["type2_single_parse_fps"] = rate(lambda: full_decode(single), s)
    fig["struct_baseline_fps"] = rate(lambda: struct_baseline(single), s)
    fig["ratio"] = fig["type2_single_parse_fps"] / fig["struct_baseline_fps"]
    assert struct_tuned_baseline(single) == struct_baseline(single)
    fig["struct_tuned_baseline_fps"] = rate(lambda: struct_tuned_baseline(single), s)
    fig["ratio_tuned"] = fig["type2_single_parse_fps"] / fig["struct_tuned_baseline_fps"]
    assert parse_frame_reference(single) == parse_frame(single)
    fig["construct_reference_fps"] = rate(lambda: construct_decode(single), s)
    fig["vs_construct"] = fig["type2_single_parse_fps"] / fig["construct_reference_fps"]
    varied = varied_type2(4096)
    turn = iter(varied * 10**4)
    fig["type2_varied_parse_fps"] = rate(lambda: full_decode(next(turn)), s)
    fig["varied_ratio"] = fig["type2_varied_parse_fps"] / fig["type2_single_parse_fps"]
    center = (88888).to_bytes(6, "little")
    parsed = parse_frame(single)
    assert answer(parsed, 3, center_address=center)[12:] == answer_baseline(parsed, center)[12:]
    fig["answer_fps"] = rate(lambda: answer(parsed, 3, center_address=center), s)
    fig["answer_baseline_fps"] = rate(lambda: answer_baseline(parsed, center), s)
    fig["answer_ratio"] = fig["answer_fps"] / fig["answer_baseline_fps"]
    wire = b"".join(varied)
    chunks = [wire[i : i + 1460] for i in range(0, len(wire), 1460)]
    assert gateway_path(chunks, center) == len(varied)
    fig["gateway_path_fps"] = rate(lambda: gateway_path(chunks, center), s) * len(varied)
    fig["gateway_path_ratio"] = fig["gateway_path_fps"] / fig["type2_varied_parse_fps"]
    for name, raw in CORPUS.items():
        if f"{name}_parse_fps" not in fig:  # type2_single: measured once, the ratios use it
            fig[f"{name}_parse_fps"] = rate(partial(full_decode, raw), s)
        unit = parse_frame(raw).data_unit

        def build(unit: DataUnit | None = unit) -> bytes:
            return frame(encode_data_unit(unit.type, list(unit.objects)) if unit else b"")

        fig[f"{name}_build_fps"] = rate(build, s)
    stream = b"".join(CORPUS.values()) * 20
    framer = Framer()
    n_frames = len(CORPUS) * 20

    def framed() -> None:
        for i in range(0, len(stream), 1460):  # TCP-segment-sized chunks
            framer.feed(stream[i : i + 1460])

    fig["framer_mixed_fps"] = rate(framed, s) * n_frames
    fig["loadavg_1m"] = os.getloadavg()[0]  # 2 shared cores: other work skews every figure
    results: dict[str, float | str] = {
        key: round(value, 3) if "ratio" in key or key.startswith(("vs_", "loadavg")) else round(value)
        for key, value in fig.items()
    }
    results["python"] = sys.version.split()[0]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
