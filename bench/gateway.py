"""The whole gateway under simulated UITDs. Prints one JSON object on its last line.

    python bench/gateway.py [--duration 10] [--rate 2000] [--quick] [--no-sync]

Runs the real `firegate run` (embedded nats-server, fsync before ack, the production default;
`--no-sync`: no fsync per write, as a NATS cluster that relies on its replicas runs) in
its own process, and drives it with firegate's simulator from this one, over loopback:
  * 10,000 devices at --rate frames/s (the simulator's mix, with real alarms as `firegate sim
    --real` sends them, so that the lifecycle's work is measured as before; every device also
    heartbeats every 30 s): p50/p99 frame-to-confirm, and gateway RSS per connection (peak over
    the run, minus the idle process before it, over the devices);
  * first, 2,000 devices at 400 frames/s for at least 20 s (normal hours): p50/p99/max, where
    an event-loop stall shows;
  * 1,000 devices at --rate frames/s: p50/p99;
  * 1,000 connections in a closed loop (next frame on each confirm): sustained confirmed frames/s
    through decode, normalization, JetStream (stored; fsync'd unless --no-sync) and confirm, and
    the gateway's CPU time per frame (`gateway_cpu_ms_per_frame`; 1000 / it is the frames/s one
    core sustains); then the same with heartbeats only (confirmed, nothing stored);
  * baseline, in the same run: the same closed loop against a bare asyncio server in its own
    process (uvloop, as `firegate run` uses; framing and confirm only: no decode, no JetStream).
    `vs_baseline` (`vs_baseline_heartbeats`) is firegate's confirmed status frames/s (heartbeats/s)
    over the baseline's. The baseline is bounded by this machine at that moment (the simulating
    client included), so the ratio moves less with other load than either figure.
The simulated devices run on uvloop, as `firegate sim` does by default. The processes share this
machine's cores: read the numbers as a floor. `loadavg` is the 1-minute load at the start and
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import cpu_seconds, free_port, rss_bytes, stop, wait_port
from _common import start_firegate as launch_firegate

from firegate.sim import DeviceSettings, run_load

REAL = DeviceSettings(test_mode=False)  # real alarms (`firegate sim` defaults to test mode)


def start_firegate(workdir: Path, sync: bool) -> tuple[subprocess.Popen[bytes], int]:
    proc, gb, _, _ = launch_firegate(
        workdir,
        FIREGATE_GB26875__CLOCK_SYNC_ON_CONNECT="false",
        FIREGATE_GB26875__PATROL_INTERVAL="0",
        FIREGATE_GB26875__RATE_LIMIT_PER_DEVICE="1000",
        FIREGATE_GB26875__RATE_BURST="1000",
        FIREGATE_NATS__EMBEDDED_SYNC=str(sync).lower(),
    )
    return proc, gb


async def scenario(port: int, pid: int, devices: int, rate: float, duration: float) -> dict[str, float]:
    peak = 0
    base = rss_bytes(pid)
    cpu0, me0, wall0 = cpu_seconds(pid), time.process_time(), time.monotonic()

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.25)

    sampler = asyncio.create_task(sample())
    try:
        report = await run_load(
            "127.0.0.1",
            port,
            devices=devices,
            rate=rate,
            duration=duration,
            heartbeat_interval=30.0,
            settings=REAL,
            drain=3.0,
            seed=1,
        )
    finally:
        sampler.cancel()
    wall = time.monotonic() - wall0
    out: dict[str, float] = {
        "devices": devices,
        "offered_fps": rate,
        "confirmed_fps": round(report.confirmed_per_s),
        "p50_ms": round(report.latency_p50_ms or 0.0, 2),
        "p99_ms": round(report.latency_p99_ms or 0.0, 2),
        "max_ms": round(report.latency_max_ms or 0.0, 2),
        "failed": report.failed,
        "retransmitted": report.retransmitted,
        "connections_peak": report.connections_peak,
        "gateway_cpu_pct": round(100 * (cpu_seconds(pid) - cpu0) / wall),
        "simulator_cpu_pct": round(100 * (time.process_time() - me0) / wall),
    }
    if devices >= 5000:
        out["rss_base_mb"] = round(base / 2**20, 1)
        out["rss_peak_mb"] = round(peak / 2**20, 1)
        out["rss_per_connection_kb"] = round((peak - base) / devices / 1024, 1)
    return out


async def closed_loop(
    port: int, pid: int, devices: int, duration: float, *, heartbeat: bool = False
) -> dict[str, float]:
    """Capacity: every connection sends its next frame the moment the last one is confirmed.

    Component status frames that change state every time (each publishes events and updates the
    point's stored status), or with `heartbeat` empty heartbeats (confirmed, nothing published)."""
    from firegate.codecs.gb26875 import ComponentStatus, Framer, TimeTag, build_frame, encode_data_unit

    latencies: list[float] = []
    stop_at = time.monotonic() + duration
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()

    async def device(address: int) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        framer = Framer()
        serial = 0
        try:
            while time.monotonic() < stop_at:
                data = b""
                if not heartbeat:
                    status = (0b1, 0b101, 0b10001)[serial % 3]  # normal, fault, supervisory: real edges
                    obj = ComponentStatus.make(1, 1, 40, address, status, "烟感", TimeTag.now())
                    data = encode_data_unit(2, [obj])
                raw = build_frame(serial=serial, command=2, source=address, destination=0, data=data)
                sent = time.perf_counter()
                writer.write(raw)
                got = False
                while not got:
                    chunk = await asyncio.wait_for(reader.read(4096), 30)
                    if not chunk:
                        return
                    got = any(getattr(f, "serial", None) == serial for f in framer.feed(chunk))
                latencies.append(time.perf_counter() - sent)
                serial = (serial + 1) & 0xFFFF
        finally:
            writer.close()

    async with asyncio.TaskGroup() as tg:
        for i in range(devices):
            tg.create_task(device(900_000 + i))
    wall = time.monotonic() - wall0
    cpu = cpu_seconds(pid) - cpu0
    latencies.sort()
    n = len(latencies)
    return {
        "devices": devices,
        "confirmed_fps": round(n / duration),
        "p50_ms": round(latencies[n // 2] * 1000, 2) if n else 0.0,
        "p99_ms": round(latencies[int(n * 0.99)] * 1000, 2) if n else 0.0,
        "gateway_cpu_pct": round(100 * cpu / wall),
        "gateway_cpu_ms_per_frame": round(1000 * cpu / n, 3) if n else 0.0,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--quick", action="store_true", help="1,000 devices only, short runs")
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="embedded nats-server without an fsync per write (like a cluster relying on replication)",
    )
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server is not None:
        await baseline_server(args.baseline_server)
        return
    load_start = os.getloadavg()[0]
    results: dict[str, object] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "embedded_sync": not args.no_sync,
    }
    with tempfile.TemporaryDirectory(prefix="firegate-bench-") as tmp:
        proc, port = start_firegate(Path(tmp), not args.no_sync)
        try:
            if not args.quick:
                # normal hours first, on a fresh process: a center's everyday load, where a
                # stall shows as a high max (after the 10,000-device run, its backlog of fault
                # and alarm bookkeeping would still be running)
                results["devices_2000_normal_hours"] = await scenario(
                    port, proc.pid, 2_000, 400, max(args.duration, 20.0)
                )
                results["devices_10000"] = await scenario(port, proc.pid, 10_000, args.rate, args.duration)
            results["devices_1000"] = await scenario(port, proc.pid, 1_000, args.rate, args.duration)
            loop = await closed_loop(port, proc.pid, 1_000, args.duration)
            results["devices_1000_closed_loop"] = loop
            results["devices_1000_closed_loop_heartbeats"] = await closed_loop(
                port, proc.pid, 1_000, args.duration, heartbeat=True
            )
        finally:
            stop(proc)
    base, base_port = start_baseline()
    try:
        baseline = await closed_loop(base_port, base.pid, 1_000, args.duration)
    finally:
        stop(base)
    results["baseline_1000_closed_loop"] = baseline
    results["vs_baseline"] = round(loop["confirmed_fps"] / max(baseline["confirmed_fps"], 1), 3)
    beats = results["devices_1000_closed_loop_heartbeats"]
    assert isinstance(beats, dict)
    results["vs_baseline_heartbeats"] = round(beats["confirmed_fps"] / max(baseline["confirmed_fps"], 1), 3)
    results["loadavg"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(results))


def start_baseline() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--baseline-server", str(port)], start_new_session=True
    )
    wait_port(port, proc, "the baseline server")
    return proc, port


async def baseline_server(port: int) -> None:
    """Frame and confirm, nothing else: the floor under firegate's per-frame cost."""
    from firegate.codecs.gb26875 import Frame, Framer, answer

    class Confirm(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
            self.framer = Framer()

        def data_received(self, data: bytes) -> None:
            for item in self.framer.feed(data):
                if isinstance(item, Frame):
                    self.transport.write(answer(item, 3))

    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    server = await loop.create_server(Confirm, "127.0.0.1", port, backlog=4096)
    async with server:
        await stopped.wait()


if __name__ == "__main__":
    # the simulated devices on uvloop too, as `firegate sim` runs them: the default loop's own
    # delays would otherwise show up as the gateway's latency
    import uvloop

    uvloop.run(main())
