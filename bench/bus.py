"""Publish throughput and latency of firegate's Publisher against the bare nats-py ceiling.

Starts a private nats-server (free loopback port, temporary directory), then
in the same run measures:
  - ceiling: a bare nats-py loop, ``js.publish_async`` with Nats-Msg-Id, all
    acks awaited (pipelined, up to its default 4,000 in flight);
  - publisher: firegate's ``Publisher.publish`` called by many concurrent
    workers (like gateway sessions), each call returning only after its ack;
  - publish_many: the same events as 10-event frames;
  - latency: ``Publisher.publish`` paced at 2,000 events/s, p50/p99.
Each throughput figure is the best of a few rounds. The last line printed is
one JSON object.

A publish that JetStream did not acknowledge within the publisher's retry
window (3 s) goes to the local spool and returns; that is not throughput. A
round in which anything was spooled is therefore left out of the best figure
and counted in ``*_rounds_spooled`` (and that measurement is not run again:
it would only spool more); a figure with no clean round is null,
``throughput_valid`` is false, a warning goes to stderr and the exit status
is 1. Likewise ``latency_valid`` is false when the paced run spooled.
``loadavg`` is the machine's 1-minute load at the start and the end.

    python bench/bus.py [--count 30000] [--rounds 3] [--workers 1000] [--sync-always]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext

from firegate.bus.jetstream import StreamSettings, connect, ensure_stream
from firegate.bus.publisher import Publisher, PublisherSettings, PublishOutcome, Record
from firegate.bus.server import EmbeddedNatsServer
from firegate.bus.spool import Spool

PAYLOAD_SIZE = 600


def payload(i: int) -> bytes:
    head = json.dumps({"kind": "status", "device": str(74565 + i % 1000), "seq": i}).encode()
    return head + b" " * (PAYLOAD_SIZE - len(head))


def events(tag: str, count: int) -> list[Record]:
    return [Record(f"fire.status.{74565 + i % 1000}", f"{tag}-{i}", payload(i)) for i in range(count)]


async def ceiling(js: JetStreamContext, batch: list[Record]) -> float:
    start = time.perf_counter()
    futures = [await js.publish_async(r.subject, r.payload, headers={"Nats-Msg-Id": r.msg_id}) for r in batch]
    acks = await asyncio.gather(*futures)
    elapsed = time.perf_counter() - start
    assert all(not a.duplicate for a in acks)
    return len(batch) / elapsed


Outcomes = Counter[PublishOutcome]


async def through_publisher(pub: Publisher, batch: list[Record], workers: int) -> tuple[float, Outcomes]:
    it = iter(batch)
    outcomes: Outcomes = Counter()

    async def worker() -> None:
        for r in it:
            outcomes[await pub.publish(r.subject, r.payload, r.msg_id, fire=r.fire)] += 1

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
    return len(batch) / (time.perf_counter() - start), outcomes


async def through_publish_many(
    pub: Publisher, batch: list[Record], workers: int, frame: int = 10
) -> tuple[float, Outcomes]:
    frames = iter([batch[i : i + frame] for i in range(0, len(batch), frame)])
    outcomes: Outcomes = Counter()

    async def worker() -> None:
        for f in frames:
            outcomes.update(await pub.publish_many(f))

    start = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(max(1, workers // frame)):
            tg.create_task(worker())
    return len(batch) / (time.perf_counter() - start), outcomes


class Best:
    """The best rate over the rounds in which nothing was spooled."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rate: float | None = None
        self.rounds_spooled = 0
        self.spooled = 0

    def add(self, rate: float, outcomes: Outcomes) -> None:
        spooled = outcomes[PublishOutcome.SPOOLED]
        if spooled:
            self.rounds_spooled += 1
            self.spooled += spooled
            print(
                f"WARNING: {self.name}: {spooled} of {outcomes.total()} events spooled (not stored by"
                f" JetStream within the retry window); this round's {rate:.0f}/s is not throughput",
                file=sys.stderr,
            )
        elif self.rate is None or rate > self.rate:
            self.rate = rate

    @property
    def stopped(self) -> bool:
        return self.rounds_spooled > 0

    def per_s(self) -> int | None:
        return None if self.rate is None else round(self.rate)


async def paced_latency(pub: Publisher, rate: float, seconds: float) -> tuple[float, float, int, int]:
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    batch = events("paced", count)
    latencies: list[float] = []
    spooled = 0

    async def one(r: Record) -> None:
        nonlocal spooled
        t = time.perf_counter()
        if await pub.publish(r.subject, r.payload, r.msg_id, fire=False) == PublishOutcome.SPOOLED:
            spooled += 1
        latencies.append(time.perf_counter() - t)

    start = loop.time()
    async with asyncio.TaskGroup() as tg:
        for i, r in enumerate(batch):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tg.create_task(one(r))
    q = statistics.quantiles(latencies, n=100)
    if spooled:
        print(f"WARNING: paced latency: {spooled} of {count} events spooled", file=sys.stderr)
    return q[49] * 1000, q[98] * 1000, len(latencies), spooled


async def purge(nc: NATS) -> None:
    await nc.jetstream(timeout=10).purge_stream("FIRE")


async def main(count: int, rounds: int, workers: int, sync_always: bool) -> dict[str, object]:
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="firegate-bench-") as tmp:
        async with EmbeddedNatsServer(
            Path(tmp) / "nats", port=0, max_file=4 * 1024**3, sync_always=sync_always
        ) as server:
            nc = await connect([server.url], "bench")
            try:
                js = nc.jetstream(timeout=10)
                await ensure_stream(js, StreamSettings())
                async with (
                    Spool(Path(tmp) / "spool") as spool,
                    Publisher(nc, spool, PublisherSettings()) as pub,
                ):
                    await ceiling(js, events("warm-c", 2000))
                    await through_publisher(pub, events("warm-p", 2000), workers)
                    best_c = 0.0
                    best_p, best_m = Best("publisher"), Best("publish_many")
                    for n in range(rounds):
                        await purge(nc)
                        best_c = max(best_c, await ceiling(js, events(f"c{n}", count)))
                        if not best_p.stopped:
                            await purge(nc)
                            best_p.add(*await through_publisher(pub, events(f"p{n}", count), workers))
                        if not best_m.stopped:
                            await purge(nc)
                            best_m.add(*await through_publish_many(pub, events(f"m{n}", count), workers))
                    await purge(nc)
                    p50, p99, paced, paced_spooled = await paced_latency(pub, 2000.0, 5.0)
                    spooled = spool.pending_records
            finally:
                await nc.close()
    return {
        "events": count,
        "payload_bytes": PAYLOAD_SIZE,
        "rounds": rounds,
        "workers": workers,
        "sync_always": sync_always,
        "ceiling_publish_async_per_s": round(best_c),
        "publisher_per_s": best_p.per_s(),
        "publish_many_per_s": best_m.per_s(),
        "ratio": None if best_p.rate is None else round(best_p.rate / best_c, 3),
        "publisher_rounds_spooled": best_p.rounds_spooled,
        "publish_many_rounds_spooled": best_m.rounds_spooled,
        "throughput_valid": best_p.rounds_spooled == 0 and best_m.rounds_spooled == 0,
        "paced_rate_per_s": 2000,
        "paced_events": paced,
        "paced_spooled": paced_spooled,
        "latency_p50_ms": round(p50, 3),
        "latency_p99_ms": round(p99, 3),
        "latency_valid": paced_spooled == 0,
        "spooled": spooled,
        "cpus": os.cpu_count(),
        "loadavg": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--sync-always", action="store_true", help="nats-server fsyncs every write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the publisher's line per spooled event: counted here
    result = asyncio.run(main(args.count, args.rounds, args.workers, args.sync_always))
    print(json.dumps(result))
    if result["spooled"]:
        print(
            f"WARNING: {result['spooled']} events were spooled: JetStream did not keep up at this"
            " concurrency; spooled rounds are not counted as throughput (see *_rounds_spooled)",
            file=sys.stderr,
        )
        sys.exit(1)
