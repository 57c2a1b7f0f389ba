"""The district-wide storm against the whole gateway and against a bare baseline. Prints one JSON
object on its last line (progress on stderr unless --quiet).

    python bench/storm.py [--devices 10000] [--quick] [--fire-share 0.01] [--fire-kind detector|manual]
                          [--no-baseline] [--dispatch119] [--connect-over 10] [--timeout 60]

The storm (`firegate.sim.storm.run_storm`, this process, uvloop): the devices connect over
--connect-over seconds and settle (a heartbeat each, confirmed); then within one second every
device reports its main-power fault (type 21) and --fire-share of them a fire alarm (type 2) just
before it. Every device behaves as a UITD: one frame outstanding, resent after 10 s, 3 times.
The devices send real alarms and faults (status bit 0 set), not the test mode that `firegate sim
storm` defaults to: with --dispatch119 the default policy must confirm the manual call points and
POST them to 119, and the figures stay comparable with earlier runs.

Targets, one after the other, each on private ports with its data in a temporary directory:
  * firegate: the real `firegate run` in its own process with its defaults (embedded nats-server
    with fsync, rate limits, clock sync on connect, patrols); only ports, data dir and log level
    are set (and with --dispatch119 the 119 URL);
  * baseline: a bare Python server in its own process (uvloop) that only frames, publishes each
    frame to JetStream stream FIRE (same settings as firegate's, on an embedded nats-server with
    fsync started by this bench) with a Nats-Msg-Id, and confirms after the ack; subject
    fire.alarm.<device> for type 2 with the fire bit, fire.fault.<device> for the rest.
    Heartbeats are confirmed at once, as firegate does. Its floor is the nats-server's: with
    fsync on every write it stores a few thousand messages a second on a VM disk.

Per target: confirm latency p50/p99/max (first send to confirm) and retransmissions; fires only;
fire-to-stream p50/p99: a plain NATS core subscriber on fire.alarm.> (its own process) stamps
each fire's arrival, matched by the event's "device" with the sim's wall-clock first send;
stored/expected/lost/duplicated/unexpected from reading stream FIRE back (fire.alarm.> and
fire.fault.>, by event id), and fires stored after their device's fault; the server's (and its
nats-server's) CPU % over the burst; firegate's WARNING/ERROR log lines. `vs_baseline`: firegate's
p99s over the baseline's. With --dispatch119 (manual call points, which the default policy
confirms at once): the fake 119 receiver in its own process, and press-to-119 p50/p99 (first
send to the POST's arrival). `loadavg` is the 1-minute load at the start and the end. The
processes share this machine's cores with the simulator: read the numbers as a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import child_pid, clean_env, cpu_seconds, free_port, scrape, start_firegate, stop, wait_port

from firegate.sim import DeviceSettings
from firegate.sim.report import percentiles
from firegate.sim.storm import StoredEvent, StormReport, audit_stored, run_storm

STREAM = "FIRE"
REAL = DeviceSettings(test_mode=False)  # real alarms: see the module doc
SUBJECTS = ("fire.alarm.>", "fire.fault.>")


# -- the measurement ------------------------------------------------------------------------------


def _pct(values: list[float]) -> tuple[float | None, float | None]:
    p50, p99 = percentiles(values, 0.5, 0.99)
    return (None if p50 is None else round(p50, 1)), (None if p99 is None else round(p99, 1))


class CpuWindow:
    """CPU seconds of a few processes (and of this one) between the storm's phases."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {k: v for k, v in pids.items() if v is not None}
        self.marks: dict[str, tuple[float, float, dict[str, float]]] = {}

    def mark(self, phase: str) -> None:
        cpus = {k: cpu_seconds(pid) for k, pid in self.pids.items()}
        self.marks[phase] = (time.monotonic(), time.process_time(), cpus)

    def pct(self, start: str, end: str) -> dict[str, int]:
        if start not in self.marks or end not in self.marks:
            return {}
        (w0, me0, c0), (w1, me1, c1) = self.marks[start], self.marks[end]
        wall = max(w1 - w0, 1e-9)
        out = {f"{k}_cpu_pct": round(100 * (c1[k] - c0[k]) / wall) for k in self.pids}
        out["simulator_cpu_pct"] = round(100 * (me1 - me0) / wall)
        return out


async def read_stored(url: str, expected: int) -> list[StoredEvent]:
    """Every event on fire.alarm.> and fire.fault.> in stream FIRE, once the stream holds the
    expected count or has stopped growing (bounded)."""
    import nats

    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(timeout=10.0)

        async def count() -> int:
            total = 0
            for subject in SUBJECTS:
                info = await js.stream_info(STREAM, subjects_filter=subject)
                total += sum((info.state.subjects or {}).values())
            return total

        deadline, last, still = time.monotonic() + 15, -1, 0
        while time.monotonic() < deadline:
            now = await count()
            still = still + 1 if now == last else 0
            if now >= expected or still >= 4:
                break
            last = now
            await asyncio.sleep(0.5)
        events: list[StoredEvent] = []
        for subject in SUBJECTS:
            info = await js.stream_info(STREAM, subjects_filter=subject)
            want = sum((info.state.subjects or {}).values())
            if not want:
                continue
            sub = await js.subscribe(subject, ordered_consumer=True)
            try:
                for _ in range(want):
                    msg = await sub.next_msg(timeout=10)
                    doc = json.loads(msg.data)
                    _, kind, device = msg.subject.split(".", 2)
                    seq = msg.metadata.sequence.stream
                    events.append(StoredEvent(kind, str(doc.get("device", device)), str(doc["id"]), seq))
            finally:
                await sub.unsubscribe()
        return events
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 5)


@contextlib.contextmanager
def subscriber(url: str, workdir: Path) -> Iterator[Path]:
    """The core NATS subscriber on fire.alarm.> in its own process; yields its stamps file."""
    out = workdir / "stamps.jsonl"
    ready = workdir / "stamps.ready"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--subscriber", url, str(out)],
        env=clean_env(),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the stream subscriber did not start")
            time.sleep(0.05)
        yield out
    finally:
        stop(proc)


def fire_to_stream(report: StormReport, stamps: Path) -> dict[str, Any]:
    sent = {str(f.device): f.sent_at for f in report.fires if f.sent_at is not None}
    seen: dict[str, float] = {}
    with contextlib.suppress(OSError), stamps.open() as f:
        for line in f:
            with contextlib.suppress(ValueError, KeyError, TypeError):  # a line cut by a kill
                doc = json.loads(line)
                device = str(doc["device"])
                if device in sent and device not in seen:  # the first publish (a resend publishes again)
                    seen[device] = float(doc["t"])
    p50, p99 = _pct([(seen[d] - sent[d]) * 1000 for d in seen])
    return {"fire_to_stream_p50_ms": p50, "fire_to_stream_p99_ms": p99, "fires_seen_on_stream": len(seen)}


def press_to_119(report: StormReport, posts: Path) -> dict[str, Any]:
    sent = {str(f.device): f.sent_at for f in report.fires if f.sent_at is not None}
    first: dict[str, float] = {}
    with contextlib.suppress(OSError), posts.open() as f:
        for line in f:
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                doc = json.loads(line)
                if not isinstance(doc, dict) or doc.get("status") not in (200, 201):
                    continue
                at = datetime.fromisoformat(doc["at"]).timestamp()
                for alarm in (doc.get("body") or {}).get("alarms") or []:
                    device = str(alarm.get("device"))
                    if device in sent and at < first.get(device, float("inf")):
                        first[device] = at
    p50, p99 = _pct([(first[d] - sent[d]) * 1000 for d in first])
    return {"press_to_119_p50_ms": p50, "press_to_119_p99_ms": p99, "fires_at_119": len(first)}


_VARIABLE = re.compile(r"\b[0-9a-f]{8,}\b|(?<!\w)\d+(?:\.\d+)?")


def log_summary(path: Path) -> dict[str, Any]:
    """firegate's WARNING and ERROR lines (JSON log): counts, and the most frequent messages with
    their numbers and ids masked (`#`), so that one message about many devices counts as one."""
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    with contextlib.suppress(OSError), path.open(errors="replace") as f:
        for line in f:
            try:
                doc = json.loads(line)
            except ValueError:
                if line.strip():
                    levels["other"] += 1
                    messages[_VARIABLE.sub("#", line.strip())[:120]] += 1
                continue
            if isinstance(doc, dict):
                levels[str(doc.get("level"))] += 1
                messages[_VARIABLE.sub("#", str(doc.get("msg")))[:120]] += 1
    return {"lines_by_level": dict(levels), "top": messages.most_common(5)}


async def storm_against(
    name: str,
    port: int,
    nats_url: str,
    pids: dict[str, int | None],
    workdir: Path,
    args: argparse.Namespace,
    fire_kind: str,
    posts: Path | None = None,
) -> dict[str, Any]:
    cpu = CpuWindow(pids)
    if not args.quiet:
        print(f"-- storm against {name}: {args.devices} devices", file=sys.stderr, flush=True)
    with subscriber(nats_url, workdir) as stamps:
        cpu.mark("start")
        report = await run_storm(
            "127.0.0.1",
            port,
            devices=args.devices,
            connect_over=args.connect_over,
            burst_over=1.0,
            fire_share=args.fire_share,
            fire_kind=fire_kind,
            fault_kind="main_power",
            burst_timeout=args.timeout,
            settings=REAL,
            seed=args.seed,
            progress=not args.quiet,
            on_phase=cpu.mark,
        )
        cpu.mark("end")
        await asyncio.sleep(0.5)  # the last publishes reach the subscriber
        # expected from the report (which devices fired), then what the stream holds
        expected_n = len(report.fires) + report.devices
        try:
            stored: dict[str, Any] = audit_stored(report, await read_stored(nats_url, expected_n)).to_json()
        except Exception as e:  # a dead server or a stalled read: say so, keep the other numbers
            stored = {"expected": expected_n, "stored": None, "stored_error": repr(e)}
    out: dict[str, Any] = {
        "devices": report.devices,
        "connected": report.connected,
        "settled": report.settled,
        "settle_s": report.settle_s,
        "burst_frames": report.burst_frames,
        "confirmed": report.confirmed,
        "failed": report.failed,
        "unfinished": report.unfinished,
        "retransmissions": report.retransmissions,
        "burst_s": report.burst_s,
        "confirm_p50_ms": report.latency_p50_ms,
        "confirm_p99_ms": report.latency_p99_ms,
        "confirm_max_ms": report.latency_max_ms,
        "fires": report.fire_frames,
        "fire_confirm_p50_ms": report.fire_latency_p50_ms,
        "fire_confirm_p99_ms": report.fire_latency_p99_ms,
        "fire_confirm_max_ms": report.fire_latency_max_ms,
        **fire_to_stream(report, stamps),
        **stored,
        **cpu.pct("settled", "done"),  # over the burst, from its first frame until every one ended
        "run_cpu": cpu.pct("start", "end"),  # over the whole storm: ramp, settling, burst
        "reconnects": report.reconnects,
        "retransmissions_total": report.retransmissions_total,
        "commands_answered": report.commands_answered,
        "notes": list(report.notes),
    }
    if posts is not None:
        # the 119 courier works after the confirm: give it until every fire has arrived (bounded)
        deadline = time.monotonic() + args.wait_119
        while (got := press_to_119(report, posts))["fires_at_119"] < len(report.fires):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        out.update(got)
    return out


# -- the targets -----------------------------------------------------------------------------------


def start_fake119(workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """firegate.tools.fake119 in its own process: (process, POST URL, its one-line-per-POST log)."""
    port = free_port()
    posts = workdir / "fake119.jsonl"
    with posts.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "firegate.tools.fake119", "--port", str(port)],
            env=clean_env(),
            stdout=out,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    wait_port(port, proc, "the fake 119 receiver")
    return proc, f"http://127.0.0.1:{port}/incidents", posts


def start_baseline(url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--baseline-server", str(port), url],
        env=clean_env(),
        start_new_session=True,
    )
    wait_port(port, proc, "the baseline server")
    return proc, port


async def bench_firegate(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    env: dict[str, str] = {}
    fake: subprocess.Popen[bytes] | None = None
    posts: Path | None = None
    try:
        if args.dispatch119:
            fake, url, posts = start_fake119(workdir)
            env["FIREGATE_DISPATCH119__URL"] = url
        proc, gb, nats_port, http = start_firegate(workdir, **env)
        try:
            pids = {"gateway": proc.pid, "nats": child_pid(proc.pid, "nats-server")}
            fire_kind = "manual" if args.dispatch119 else args.fire_kind
            nats_url = f"nats://127.0.0.1:{nats_port}"
            out = await storm_against("firegate", gb, nats_url, pids, workdir, args, fire_kind, posts)
            out["sync_writes"] = sync_writes(http)
        finally:
            stop(proc)
        out["log"] = log_summary(workdir / "firegate.log")
        return out
    finally:
        if fake is not None:
            stop(fake)


def sync_writes(http: int) -> dict[str, float]:
    """Synchronous (fsync'd) writes firegate asked of JetStream over the whole run, per confirmed
    frame (heartbeats included): the group commit's effect."""
    samples = scrape(http, "firegate_store_writes_total", "firegate_gateway_replies_sent_total")
    stream = samples.get('firegate_store_writes_total{store="stream"}', 0.0)
    status = samples.get('firegate_store_writes_total{store="status"}', 0.0)
    confirms = samples.get('firegate_gateway_replies_sent_total{command="confirm"}', 0.0)
    return {
        "stream": stream,
        "status": status,
        "confirms": confirms,
        "per_confirm": round((stream + status) / confirms, 4) if confirms else 0.0,
    }


async def bench_baseline(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from firegate.bus.jetstream import StreamSettings, connect, ensure_stream
    from firegate.bus.server import EmbeddedNatsServer

    # as firegate runs its embedded server by default: JetStream on file, fsync on every write
    async with EmbeddedNatsServer(workdir / "nats", port=0, sync_always=True) as server:
        nc = await connect([server.url], "storm-bench")
        try:
            await ensure_stream(nc.jetstream(timeout=10.0), StreamSettings())
        finally:
            await nc.close()
        proc, port = start_baseline(server.url)
        try:
            pids = {"gateway": proc.pid, "nats": server.pid}
            return await storm_against("the baseline", port, server.url, pids, workdir, args, args.fire_kind)
        finally:
            stop(proc)


def _ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or b <= 0:
        return None
    return round(a / b, 2)


async def main(args: argparse.Namespace) -> None:
    load_start = os.getloadavg()[0]
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "devices": args.devices,
        "fire_share": args.fire_share,
        "fire_kind": "manual" if args.dispatch119 else args.fire_kind,
        "fault_kind": "main_power",
        "connect_over_s": args.connect_over,
    }
    with tempfile.TemporaryDirectory(prefix="firegate-storm-") as tmp:
        for name in ("firegate", "baseline"):
            (Path(tmp) / name).mkdir()
        fg = await bench_firegate(Path(tmp) / "firegate", args)
        results["firegate"] = fg
        if not args.no_baseline:
            base = await bench_baseline(Path(tmp) / "baseline", args)
            results["baseline"] = base
            results["vs_baseline"] = {
                key: _ratio(fg.get(key), base.get(key))
                for key in ("confirm_p99_ms", "fire_confirm_p99_ms", "fire_to_stream_p99_ms")
            }
    results["loadavg"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(results, ensure_ascii=False))


# -- helper processes ------------------------------------------------------------------------------


def _wait_for_sigterm() -> asyncio.Event:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    return stopped


def _append(path: str) -> TextIO:
    return open(path, "a")  # the caller closes it


async def run_subscriber(url: str, out: str) -> None:
    """Stamp every fire.alarm.> message on arrival (time.time()) with its event's device."""
    import nats

    stopped = _wait_for_sigterm()
    nc = await nats.connect(url, connect_timeout=5)
    with _append(out) as f:

        async def stamp(msg: Any) -> None:
            at = time.time()  # before anything else: the arrival is what is measured
            device = json.loads(msg.data).get("device")
            f.write(json.dumps({"t": at, "device": device, "subject": msg.subject}) + "\n")

        await nc.subscribe("fire.alarm.>", cb=stamp, pending_msgs_limit=1_000_000)
        await nc.flush()
        Path(out).with_suffix(".ready").touch()
        await stopped.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), 5)


def describe(frame: Any) -> tuple[str, str, bytes]:
    """Subject, Nats-Msg-Id and payload of one data frame, from its bytes alone: the type flag and,
    for type 2, the first object's fire bit (no decoding into objects). The id digests the data
    unit (which carries the objects' own time tags), so a resend is deduplicated."""
    device = str(frame.source)
    data: bytes = frame.data
    type_flag = data[0]
    # type 2 object: system type, system address, component type, component address (4), status (2)
    fire = type_flag == 2 and len(data) > 9 and bool(data[9] & 0b10)
    subject = f"fire.{'alarm' if fire else 'fault'}.{device}"
    msg_id = f"{device}.{type_flag}.{hashlib.blake2b(data, digest_size=10).hexdigest()}"
    payload = json.dumps({"id": msg_id, "device": device, "raw": frame.raw.hex()}).encode()
    return subject, msg_id, payload


async def baseline_server(port: int, url: str) -> None:
    """Frame, publish to JetStream with a Nats-Msg-Id, confirm after the ack: the floor under
    firegate's storm latency (no decoding, no events, no lifecycle).

    Publishes go out with a reply subject under one inbox and their acks are matched by it (what
    nats-py's js.publish does, without its cost per call, which at 10,000 frames made this floor
    slower than firegate). No ack within 10 s or an error ack: no confirm, the device resends."""
    import nats

    from firegate.codecs.gb26875 import Frame, Framer, answer

    stopped = _wait_for_sigterm()
    nc = await nats.connect(url, connect_timeout=5, pending_size=64 * 1024 * 1024)
    loop = asyncio.get_running_loop()
    inbox = nc.new_inbox()
    tokens = itertools.count()
    waiting: dict[str, tuple[asyncio.Transport, Frame, asyncio.TimerHandle]] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def on_ack(msg: Any) -> None:
        entry = waiting.pop(msg.subject, None)
        if entry is None:
            return  # too late: the device has resent (or the link is gone)
        transport, frame, timer = entry
        timer.cancel()
        if b'"error"' not in msg.data and not transport.is_closing():
            transport.write(answer(frame, 3))

    await nc.subscribe(f"{inbox}.*", cb=on_ack, pending_msgs_limit=1_000_000)

    async def publish(transport: asyncio.Transport, frames: list[Frame]) -> None:
        for frame in frames:
            subject, msg_id, payload = describe(frame)
            reply = f"{inbox}.{next(tokens)}"
            waiting[reply] = (transport, frame, loop.call_later(10.0, waiting.pop, reply, None))
            await nc.publish(subject, payload, reply=reply, headers={"Nats-Msg-Id": msg_id})

    class Publish(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
            self.framer = Framer()

        def data_received(self, data: bytes) -> None:
            frames: list[Frame] = []
            for item in self.framer.feed(data):
                if not isinstance(item, Frame) or item.command != 2:
                    continue
                if not item.data:  # a heartbeat: nothing to store
                    self.transport.write(answer(item, 3))
                else:
                    frames.append(item)
            if frames:
                task = loop.create_task(publish(self.transport, frames))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    server = await loop.create_server(Publish, "127.0.0.1", port, backlog=16384)
    async with server:
        await stopped.wait()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.drain(), 5)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="The district-wide storm against firegate and a baseline.")
    p.add_argument("--devices", type=int, default=10_000, help="simulated UITDs (default 10000)")
    p.add_argument("--quick", action="store_true", help="1,000 devices")
    p.add_argument("--fire-share", type=float, default=0.01, help="devices that report a fire first")
    p.add_argument("--fire-kind", choices=("detector", "manual"), default="detector")
    p.add_argument("--no-baseline", action="store_true", help="firegate only")
    p.add_argument(
        "--dispatch119",
        action="store_true",
        help="fake 119 receiver, manual call points, press-to-119 latency per fire",
    )
    p.add_argument("--connect-over", type=float, default=None, help="seconds (default: devices / 1000)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the burst to end (default 60)")
    p.add_argument("--wait-119", type=float, default=20.0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--baseline-server", nargs=2, metavar=("PORT", "NATS_URL"), help=argparse.SUPPRESS)
    p.add_argument("--subscriber", nargs=2, metavar=("NATS_URL", "FILE"), help=argparse.SUPPRESS)
    return p


def _entry() -> None:
    args = _parser().parse_args()
    run: Callable[[Any], Any]
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    if args.baseline_server is not None:
        run(baseline_server(int(args.baseline_server[0]), args.baseline_server[1]))
        return
    if args.subscriber is not None:
        run(run_subscriber(*args.subscriber))
        return
    if args.quick:
        args.devices = 1_000
    if args.connect_over is None:
        args.connect_over = max(1.0, args.devices / 1000)  # firegate takes ~1,000 connections/s
    run(main(args))


if __name__ == "__main__":
    _entry()
