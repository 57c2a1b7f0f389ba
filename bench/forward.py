"""From a confirmed fire to the 119 receiver. Prints one JSON object on its last line.

    python bench/forward.py [--alarms 200] [--cli 20] [--policy 200] [--baseline 200]

Runs the real `firegate run` (embedded nats-server, fsync before ack, the production default) in
its own process with dispatch119.url pointing at a FakeDispatch119 inside this process (one
machine, one monotonic clock), auto-confirm of manual call points on, of detectors off
(detectors: 0, escalate_after: null). Over loopback it measures, one fire at a time (latency,
not throughput), each fire from its own simulated UITD, hence its own site and incident:

  * confirm_to_119_ms: an ordinary detector alarm is sent and waited for until the `list` API
    shows it pending; then from just before the NATS `confirm` request (firegate.forwarders.api)
    to the receiver's recording of that incident (its `received_at`);
  * cli_confirm_to_119_ms: the same, from just before launching `firegate alarm confirm ID`
    (the standard's 3 s budget counts from the operator's command);
  * frame_to_119_ms: from writing a manual-call-point fire frame (auto-confirmed by policy) on an
    already connected UITD to the receiver's recording of its incident;
  * baseline_post_ms: a plain aiohttp POST of a real incident body from this process straight to
    the receiver (keep-alive session, like firegate's): the floor of the 119 hop; ratios to it.

The `*_breakdown_ms` entries split each path with a plain NATS subscriber in this process
(fire.alarm.> and fire.confirmed.>, stamped on arrival): `reply` is the confirm API's answer,
`published` the fire_confirmed event on the bus (lifecycle work), `to_119` what is left (the
119 courier's fetch, the HTTP client, the receiver). Also reported: the
firegate_confirm_to_119_seconds histogram (count, sum) from /metrics, and whether the receiver
accepted every incident exactly once. The two processes share this machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import aiohttp
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from firegate.forwarders.api import call
from firegate.sim import DeviceSettings, SimulatedUitd
from firegate.tools.fake119 import FakeDispatch119, Received

FIREGATE = str(Path(sys.executable).with_name("firegate"))
HOST = "127.0.0.1"
WARMUP = 3  # fires confirmed first and left out of the numbers: the courier's first HTTP connect...
CONFIRM_DEVICES = 100_000  # device (and site) numbers of each part
CLI_DEVICES = 200_000
POLICY_DEVICES = 300_000
BASELINE_PREFIX = "baseline-"
STEP = 15.0  # seconds any one step may take


def log(message: str) -> None:
    print(f"forward: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99/max (nearest rank) of seconds, in ms."""
    if not samples:
        return {"n": 0}
    s = sorted(samples)

    def rank(p: float) -> float:
        return round(s[max(0, math.ceil(p * len(s)) - 1)] * 1000, 2)

    return {"n": len(s), "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": rank(1.0)}


@dataclass
class Tracker:
    """When things happened, by device, stamped with time.monotonic() in this process."""

    received: dict[str, float] = field(default_factory=dict)  # by the fake 119 (its received_at)
    published: dict[str, float] = field(default_factory=dict)  # fire.confirmed.<device> seen
    alarmed: dict[str, float] = field(default_factory=dict)  # fire.alarm.<device> seen
    baseline: dict[str, float] = field(default_factory=dict)  # by the fake 119, by key
    waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)

    def on_receive(self, r: Received) -> None:
        if r.key and r.key.startswith(BASELINE_PREFIX):
            self.baseline[r.key] = r.received_at
            return
        if r.status != 201 or r.body is None:
            return
        for alarm in r.body.get("alarms") or []:
            device = str(alarm.get("device"))
            self.received.setdefault(device, r.received_at)
            waiter = self.waiters.pop(device, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(r.received_at)

    def arrival(self, device: str) -> asyncio.Future[float]:
        """Resolves with the receiver's received_at of this device's incident."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if device in self.received:
            fut.set_result(self.received[device])
        else:
            self.waiters[device] = fut
        return fut

    async def on_bus(self, msg: Msg) -> None:
        now = time.monotonic()
        _, kind, device = msg.subject.split(".", 2)
        stamps = self.published if kind == "confirmed" else self.alarmed
        stamps.setdefault(device, now)


# -- the firegate process ---------------------------------------------------------------------


@dataclass
class Process:
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    gb: int
    http: int
    nats: int
    log: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its whole session (the embedded nats-server too)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                log("firegate did not stop in 15 s: killed")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of its session
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{HOST}:{self.http}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def loop(self) -> str:
        """uvloop when the process mapped its extension (firegate uses it when installed)."""
        with contextlib.suppress(OSError):
            if "uvloop" in Path(f"/proc/{self.proc.pid}/maps").read_text():
                return "uvloop"
            return "asyncio"
        return "unknown"


def write_config(workdir: Path, receiver_url: str) -> Path:
    config = workdir / "firegate.yaml"
    config.write_text(
        f"""
dispatch119:
  url: {receiver_url}
  timeout: 2
  backoff_initial: 0.1
  backoff_max: 0.5
alarms:
  auto_confirm:
    manual: true
    detectors: 0
    escalate_after: null
""",
        encoding="utf-8",
    )
    return config


def start_firegate(workdir: Path, config: Path) -> Process:
    gb, http, nats_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        FIREGATE_GB26875__LISTEN=f"{HOST}:{gb}",
        FIREGATE_HTTP__LISTEN=f"{HOST}:{http}",
        FIREGATE_NATS__EMBEDDED_PORT=str(nats_port),
        FIREGATE_DATA_DIR=str(workdir / "data"),
        FIREGATE_GB26875__CLOCK_SYNC_ON_CONNECT="false",
        FIREGATE_GB26875__PATROL_INTERVAL="0",
        FIREGATE_LOG__LEVEL="WARNING",
    )
    logfile = workdir / "firegate.log"
    with open(logfile, "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [FIREGATE, "run", "--config", str(config)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    fg = Process(proc, env, gb, http, nats_port, logfile)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://{HOST}:{http}/readyz", timeout=1) as r,
        ):
            if r.status == 200:
                return fg
        time.sleep(0.1)
    fg.stop()
    raise SystemExit("firegate did not become ready: " + logfile.read_text()[-1500:])


# -- steps --------------------------------------------------------------------------------------

# real alarms (status bit 0 set): the policy must confirm the manual call points, and an operator's
# confirm must reach 119 as a real fire
QUIET = DeviceSettings(
    heartbeat_interval=None, heartbeat_on_connect=False, confirm_timeout=5.0, retries=1, test_mode=False
)


async def send_alarm(port: int, device: int, *, manual: bool) -> float:
    """Connect a UITD, let the gateway know it (one heartbeat), send one fire alarm; returns the
    monotonic time just before the alarm frame went out."""
    async with SimulatedUitd(device, HOST, port, settings=QUIET) as uitd:
        async with asyncio.timeout(STEP):
            await uitd.wait_connected()
            hb = await uitd.send_heartbeat()
        if not hb.ok:
            raise RuntimeError(f"device {device}: heartbeat {hb.outcome}")
        sent = time.monotonic()
        async with asyncio.timeout(STEP):
            result = await uitd.send_fire_alarm(manual=manual)
    if not result.ok:
        raise RuntimeError(f"device {device}: fire alarm {result.outcome}")
    return sent


async def pending_row(nc: NATS, device: int) -> dict[str, Any]:
    """Poll the list API until this device's alarm is pending."""
    async with asyncio.timeout(STEP):
        while True:
            answer = await call(nc, "list", {"state": "pending", "site": str(device)}, wait=5.0)
            if not answer.get("ok"):
                raise RuntimeError(f"list: {answer}")
            for row in answer.get("alarms") or []:
                if row.get("device") == str(device):
                    return dict(row)
            await asyncio.sleep(0.005)


async def via_api(nc: NATS, row: dict[str, Any], env: dict[str, str]) -> tuple[float, float]:
    started = time.monotonic()
    answer = await call(nc, "confirm", {"id": row["id"], "operator": "bench"}, wait=5.0)
    replied = time.monotonic()
    if not answer.get("ok") or answer.get("state") != "confirmed":
        raise RuntimeError(f"confirm {row['id']}: {answer}")
    return started, replied


async def via_cli(nc: NATS, row: dict[str, Any], env: dict[str, str]) -> tuple[float, float]:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        FIREGATE,
        "alarm",
        "confirm",
        row["id"],
        "--operator",
        "bench",
        "--json",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(STEP):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    replied = time.monotonic()
    if proc.returncode != 0:
        raise RuntimeError(f"firegate alarm confirm {row['id']}: exit {proc.returncode}: {err.decode()}")
    return started, replied


Confirmer = Callable[[NATS, dict[str, Any], dict[str, str]], Awaitable[tuple[float, float]]]


@dataclass
class Samples:
    total: list[float] = field(default_factory=list)
    reply: list[float] = field(default_factory=list)  # confirm answered / the CLI exited
    published: list[float] = field(default_factory=list)  # fire_confirmed seen on the bus
    to_119: list[float] = field(default_factory=list)  # published -> receiver
    alarmed: list[float] = field(default_factory=list)  # frame -> fire_alarm on the bus (policy)

    def breakdown(self) -> dict[str, dict[str, float]]:
        parts = {"reply": self.reply, "published": self.published, "to_119": self.to_119}
        if self.alarmed:
            parts = {"alarm_published": self.alarmed, **parts}
        return {k: percentiles(v) for k, v in parts.items() if v}


async def operator_confirms(
    nc: NATS, fg: Process, track: Tracker, first: int, count: int, confirm: Confirmer, what: str
) -> Samples:
    samples = Samples()
    for i in range(count):
        device = first + i
        await send_alarm(fg.gb, device, manual=False)
        row = await pending_row(nc, device)
        arrival = track.arrival(str(device))
        started, replied = await confirm(nc, row, fg.env)
        received = await asyncio.wait_for(arrival, STEP)
        samples.total.append(received - started)
        samples.reply.append(replied - started)
        published = track.published.get(str(device))
        if published is not None:
            samples.published.append(published - started)
            samples.to_119.append(received - published)
        if (i + 1) % 50 == 0:
            log(f"{what}: {i + 1}/{count}")
    return samples


async def policy_confirms(fg: Process, track: Tracker, first: int, count: int) -> Samples:
    samples = Samples()
    for i in range(count):
        device = first + i
        arrival = track.arrival(str(device))
        sent = await send_alarm(fg.gb, device, manual=True)
        received = await asyncio.wait_for(arrival, STEP)
        samples.total.append(received - sent)
        alarmed = track.alarmed.get(str(device))
        published = track.published.get(str(device))
        if alarmed is not None:
            samples.alarmed.append(alarmed - sent)
        if published is not None:
            samples.published.append(published - sent)
            samples.to_119.append(received - published)
        if (i + 1) % 50 == 0:
            log(f"policy: {i + 1}/{count}")
    return samples


async def baseline_posts(
    url: str, track: Tracker, body: dict[str, Any], count: int
) -> tuple[list[float], list[float]]:
    """To the receiver's received_at, and the full round trip, over one keep-alive session."""
    to_receiver: list[float] = []
    round_trip: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for i in range(-WARMUP, count):
            incident = f"{BASELINE_PREFIX}{i + WARMUP}"
            data = json.dumps({**body, "incident_id": incident}).encode()
            key = f"{incident}:1"
            headers = {"Content-Type": "application/json", "Idempotency-Key": key}
            started = time.monotonic()
            async with session.post(url, data=data, headers=headers) as response:
                await response.read()
            done = time.monotonic()
            if response.status != 201:
                raise RuntimeError(f"baseline POST answered {response.status}")
            if i >= 0:
                to_receiver.append(track.baseline[key] - started)
                round_trip.append(done - started)
    return to_receiver, round_trip


def histogram(metrics: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        for part in ("count", "sum"):
            if line.startswith(f"{name}_{part} "):
                out[part] = float(line.split()[1])
    return out


def ratio(a: dict[str, float], b: dict[str, float], key: str) -> float | None:
    return round(a[key] / b[key], 2) if a.get(key) and b.get(key) else None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    track = Tracker()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="firegate-bench-") as tmp:
        workdir = Path(tmp)
        async with FakeDispatch119(on_receive=track.on_receive) as fake:
            config = write_config(workdir, fake.url)
            fg = await asyncio.to_thread(start_firegate, workdir, config)
            try:
                nc = await nats.connect(
                    f"nats://{HOST}:{fg.nats}", connect_timeout=5, max_reconnect_attempts=3
                )
                try:
                    await nc.subscribe("fire.confirmed.>", cb=track.on_bus)
                    await nc.subscribe("fire.alarm.>", cb=track.on_bus)
                    await nc.flush()
                    log(f"firegate ready (pid {fg.proc.pid}, {fg.loop()}); warming up")
                    await operator_confirms(
                        nc, fg, track, CONFIRM_DEVICES - WARMUP, WARMUP, via_api, "warmup"
                    )
                    await policy_confirms(fg, track, POLICY_DEVICES - WARMUP, WARMUP)

                    log(f"operator confirms over NATS: {args.alarms}")
                    api = await operator_confirms(nc, fg, track, CONFIRM_DEVICES, args.alarms, via_api, "api")
                    log(f"operator confirms with the CLI: {args.cli}")
                    cli = await operator_confirms(nc, fg, track, CLI_DEVICES, args.cli, via_cli, "cli")
                    log(f"manual call points, auto-confirmed: {args.policy}")
                    policy = await policy_confirms(fg, track, POLICY_DEVICES, args.policy)

                    log(f"baseline POSTs: {args.baseline}")
                    sample_body = next(iter(fake.incidents.values()))
                    base, base_rtt = await baseline_posts(fake.url, track, sample_body, args.baseline)

                    await asyncio.sleep(1.0)  # a late duplicate would show up now
                    metrics = histogram(
                        await asyncio.to_thread(fg.metrics), "firegate_confirm_to_119_seconds"
                    )
                    loop = fg.loop()
                finally:
                    await nc.close()
            finally:
                await asyncio.to_thread(fg.stop)
                log(f"firegate stopped (exit {fg.proc.returncode})")

            ours = [r for r in fake.requests if not (r.key or "").startswith(BASELINE_PREFIX)]
            accepted = [k for k in fake.accepted if not k.startswith(BASELINE_PREFIX)]
            incidents = {k.rsplit(":", 1)[0] for k in accepted}
            expected = 2 * WARMUP + args.alarms + args.cli + args.policy

    confirm_ms = percentiles(api.total)
    cli_ms = percentiles(cli.total)
    frame_ms = percentiles(policy.total)
    base_ms = percentiles(base)
    results.update(
        confirm_to_119_ms=confirm_ms,
        cli_confirm_to_119_ms=cli_ms,
        frame_to_119_ms=frame_ms,
        baseline_post_ms=base_ms,
        baseline_post_round_trip_ms=percentiles(base_rtt),
        confirm_p50_over_baseline=ratio(confirm_ms, base_ms, "p50"),
        confirm_p99_over_baseline=ratio(confirm_ms, base_ms, "p99"),
        cli_p50_over_baseline=ratio(cli_ms, base_ms, "p50"),
        cli_p99_over_baseline=ratio(cli_ms, base_ms, "p99"),
        frame_p50_over_baseline=ratio(frame_ms, base_ms, "p50"),
        frame_p99_over_baseline=ratio(frame_ms, base_ms, "p99"),
        confirm_breakdown_ms=api.breakdown(),
        cli_breakdown_ms=cli.breakdown(),
        frame_breakdown_ms=policy.breakdown(),
        confirm_goal_p99_under_100ms=bool(confirm_ms.get("p99", math.inf) < 100),
        within_3s=all(x < 3.0 for x in api.total + cli.total + policy.total),
        metric_confirm_to_119_seconds={k: round(v, 4) for k, v in metrics.items()},
        incidents_expected=expected,
        incidents_accepted=len(incidents),
        keys_accepted=len(accepted),
        posts_received=len(ours),
        posts_not_201=sum(r.status != 201 for r in ours),
        exactly_once=len(incidents) == len(accepted) == expected and all(r.status == 201 for r in ours),
        warmup_per_part=WARMUP,
        machine={
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "firegate_loop": loop,
            "bench_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        },
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alarms", type=int, default=200, help="operator confirms over NATS (default 200)")
    parser.add_argument(
        "--cli", type=int, default=20, help="confirms with `firegate alarm confirm` (default 20)"
    )
    parser.add_argument(
        "--policy", type=int, default=200, help="auto-confirmed manual call points (default 200)"
    )
    parser.add_argument("--baseline", type=int, default=200, help="plain POSTs to the receiver (default 200)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args()
    if min(args.alarms, args.cli, args.policy, args.baseline) < 1:
        parser.error("counts must be >= 1")

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(args.timeout):
            return await run(args)

    try:
        result = asyncio.run(bounded())
    except TimeoutError:
        raise SystemExit(
            f"forward: gave up: a step took over {STEP:g} s or the run over {args.timeout:g} s"
        ) from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
