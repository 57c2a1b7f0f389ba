"""run_load, the mix, the report and the `firegate sim` command line."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter

import pytest

from firegate.sim import (
    DeviceSettings,
    Kind,
    LatencyRecorder,
    LoadReport,
    SimStats,
    parse_mix,
    raise_nofile_limit,
    run_load,
    sim_main,
)
from tests.ports import free_port
from tests.sim.center import Center
from tests.sim.test_device import HOST


async def test_run_load_200_devices_counts_agree() -> None:
    settings = DeviceSettings(confirm_timeout=2.0, reconnect_min=0.1, reconnect_max=0.5)
    async with Center() as center:
        loop = asyncio.get_running_loop()
        began = loop.time()
        async with asyncio.timeout(20):
            report = await run_load(
                HOST,
                center.port,
                devices=200,
                rate=400,
                duration=2.0,
                heartbeat_interval=0.5,
                ramp=0.5,
                mix="fire=0.02,manual=0.01,fault=0.1,status=0.3,uitd=0.1,analog=0.47",  # no heartbeats
                settings=settings,
                seed=7,
            )
        took = loop.time() - began
        uploads = center.frames(lambda r: r.frame.command == 2)
    assert 2.0 <= took < 2.0 + 1.0 + 0.5  # duration + drain, and a little
    assert report.ok and report.failed == 0 and report.never_connected == 0
    assert report.connections_peak == report.connections_held == 200
    assert report.interrupted == report.unfinished == report.reconnects == 0
    assert report.sent == report.confirmed > 0
    # what the center saw agrees with what the devices counted
    assert len(uploads) == report.sent + report.retransmitted
    assert center.confirms_sent == report.confirmed
    assert len({f.source for f in uploads}) == 200
    heartbeats = sum(1 for f in uploads if f.is_heartbeat)
    assert heartbeats == report.heartbeats == report.sent_by_kind["heartbeat"]
    assert sum(report.sent_by_kind.values()) == report.sent
    assert heartbeats >= 200 * 3  # one on connect, then every 0.5 s for ~2 s
    # ~400/s once ramped (0.5 s ramp): ~700 items; the generator may lag a little
    assert 500 <= report.generated <= 850
    # the generator may outpace a loaded center: what was not sent is still queued at the end
    assert report.generated == report.sent - heartbeats + report.abandoned and report.shed == 0
    assert set(report.sent_by_kind) == {
        "heartbeat",
        "fire",
        "manual",
        "fault",
        "clear",
        "status",
        "uitd",
        "analog",
    }
    p50, p90, p99, top = (
        report.latency_p50_ms,
        report.latency_p90_ms,
        report.latency_p99_ms,
        report.latency_max_ms,
    )
    assert p50 is not None and p90 is not None and p99 is not None and top is not None
    assert 0 < p50 <= p90 <= p99 <= top
    assert report.frames_per_s == pytest.approx(report.sent / report.duration_s, rel=0.01)


async def test_run_load_retransmits_through_missed_confirms() -> None:
    settings = DeviceSettings(confirm_timeout=0.2, reconnect_min=0.1)
    async with Center() as center:
        center.drop_confirms = 30
        async with asyncio.timeout(20):
            report = await run_load(
                HOST,
                center.port,
                devices=20,
                rate=100,
                duration=1.5,
                heartbeat_interval=None,
                ramp=0.1,
                settings=settings,
                seed=1,
                drain=1.0,
            )
    assert report.retransmitted == 30 and report.failed == 0 and report.unfinished == 0
    assert report.sent == report.confirmed
    assert report.latency_max_ms is not None and report.latency_max_ms >= 190


async def test_run_load_without_a_center_is_bounded_and_not_ok() -> None:
    settings = DeviceSettings(connect_timeout=0.5, reconnect_min=0.1, reconnect_max=0.2)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(10):
        report = await run_load(
            HOST, free_port(), devices=10, rate=50, duration=1.0, settings=settings, drain=0.2
        )
    assert loop.time() - began < 2.5
    assert not report.ok and report.never_connected == 10 and report.sent == 0
    assert report.connect_failures >= 10
    assert report.shed == 0 and report.generated > 0  # queued while waiting for a connection
    assert report.abandoned == report.generated  # ... and never sent


async def test_progress_line_once_per_second() -> None:
    import io

    out = io.StringIO()
    async with Center() as center, asyncio.timeout(10):
        await run_load(HOST, center.port, devices=3, rate=10, duration=2.1, progress=True, progress_out=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all("conns 3/3" in line for line in lines)


def test_mix_parsing() -> None:
    mix = parse_mix("fire=0.01,fault=0.05,status=0.2")
    assert mix.shares() == pytest.approx({"fire": 0.01, "fault": 0.05, "status": 0.2, "heartbeat": 0.74})
    assert parse_mix("fire=2,status=2").shares() == pytest.approx({"fire": 0.5, "status": 0.5})
    assert parse_mix("manual=1").shares() == {"manual": 1.0}
    for bad, reason in [
        ("smoke=0.1", "unknown traffic kind"),
        ("fire=-1", ">= 0"),
        ("fire=x", "not a number"),
        ("fire", "kind=weight"),
        ("fire=nan", ">= 0"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_mix(bad)


def test_mix_pick_follows_the_weights() -> None:
    mix = parse_mix("fire=0.1,status=0.3,analog=0.6")
    rng = random.Random(3)
    counts = Counter(mix.pick(rng) for _ in range(20_000))
    assert counts[Kind.FIRE] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert counts[Kind.ANALOG] / 20_000 == pytest.approx(0.6, abs=0.015)


def test_latency_recorder_reservoir_is_bounded() -> None:
    rec = LatencyRecorder(cap=100, rng=random.Random(1))
    for i in range(1, 10_001):
        rec.add(i / 1000)
    assert rec.count == 10_000 and len(rec.samples) == 100 and rec.max == 10.0
    p50, p99 = rec.percentiles(0.5, 0.99)
    assert p50 is not None and p99 is not None and 3.0 < p50 < 7.0 and p99 > 8.0
    assert LatencyRecorder().percentiles(0.5) == [None]


def test_report_json_and_table() -> None:
    stats = SimStats()
    stats.count_sent("fire")
    stats.count_sent("heartbeat")
    stats.confirmed = 1
    stats.failed = 1
    stats.latency.add(0.002)
    report = LoadReport.from_stats(
        stats,
        host=HOST,
        port=9001,
        transport="tcp",
        devices=1,
        duration_s=1.0,
        generated=1,
        connections_held=1,
        never_connected=0,
        nofile_limit=1024,
    )
    doc = report.to_json()
    assert doc["ok"] is False and doc["sent"] == 2 and doc["latency_p50_ms"] == 2.0
    assert json.loads(json.dumps(doc)) == doc
    table = report.render()
    assert "failed 1" in table and "FAILED" in table and "p50 2.00" in table


def test_a_run_that_lost_its_connections_is_not_ok() -> None:
    # the center went away mid-run: nothing failed outright, but 3 of 5 devices ended unconnected
    stats = SimStats()
    stats.count_sent("fire")
    stats.confirmed = 1
    kwargs = dict(
        host=HOST,
        port=9001,
        transport="tcp",
        devices=5,
        duration_s=1.0,
        generated=1,
        never_connected=0,
        nofile_limit=1024,
    )
    assert LoadReport.from_stats(stats, connections_held=5, **kwargs).ok  # type: ignore[arg-type]
    lost = LoadReport.from_stats(stats, connections_held=2, **kwargs)  # type: ignore[arg-type]
    assert not lost.ok and "held 2/5" in lost.render() and "FAILED" in lost.render()


def test_nofile_limit_raised_to_hard() -> None:
    import resource

    soft = raise_nofile_limit()
    now, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == now and (hard == resource.RLIM_INFINITY or now == hard)


# ---- the command line: sim_main runs its own event loop, so it runs in a worker thread here ----


async def test_cli_load_json(capsys: pytest.CaptureFixture[str]) -> None:
    async with Center() as center:
        argv = [
            "--port",
            str(center.port),
            "--devices",
            "5",
            "--rate",
            "20",
            "--duration",
            "1",
            "--heartbeat",
            "0.3",
            "--mix",
            "fire=0.1,fault=0.2,status=0.3",
            "--json",
            "--quiet",
            "--loop",
            "asyncio",
            "--confirm-timeout",
            "1",
        ]
        async with asyncio.timeout(15):
            rc = await asyncio.to_thread(sim_main, argv)
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["ok"] and doc["devices"] == 5 and doc["connections_held"] == 5
    assert doc["sent"] == doc["confirmed"] > 0 and doc["failed"] == 0


async def test_cli_load_table_and_uvloop(capsys: pytest.CaptureFixture[str]) -> None:
    async with Center() as center:
        argv = [
            "load",
            "--port",
            str(center.port),
            "--devices",
            "3",
            "--rate",
            "10",
            "--duration",
            "0.5",
            "--quiet",
        ]
        async with asyncio.timeout(15):
            rc = await asyncio.to_thread(sim_main, argv)
    out = capsys.readouterr().out
    assert rc == 0 and "result       OK" in out and "held 3/3" in out


@pytest.mark.parametrize("extra", [[], ["--manual", "--json"]])
async def test_cli_alarm(capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    async with Center() as center:
        async with asyncio.timeout(15):
            rc = await asyncio.to_thread(
                sim_main, ["alarm", "--port", str(center.port), "--device", "889", *extra]
            )
        frames = center.frames(lambda r: r.frame.command == 2)
    out = capsys.readouterr().out
    assert rc == 0
    assert len(frames) == 1 and frames[0].source == 889 and frames[0].serial == 0
    if extra:
        doc = json.loads(out)
        assert doc["outcome"] == "confirmed" and doc["latency_ms"] > 0 and doc["kind"] == "manual"
    else:
        assert "device 889" in out and "fire alarm confirmed in" in out and "ms" in out


async def test_cli_alarm_without_center(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["alarm", "--port", str(free_port()), "--connect-timeout", "0.3"]
    async with asyncio.timeout(10):
        rc = await asyncio.to_thread(sim_main, argv)
    assert rc == 1 and "no connection" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--mix", "smoke=1"], "unknown traffic kind"),
        (["--rate", "-5"], "must be >= 0"),
        (["--devices", "0"], "must be > 0"),
        (["--heartbeat", "x"], "not a number"),
        (["alarm", "--device", str(1 << 48)], "fits 6 bytes"),
        (["--first-address", str((1 << 48) - 2), "--devices", "5"], "no room"),
    ],
)
def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], reason: str) -> None:
    with pytest.raises(SystemExit) as exc:
        sim_main(argv)
    assert exc.value.code == 2 and reason in capsys.readouterr().err
