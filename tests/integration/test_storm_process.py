"""A small district storm against `firegate run` as ops run it: order and completeness, not timings.

300 simulated UITDs settle, then within one second each reports its main-power fault and 5% of them
a fire alarm just before it. Every burst frame must be confirmed, every fire alarm and every fault
stored in stream FIRE exactly once, and a device's fire stored before its fault.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from firegate.sim.storm import StoredEvent, audit_stored, run_storm
from tests.integration.process import Firegate
from tests.natsserver import nats_client

DEVICES = 300
FIRST = 400_000


async def read_back(url: str) -> tuple[list[StoredEvent], list[dict[str, object]]]:
    """Every event on fire.alarm.> and fire.fault.> in stream FIRE, with its stream sequence."""
    events: list[StoredEvent] = []
    docs: list[dict[str, object]] = []
    async with nats_client(url) as nc:
        js = nc.jetstream(timeout=10.0)
        for subject in ("fire.alarm.>", "fire.fault.>"):
            info = await js.stream_info("FIRE", subjects_filter=subject)
            count = sum((info.state.subjects or {}).values())
            sub = await js.subscribe(subject, ordered_consumer=True)
            for _ in range(count):
                msg = await sub.next_msg(timeout=10)
                doc = json.loads(msg.data)
                kind, device = msg.subject.split(".")[1:]
                assert doc["device"] == device and doc["kind"] == kind
                events.append(StoredEvent(kind, device, doc["id"], msg.metadata.sequence.stream))
                docs.append(doc)
            await sub.unsubscribe()
    return events, docs


async def test_storm_every_frame_confirmed_and_stored_once_fires_first(firegate: Firegate) -> None:
    # the gateway's default: it syncs each device's clock on connect, and the devices answer
    firegate.env.pop("FIREGATE_GB26875__CLOCK_SYNC_ON_CONNECT", None)
    await asyncio.to_thread(firegate.start)
    async with asyncio.timeout(60):
        report = await run_storm(
            "127.0.0.1",
            firegate.gb,
            devices=DEVICES,
            connect_over=2.0,
            settle_timeout=15.0,
            burst_over=1.0,
            fire_share=0.05,
            burst_timeout=35.0,
            first_address=FIRST,
            seed=11,
        )
        events, docs = await read_back(f"nats://127.0.0.1:{firegate.nats}")
    assert report.settled == report.connected == DEVICES, report.notes
    assert report.fire_frames == 15 and report.burst_frames == DEVICES + 15
    assert report.confirmed == report.burst_frames and report.failed == report.unfinished == 0, (
        report.render()
    )
    assert report.commands_answered >= DEVICES  # the clock syncs

    audit = audit_stored(report, events)
    assert (audit.expected, audit.stored) == (DEVICES + 15, DEVICES + 15), audit
    assert audit.lost == audit.duplicated == audit.unexpected == audit.fire_after_fault == 0, audit

    # spelled out: one fire per fire device, one main-power fault per device, fire first
    fired = {str(f.device) for f in report.fires}
    alarms = {e.device: e.seq for e in events if e.kind == "alarm"}
    faults = {e.device: e.seq for e in events if e.kind == "fault"}
    assert set(alarms) == fired and set(faults) == {str(FIRST + i) for i in range(DEVICES)}
    assert all(alarms[d] < faults[d] for d in fired)
    assert len({e.id for e in events}) == len(events)
    conditions = Counter(str(d.get("condition")) for d in docs if d["kind"] == "fault")
    assert conditions == {"main_power_fault": DEVICES}
    assert all(d["type"] == "fire_alarm" and not d["test"] for d in docs if d["kind"] == "alarm")
