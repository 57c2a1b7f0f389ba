"""run_storm and `firegate sim storm` against the in-process fake center: what each device sends and
in which order, resends, failures, the timeout, commands answered mid-storm, and the report."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from firegate.codecs.gb26875 import ClockSync, ComponentStatus, Frame, Reserved, TimeTag, UitdStatus
from firegate.sim import DeviceSettings, StormReport, parse_mix, run_storm, sim_main
from firegate.sim.payloads import BACKUP_POWER_FAULT, MAIN_POWER_FAULT
from firegate.sim.storm import StoredEvent, audit_stored, fire_count
from tests.sim.center import Center, Received
from tests.sim.test_commands import answer_to, pair
from tests.sim.test_device import HOST

FAST = DeviceSettings(confirm_timeout=0.3, retries=3, connect_timeout=2.0, reconnect_min=0.05)
FIRST = 300_000


def uploads(r: Received) -> bool:
    return r.frame.command == 2


def by_device(center: Center) -> dict[int, list[Frame]]:
    out: dict[int, list[Frame]] = defaultdict(list)
    for frame in center.frames(uploads):
        out[frame.source].append(frame)
    return out


async def storm(center: Center, **kw: object) -> StormReport:
    options: dict[str, object] = {
        "devices": 30,
        "connect_over": 0.2,
        "settle_timeout": 5.0,
        "burst_over": 0.2,
        "fire_share": 0.2,
        "burst_timeout": 10.0,
        "heartbeat_interval": None,  # nothing but the settling heartbeat and the burst
        "settings": FAST,
        "first_address": FIRST,
        "seed": 3,
    }
    options.update(kw)
    async with asyncio.timeout(30):
        return await run_storm(HOST, center.port, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fire_kind", "component_types"), [("detector", {31, 42}), ("manual", {23})])
async def test_each_device_settles_then_sends_its_fire_before_its_fault(
    fire_kind: str, component_types: set[int]
) -> None:
    began = time.time()
    async with Center() as center:
        report = await storm(center, fire_kind=fire_kind)
        frames = by_device(center)
    assert report.ok and report.notes == ()
    assert (report.devices, report.connected, report.settled, report.never_connected) == (30, 30, 30, 0)
    assert report.fire_frames == 6 and report.burst_frames == 36
    assert report.sent == report.confirmed == 36 and report.failed == report.unfinished == 0
    assert report.retransmissions == report.retransmissions_total == 0
    assert report.fire_confirmed == 6 and report.heartbeats == 30
    p50, p99, top = report.latency_p50_ms, report.latency_p99_ms, report.latency_max_ms
    assert p50 is not None and p99 is not None and top is not None and 0 < p50 <= p99 <= top
    assert report.fire_latency_p99_ms is not None and report.fire_latency_p99_ms <= top
    fired = {f.device for f in report.fires}
    assert len(fired) == 6 and all(f.outcome == "confirmed" and f.attempts == 1 for f in report.fires)
    assert set(frames) == set(range(FIRST, FIRST + 30))
    for address, sent in frames.items():
        assert sent[0].is_heartbeat and sent[0].serial == 0  # settled first
        units = [f.data_unit for f in sent[1:]]
        assert all(u is not None for u in units)
        types = [u.type for u in units if u is not None]
        assert types == ([2, 21] if address in fired else [21])
        assert [f.serial for f in sent] == list(range(len(sent)))  # one new serial per frame
        last = units[-1]
        assert last is not None
        (power,) = last.objects
        assert isinstance(power, UitdStatus) and power.status == 0b1 | MAIN_POWER_FAULT
        if address in fired:
            first = units[0]
            assert first is not None
            (alarm,) = first.objects
            assert isinstance(alarm, ComponentStatus) and alarm.fire and not alarm.test_mode
            assert alarm.component_type in component_types
    # each fire's wall-clock first send lies within the burst
    assert began <= report.burst_started_at
    for f in report.fires:
        assert f.sent_at is not None
        assert report.burst_started_at <= f.sent_at <= report.burst_started_at + report.burst_s + 0.05


async def test_unconfirmed_burst_frames_are_resent_as_the_same_bytes() -> None:
    async with Center() as center:

        def drop(phase: str) -> None:
            if phase == "settled":
                center.drop_confirms = 4  # the next four frames: the burst's first ones

        report = await storm(center, devices=10, fire_share=0.0, on_phase=drop)
        uploads_seen = center.frames(lambda r: uploads(r) and not r.frame.is_heartbeat)
    assert report.ok and report.confirmed == report.burst_frames == 10
    assert report.retransmissions == report.retransmissions_total == 4
    repeats = Counter(f.raw for f in uploads_seen)
    assert sorted(repeats.values()) == [1] * 6 + [2] * 4  # resent byte for byte, serial and all
    # a resent frame's latency runs from its first transmission: past the confirm timeout
    assert report.latency_max_ms is not None and report.latency_max_ms >= FAST.confirm_timeout * 900


async def test_frames_never_confirmed_fail_after_the_retries_and_the_run_says_so() -> None:
    async with Center() as center:

        def mute(phase: str) -> None:
            if phase == "settled":
                center.confirm = False

        settings = DeviceSettings(confirm_timeout=0.2, retries=2, reconnect_min=0.05)
        report = await storm(center, devices=4, fire_share=0.25, settings=settings, on_phase=mute)
        counts = Counter(f.raw for f in center.frames(lambda r: uploads(r) and not r.frame.is_heartbeat))
    assert not report.ok
    # the fire fails first (3 transmissions); only then does its device send its fault, which fails too
    assert report.burst_frames == 5 and report.failed == 5 and report.confirmed == 0
    assert report.fire_failed == 1 and report.fires[0].outcome == "failed" and report.fires[0].attempts == 3
    assert report.retransmissions == 10 and report.unfinished == 0
    assert list(counts.values()) == [3] * 5
    assert report.latency_p99_ms is None and report.fire_latency_p99_ms is None
    assert "FAILED" in report.render()


async def test_the_timeout_bounds_the_burst_and_counts_the_rest_unfinished() -> None:
    async with Center() as center:

        def mute(phase: str) -> None:
            if phase == "settled":
                center.confirm = False

        loop = asyncio.get_running_loop()
        began = loop.time()
        report = await storm(
            center,
            devices=5,
            fire_share=0.0,
            burst_timeout=0.5,
            settings=DeviceSettings(confirm_timeout=10.0),
            on_phase=mute,
        )
        took = loop.time() - began
    assert took < 4.0
    assert report.unfinished == 5 and report.sent == 5 and report.confirmed == report.failed == 0
    assert not report.ok and any("did not end within 0.5 s" in n for n in report.notes)
    assert 0.5 <= report.burst_s < 1.5


async def test_devices_answer_the_centers_clock_sync_mid_storm() -> None:
    ahead = TimeTag.from_datetime(datetime(2030, 1, 2, 3, 4, 5))
    async with Center() as center:

        def sync(phase: str) -> None:
            if phase == "settled":
                for conn in center.open_connections:
                    center.command(conn, 90, [ClockSync(ahead)])

        report = await storm(center, devices=12, on_phase=sync)
        received = list(center.received)
    assert report.ok and report.commands_answered == 12
    assert sum(1 for r in received if r.frame.command == 3) == 12
    # a fault the device built after it took the center's time carries that time (its clock moved)
    synced: set[int] = set()
    later = 0
    for r in received:
        if r.frame.command == 3:
            synced.add(r.conn)
        elif r.frame.command == 2 and not r.frame.is_heartbeat and r.conn in synced:
            later += 1
            assert r.frame.time.value is not None and r.frame.time.value.year == 2030
    assert later > 0


async def test_test_mode_backup_power_and_fault_kinds() -> None:
    async with Center() as center:
        report = await storm(center, devices=6, fire_share=0.5, fault_kind="backup_power", test_mode=True)
        units = [f.data_unit for f in center.frames(uploads) if not f.is_heartbeat]
    assert report.ok and report.test_mode and report.burst_frames == 9
    objects = [o for u in units if u is not None for o in u.objects]
    assert len(objects) == 9
    for obj in objects:
        assert isinstance(obj, UitdStatus | ComponentStatus) and obj.test_mode
        if isinstance(obj, UitdStatus):
            assert obj.status == BACKUP_POWER_FAULT  # bit 0 clear: test mode
    async with Center() as center:
        report = await storm(center, devices=4, fire_share=0.5, fault_kind="none")
        data = [f for f in center.frames(uploads) if not f.is_heartbeat]
    assert report.ok and report.burst_frames == report.fire_frames == 2 and len(data) == 2


def test_fire_count_and_bad_arguments() -> None:
    assert fire_count(10_000, 0.01) == 100
    assert fire_count(300, 0.05) == 15
    assert fire_count(10, 0.01) == 1  # a share > 0 fires at least once
    assert fire_count(10, 0.0) == 0


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"fire_kind": "smoke"}, "fire_kind"),
        ({"fault_kind": "flood"}, "fault_kind"),
        ({"fire_share": 1.5}, "fire_share"),
        ({"devices": 0}, "devices"),
        ({"fault_kind": "none", "fire_share": 0.0}, "nothing to send"),
    ],
)
async def test_run_storm_rejects_bad_arguments(kw: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        await run_storm(HOST, 1, **kw)  # type: ignore[arg-type]


async def test_cli_storm_json_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["storm", "--devices", "20", "--connect-over", "0.1", "--burst-over", "0.1", "--quiet"]
    async with Center() as center:
        argv = [*base, "--port", str(center.port), "--fire-share", "0.1", "--json", "--seed", "1"]
        async with asyncio.timeout(20):
            rc = await asyncio.to_thread(sim_main, [*argv, "--loop", "asyncio"])
        doc = json.loads(capsys.readouterr().out)
        assert rc == 0 and doc["ok"] and doc["confirmed"] == doc["burst_frames"] == 22
        assert [set(f) for f in doc["fires"]] == [
            {"device", "sent_at", "outcome", "attempts", "latency_ms"}
        ] * 2
        assert all(isinstance(f["sent_at"], float) for f in doc["fires"])
        center.confirm = False  # the settling heartbeats fail too: nothing is confirmed
        argv = [*base, "--port", str(center.port), "--confirm-timeout", "0.2", "--retries", "0"]
        async with asyncio.timeout(20):
            rc = await asyncio.to_thread(sim_main, [*argv, "--settle-timeout", "0.3"])
    out = capsys.readouterr().out
    assert rc == 1 and "result       FAILED" in out and "settled 0" in out


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["storm", "--fire-share", "2"], "within 0..1"),
        (["storm", "--fault-kind", "flood"], "invalid choice"),
        (["storm", "--fire-kind", "smoke"], "invalid choice"),
        (["storm", "--timeout", "0"], "must be > 0"),
        (["storm", "--udp"], "unrecognized arguments"),
    ],
)
def test_cli_storm_rejects_bad_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        sim_main(argv)
    assert exc.value.code == 2 and reason in capsys.readouterr().err


async def test_audit_of_what_a_center_stored() -> None:
    async with Center() as center:
        report = await storm(center, devices=5, fire_share=0.4)
    fired = sorted(str(f.device) for f in report.fires)
    assert len(fired) == 2
    good = [StoredEvent("alarm", d, f"a{d}", n) for n, d in enumerate(fired, 1)]
    good += [StoredEvent("fault", str(FIRST + i), f"f{i}", 10 + i) for i in range(5)]
    audit = audit_stored(report, good)
    assert audit.ok and (audit.expected, audit.stored, audit.lost, audit.duplicated) == (7, 7, 0, 0)
    calm = next(str(FIRST + i) for i in range(5) if str(FIRST + i) not in fired)
    bad = [
        *good[1:],  # the first fire is lost
        good[3],  # a fault stored twice under one id
        StoredEvent("fault", str(FIRST), "f0-again", 99),  # a second, distinct fault of one device
        StoredEvent("alarm", calm, "stray", 98),  # a fire from a device that reported none
    ]
    audit = audit_stored(report, bad)
    assert not audit.ok and audit.lost == 1 and audit.lost_sample == (f"alarm.{fired[0]}",)
    assert (audit.stored, audit.duplicated, audit.unexpected) == (9, 1, 2)
    # the second fire stored after its fault
    late = [StoredEvent(e.kind, e.device, e.id, 1000 if e.id == f"a{fired[1]}" else e.seq) for e in good]
    assert audit_stored(report, late).fire_after_fault == 1


async def test_power_faults_latch_in_the_uitd_status_until_an_init() -> None:
    """What the storm's devices say outside the burst: a read of the UITD status (81 -> 21) reports
    the power fault it sent, until the center initialises the device (89)."""
    async with pair() as (center, dev, conn):

        async def uitd_status() -> int:
            serial, _ = center.command(conn, 81, [Reserved()], command=4)
            unit = (await center.wait_for(answer_to(serial, 5))).frame.data_unit
            assert unit is not None and isinstance(unit.objects[0], UitdStatus)
            return unit.objects[0].status

        async with asyncio.timeout(5):
            assert (await dev.send_power_fault()).ok
            assert await uitd_status() == 0b1 | MAIN_POWER_FAULT
            assert (await dev.send_power_fault(backup=True)).ok
            assert await uitd_status() == dev.uitd_status == 0b1 | MAIN_POWER_FAULT | BACKUP_POWER_FAULT
            serial, _ = center.command(conn, 89, [Reserved()])
            assert (await center.wait_for(answer_to(serial))).frame.command == 3
            assert await uitd_status() == 0b1
        sent = [f.data_unit for f in center.frames(uploads) if not f.is_heartbeat]
        assert [u.type for u in sent if u is not None] == [21, 21]


def test_power_faults_in_the_load_mix() -> None:
    mix = parse_mix("main_power=0.5,backup_power=0.5")
    assert mix.shares() == {"main_power": 0.5, "backup_power": 0.5}
