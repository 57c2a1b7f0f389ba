"""JetStream storage per event: what the stream FIRE holds per stored event, for the disk budget.

Frames as the simulator's UITDs send them (its default mix without heartbeats: fire, manual call
point, fault raised/cleared, system status, UITD status, analog values; plus plain status changes
set and cleared, weight 0.1, which the simulator does not send), with real statuses (bit 0 set, as
`firegate sim --real` sends them: `payloads`' status words), are decoded and run through
firegate's Normalizer (site registry lookups: a site id and a point location per component), and
the events it produces are published the way the gateway's sink does (JSON, subject
`fire.<kind>.<device>`, Nats-Msg-Id) through the Publisher into a private nats-server (free
loopback port, temporary directory). Repeated statuses produce no event (edge detection), as in
production. Then, in the same run:
  * mix: all the events; the stream's own byte count (`stream_bytes_per_event`, what
    `bus.max_bytes` is compared with) and the store directory's size on disk, per event;
  * per type: each event type alone (a fresh stream for each measurement);
  * storm: fault raised/cleared events from 10-object frames (a panel reporting many points at
    once): every event carries its whole frame as hex, so each is larger.
`overhead_ratio` is stored bytes / JSON payload bytes, the in-run baseline. Prints one JSON
object on its last line.

    python bench/store.py [--events 20000] [--devices 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from nats.aio.client import Client as NATS

from firegate.bus.events import Envelope
from firegate.bus.jetstream import StreamSettings, connect, ensure_stream
from firegate.bus.kvmemory import MemoryStatusMemory
from firegate.bus.publisher import Publisher, PublisherSettings, PublishOutcome, Record
from firegate.bus.server import EmbeddedNatsServer
from firegate.bus.spool import Spool
from firegate.codecs.gb26875 import (
    ComponentStatus,
    TimeTag,
    build_frame,
    decode_data_unit,
    encode_data_unit,
    parse_frame,
)
from firegate.codecs.gb26875.tables import FAULT_BIT, NORMAL_BIT
from firegate.ingest.normalize import Normalizer
from firegate.sim import payloads
from firegate.sim.load import DEFAULT_MIX

FIRST_ADDRESS = 100_000
# plain status changes, which the simulator does not send: disabled (屏蔽), started + feedback (启动,
# 反馈: a linkage device), supervisory (监管); each set, then cleared
CHANGE_BITS = (1 << 3, 1 << 5 | 1 << 6, 1 << 4)
MIX = {**{k: w for k, w in DEFAULT_MIX.items() if k != "heartbeat"}, "change": 0.1}
LOCATIONS = ("A座1层大厅东侧", "A座2层走廊西端", "B座3层办公室302", "地下1层泵房", "屋顶水箱间")


class Uitd:
    """The state a simulated UITD keeps between frames: which component is faulty."""

    def __init__(self, address: int) -> None:
        self.address = address
        self.fault = -1
        self.changed = -1  # the component with a plain status bit set (disabled, started, ...)
        self.serial = 0

    def unit(self, kind: str, rng: random.Random, tag: TimeTag) -> bytes:
        if kind in ("fire", "manual"):
            index = rng.choice(payloads.DETECTORS if kind == "fire" else payloads.CALL_POINTS)
            return payloads.component_unit(index, payloads.component_status(index, index, self.fault), tag)
        if kind == "fault":
            if self.fault < 0:
                self.fault = rng.randrange(len(payloads.BUILDING))
                return payloads.component_unit(
                    self.fault, payloads.component_status(self.fault, -1, self.fault), tag
                )
            index, self.fault = self.fault, -1
            return payloads.component_unit(index, payloads.component_status(index, -1, -1), tag)
        if kind == "change":
            if self.changed < 0:
                index = self.changed = rng.randrange(len(payloads.BUILDING))
                return payloads.component_unit(index, NORMAL_BIT | rng.choice(CHANGE_BITS), tag)
            index, self.changed = self.changed, -1
            return payloads.component_unit(index, NORMAL_BIT, tag)
        if kind == "status":
            return payloads.system_unit(payloads.system_status(-1, self.fault), tag)
        if kind == "uitd":
            return payloads.uitd_unit(NORMAL_BIT, tag)
        if kind == "analog":
            return payloads.analog_unit(rng, tag)
        raise ValueError(kind)

    def frame(self, unit: bytes, tag: TimeTag) -> bytes:
        self.serial = (self.serial + 1) & 0xFFFF
        return build_frame(
            serial=self.serial, command=2, source=self.address, destination=0, data=unit, time=tag
        )


class Clock:
    """Simulated time, one second per frame: the frames of a day, without colliding time tags
    (an event's id digests its object's bytes, time tag included)."""

    def __init__(self) -> None:
        self.now = datetime.now().replace(microsecond=0)

    def tick(self) -> TimeTag:
        self.now += timedelta(seconds=1)
        return TimeTag.from_datetime(self.now)


def storm_unit(status: int, tag: TimeTag, count: int = 10) -> bytes:
    """One frame reporting `count` components of the building (a panel after a reset)."""
    objs = []
    for i in range(count):
        c = payloads.BUILDING[i % len(payloads.BUILDING)]
        address = c.address + (i // len(payloads.BUILDING) << 8)
        objs.append(ComponentStatus.make(*c.system, c.type, address, status, c.description, tag))
    return encode_data_unit(2, objs)


def normalizer() -> Normalizer:
    return Normalizer(
        MemoryStatusMemory(),
        site_of=lambda device: f"site-{int(device) % 10_000:05d}",
        location_of=lambda device, st, sa, ca: LOCATIONS[ca % len(LOCATIONS)],
    )


async def normalize(norm: Normalizer, raw: bytes) -> list[Envelope]:
    frame = parse_frame(raw)
    unit = decode_data_unit(frame.data)
    assert unit is not None
    out = await norm.normalize(str(frame.source), unit, frame_time=frame.time.value, raw=frame.raw)
    await norm.memory.put_many(out.states)  # the gateway commits once the events are stored
    return out.events


async def mixed_events(count: int, devices: int, rng: random.Random) -> tuple[list[Envelope], int]:
    kinds, weights = list(MIX), list(MIX.values())
    uitds = [Uitd(FIRST_ADDRESS + i) for i in range(devices)]
    norm = normalizer()
    out: list[Envelope] = []
    frames = 0
    clock = Clock()
    while len(out) < count:
        uitd = rng.choice(uitds)
        kind = rng.choices(kinds, weights)[0]
        tag = clock.tick()
        out.extend(await normalize(norm, uitd.frame(uitd.unit(kind, rng, tag), tag)))
        frames += 1
    return out[:count], frames


async def storm_events(count: int, devices: int, rng: random.Random) -> list[Envelope]:
    norm = normalizer()
    clock = Clock()
    out: list[Envelope] = []
    fault = NORMAL_BIT | FAULT_BIT
    for i in range(count):
        uitd = Uitd(FIRST_ADDRESS + i % devices)
        status = fault if (i // devices) % 2 == 0 else NORMAL_BIT  # raised, then cleared
        tag = clock.tick()
        out.extend(await normalize(norm, uitd.frame(storm_unit(status, tag), tag)))
        if len(out) >= count:
            break
    return out[:count]


def records(events: list[Envelope]) -> list[Record]:
    """As JetStreamSink builds them."""
    return [Record(e.subject, e.id, e.model_dump_json().encode(), e.kind == "alarm") for e in events]


def disk_bytes(store: Path) -> int:
    """Allocated bytes of the stream FIRE's files (message blocks, indexes, metadata)."""
    total = 0
    for d in store.rglob("streams/FIRE"):
        for f in d.rglob("*"):
            if f.is_file():
                total += f.stat().st_blocks * 512
    return total


async def store(
    nc: NATS, pub: Publisher, recs: list[Record], store_dir: Path | None = None
) -> dict[str, float]:
    js = nc.jetstream(timeout=10)
    await js.delete_stream("FIRE")  # a fresh stream: a purge keeps the duplicate window's ids
    await ensure_stream(js, StreamSettings())
    outcomes: Counter[PublishOutcome] = Counter()
    for i in range(0, len(recs), 200):
        chunk = recs[i : i + 200]
        for result in await asyncio.gather(*(pub.publish_many([r]) for r in chunk)):
            outcomes.update(result)
    state = (await js.stream_info("FIRE")).state
    # a duplicate is a retried publish whose first ack came late: stored once, fine
    if outcomes[PublishOutcome.SPOOLED] or state.messages != len(recs):
        raise SystemExit(f"{state.messages} of {len(recs)} events in the stream: {dict(outcomes)}")
    payload = sum(len(r.payload) for r in recs)
    out = {
        "events": state.messages,
        "json_bytes_per_event": round(payload / len(recs)),
        "stream_bytes_per_event": round(state.bytes / state.messages),
        "overhead_ratio": round(state.bytes / payload, 3),
    }
    if store_dir is not None:
        out["disk_bytes_per_event"] = round(disk_bytes(store_dir) / state.messages)
    return out


async def main(count: int, devices: int) -> dict[str, object]:
    load_start = os.getloadavg()[0]
    rng = random.Random(1)
    mixed, frames = await mixed_events(count, devices, rng)
    storm = await storm_events(count, devices, rng)
    by_type: dict[str, list[Envelope]] = defaultdict(list)
    for e in mixed:
        by_type[e.type].append(e)
    result: dict[str, object] = {"frame_mix": MIX, "frames": frames, "events": len(mixed)}
    with tempfile.TemporaryDirectory(prefix="firegate-bench-") as tmp:
        nats_dir = Path(tmp) / "nats"
        async with EmbeddedNatsServer(nats_dir, port=0, max_file=4 * 1024**3) as server:
            nc = await connect([server.url], "bench")
            try:
                await ensure_stream(nc.jetstream(timeout=10), StreamSettings())
                async with (
                    Spool(Path(tmp) / "spool") as spool,
                    Publisher(nc, spool, PublisherSettings()) as pub,
                ):
                    result["types"] = {
                        t: {"share": round(len(es) / len(mixed), 3), **await store(nc, pub, records(es))}
                        for t, es in sorted(by_type.items(), key=lambda kv: -len(kv[1]))
                    }
                    result["storm_10_objects"] = await store(nc, pub, records(storm))
                    result["mix"] = await store(nc, pub, records(mixed), nats_dir)  # last: on disk now
            finally:
                await nc.close()
    result["loadavg"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--devices", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(json.dumps(asyncio.run(main(args.events, args.devices))))
