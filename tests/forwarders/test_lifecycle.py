"""The alarm lifecycle against a private nats-server: filing, the API, policies, instances, crashes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext

from firegate.bus.events import CenterInfo, FireAlarm, Point, SiteInfo, parse_event
from firegate.bus.jetstream import MSG_ID_HEADER, StreamSettings, ensure_kv, ensure_stream
from firegate.forwarders import api
from firegate.forwarders.incident import Policy, open_incident
from firegate.forwarders.lifecycle import Lifecycle
from firegate.forwarders.store import BUCKET, AlarmStore, Conflict
from tests.natsserver import nats_client, running_nats_server, wait_until

MANUAL_OFF = Policy(manual=False, detectors=0, escalate_after=None)


def alarm(
    device: str = "74565",
    site: str | None = None,
    component: int = 1,
    *,
    manual: bool = False,
    test: bool = False,
    at: datetime | None = None,
    tag: str = "",
) -> FireAlarm:
    received = at or datetime.now(UTC)
    return FireAlarm(
        id=f"{device}.2.{component:04x}{tag}{received.timestamp():.6f}.alarm",
        device=device,
        site=site or device,
        occurred_at=received.replace(tzinfo=None),
        received_at=received,
        source="component",
        point=Point(
            system_type=1,
            system_address=1,
            component_type=23 if manual else 42,
            component_address=component,
            description=f"detector {component}",
        ),
        manual=manual,
        test=test,
    )


def site_info(site_id: str) -> SiteInfo:
    if site_id == "SH-1":
        return SiteInfo(
            id="SH-1", registered=True, unit="上海测试大厦", address="浦东新区 1 号", phone="021-1"
        )
    return SiteInfo(id=site_id, registered=False)


async def publish(js: JetStreamContext, event: FireAlarm) -> None:
    await js.publish(event.subject, event.model_dump_json().encode(), headers={MSG_ID_HEADER: event.id})


async def stored(nc: NATS, subject: str) -> list[Any]:
    sub = await nc.jetstream().subscribe(subject, ordered_consumer=True)
    out = []
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        while True:
            msg = await sub.next_msg(timeout=0.5)
            out.append(parse_event(msg.data))
    await sub.unsubscribe()
    return out


class Bench:
    def __init__(self, nc: NATS, store: AlarmStore) -> None:
        self.nc, self.store = nc, store
        self.js = nc.jetstream(timeout=5.0)

    @contextlib.asynccontextmanager
    async def lifecycle(self, policy: Policy = MANUAL_OFF, **kw: Any) -> AsyncIterator[Lifecycle]:
        lc = Lifecycle(self.nc, self.store, site_info, policy, tick=0.1, **kw)
        task = asyncio.create_task(lc.run())
        try:
            await asyncio.wait_for(lc.ready.wait(), 10)
            yield lc
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def call(self, action: str, **body: Any) -> dict[str, Any]:
        return await api.call(self.nc, action, body, 5.0)

    async def rows(self, **body: Any) -> list[dict[str, Any]]:
        answer = await self.call("list", **body)
        assert answer["ok"], answer
        rows: list[dict[str, Any]] = answer["alarms"]
        return rows


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as nc:
        js = nc.jetstream(timeout=5.0)
        await ensure_stream(js, StreamSettings())
        kv = await ensure_kv(js, BUCKET)
        yield Bench(nc, AlarmStore(kv))


async def test_an_alarm_is_pending_then_confirmed_by_an_operator(bench: Bench) -> None:
    center = CenterInfo(id="XH-FRMC", name="徐汇区消防远程监控中心", phone="021-64119119")
    async with bench.lifecycle(center=center):
        a = alarm(site="SH-1")
        await publish(bench.js, a)
        await wait_until(lambda: bench.rows(), 5)
        rows = await bench.rows()
        assert [(r["id"], r["state"], r["device"], r["site"], r["kind"]) for r in rows] == [
            (a.id, "pending", "74565", "SH-1", "alarm")
        ]
        assert {"occurred_at", "received_at", "location"} <= rows[0].keys()
        assert rows[0]["location"] == "detector 1"
        answer = await bench.call("confirm", id=a.id, operator="zhang", note="called the site")
        assert answer["ok"] and answer["state"] == "confirmed", answer
        again = await bench.call("confirm", id=a.id, operator="li")  # a retry: idempotent
        assert again["ok"] and again["already"] and again["decided_by"] == "zhang", again
        contrary = await bench.call("dismiss", id=a.id, reason="false", operator="li")
        assert not contrary["ok"] and contrary["error"] == "already_decided"
        (confirmed,) = await stored(bench.nc, "fire.confirmed.>")
        report = confirmed.incident
        assert confirmed.subject == "fire.confirmed.SH-1"  # the incident's site
        assert report.update == 1 and report.confirmed_by == "zhang" and report.confirmation == "operator"
        assert report.center == center  # who sends it, in every body
        assert report.new_alarm_ids == [a.id] and report.alarm_count == 1
        assert report.site.unit == "上海测试大厦" and [x.id for x in report.alarms] == [a.id]
        assert report.note == "called the site"
        assert (await bench.rows())[0]["state"] == "confirmed"


async def test_dismissed_alarms_never_produce_a_confirmation(bench: Bench) -> None:
    async with bench.lifecycle():
        a = alarm()
        await publish(bench.js, a)
        await wait_until(lambda: bench.rows(), 5)
        bad = await bench.call("dismiss", id=a.id, reason="maybe", operator="zhang")
        assert not bad["ok"] and bad["error"] == "bad_reason"
        answer = await bench.call("dismiss", id=a.id, reason="false", operator="zhang")
        assert answer["ok"] and answer["state"] == "dismissed"
        assert not (await bench.call("confirm", id=a.id))["ok"]
        unknown = await bench.call("confirm", id="no-such-alarm")
        assert not unknown["ok"] and unknown["error"] == "unknown"
        (dismissed,) = await stored(bench.nc, "fire.dismissed.>")
        assert dismissed.reason == "false" and dismissed.alarm_ids == [a.id]
        assert await stored(bench.nc, "fire.confirmed.>") == []


async def test_alarms_of_a_site_form_one_incident_and_later_alarms_update_it(bench: Bench) -> None:
    async with bench.lifecycle():
        first = alarm(site="SH-1", component=1)
        await publish(bench.js, first)
        await publish(bench.js, alarm("74566", site="SH-1", component=2))  # another UITD, same site
        await publish(bench.js, alarm("99", component=3))  # unregistered: a site of its own
        await wait_until(lambda: _count(bench, 3), 5)
        rows = await bench.rows()
        incidents: dict[str, set[str]] = {r["site"]: set() for r in rows}
        for r in rows:
            incidents[r["site"]].add(r["incident"])
        assert {k: len(v) for k, v in incidents.items()} == {"SH-1": 1, "99": 1}
        await bench.call("confirm", id=first.id, operator="zhang")
        later = alarm("74566", site="SH-1", component=7)
        await publish(bench.js, later)
        await wait_until(lambda: _stored_count(bench, "fire.confirmed.>", 2), 5)
        updates = await stored(bench.nc, "fire.confirmed.>")
        assert [u.incident.update for u in updates] == [1, 2]
        assert len(updates[1].incident.alarms) == 3 and updates[1].alarm_ids == [later.id]
        assert updates[1].incident.confirmed_by == "zhang"


async def _count(bench: Bench, n: int) -> bool:
    return len(await bench.rows()) >= n


async def _stored_count(bench: Bench, subject: str, n: int) -> bool:
    return len(await stored(bench.nc, subject)) >= n


async def test_a_repeated_detector_is_merged_as_a_duplicate(bench: Bench) -> None:
    async with bench.lifecycle():
        a = alarm(component=5)
        again = alarm(component=5, tag="x")  # the same detector reported again, new time tag
        await publish(bench.js, a)
        await publish(bench.js, again)
        await wait_until(lambda: _count(bench, 2), 5)
        states = {r["id"]: (r["state"], r["merged_into"]) for r in await bench.rows()}
        assert states == {a.id: ("pending", None), again.id: ("merged", a.id)}
        (merged,) = await stored(bench.nc, "fire.dismissed.>")
        assert merged.reason == "duplicate" and merged.merged_into == a.id


async def test_policies_confirm_without_an_operator(bench: Bench) -> None:
    policy = Policy(manual=True, detectors=2, detector_window=60, escalate_after=0.5)
    async with bench.lifecycle(policy):
        await publish(bench.js, alarm("1", component=1, manual=True))  # manual call point
        await publish(bench.js, alarm("2", component=1))  # two detectors of one site
        await publish(bench.js, alarm("2", component=2))
        await publish(bench.js, alarm("3", component=1))  # nobody answers: escalation
        await publish(bench.js, alarm("4", component=1, manual=True, test=True))  # test mode: never
        await wait_until(lambda: _stored_count(bench, "fire.confirmed.>", 3), 10)
        await asyncio.sleep(1.0)  # past the escalation deadline of the test-mode alarm too
        by = {e.device: e.incident.confirmed_by for e in await stored(bench.nc, "fire.confirmed.>")}
        assert by == {"1": "policy:manual_alarm", "2": "policy:multi_detector", "3": "policy:escalation"}
        test_rows = [r for r in await bench.rows() if r["device"] == "4"]
        assert [r["state"] for r in test_rows] == ["pending"] and test_rows[0]["test"] is True


async def test_redelivered_and_retransmitted_alarms_change_nothing(bench: Bench) -> None:
    async with bench.lifecycle() as lc:
        a = alarm()
        await publish(bench.js, a)
        await wait_until(lambda: _count(bench, 1), 5)
        # the same event delivered again (past the duplicate window, or a redelivery)
        await lc.ingest(a)
        await lc.ingest(a)
        rows = await bench.rows()
        assert len(rows) == 1


async def test_two_instances_share_the_work_and_agree(bench: Bench) -> None:
    async with bench.lifecycle() as one, bench.lifecycle() as two:
        events = [alarm(f"{100 + i % 5}", site=f"S{i % 5}", component=i) for i in range(30)]
        await asyncio.gather(*(publish(bench.js, e) for e in events))
        await wait_until(lambda: _count(bench, 30), 10)
        await wait_until(lambda: len(one.rows()) == 30 and len(two.rows()) == 30, 5)
        rows = await bench.rows()
        per_site: dict[str, set[str]] = {}
        for r in rows:
            per_site.setdefault(r["site"], set()).add(r["incident"])
        assert all(len(v) == 1 for v in per_site.values()) and len(per_site) == 5
        # both answer for the same state: confirm through one, the other sees it
        target = rows[0]
        assert (await bench.call("confirm", id=target["incident"], operator="wang"))["ok"]
        await wait_until(
            lambda: all(r["state"] == "confirmed" for lc in (one, two) for r in lc.rows(site=target["site"])),
            5,
        )
        assert len(await stored(bench.nc, "fire.confirmed.>")) == 1


async def test_state_survives_a_restart_of_the_lifecycle(bench: Bench) -> None:
    a = alarm()
    async with bench.lifecycle():
        await publish(bench.js, a)
        await wait_until(lambda: _count(bench, 1), 5)
    async with bench.lifecycle() as fresh:
        assert [r["id"] for r in fresh.rows()] == [a.id]
        assert (await bench.call("confirm", id=a.id))["ok"]


async def test_an_outbox_left_by_a_crash_is_published_once(bench: Bench) -> None:
    # a crash after storing a decision and before publishing it: the outbox is in the KV
    a = alarm(site="SH-1")
    incident = open_incident(a)
    incident.add(a, datetime.now(UTC), site_info("SH-1"))
    incident.confirm("zhang", "operator", datetime.now(UTC), site_info("SH-1"))
    await bench.store.save(incident, None)
    await bench.store.remember(a.id, incident.id)
    async with bench.lifecycle():
        await wait_until(lambda: _stored_count(bench, "fire.confirmed.>", 1), 5)
        await wait_until(_outbox_empty(bench, incident.id), 5)
        await asyncio.sleep(0.3)
    assert len(await stored(bench.nc, "fire.confirmed.>")) == 1


def _outbox_empty(bench: Bench, incident_id: str) -> Any:
    async def check() -> bool:
        loaded = await bench.store.load(incident_id)
        return loaded is not None and not loaded[0].outbox

    return check


async def test_closed_incidents_are_forgotten_after_the_retention(bench: Bench) -> None:
    async with bench.lifecycle(retention=0.2) as lc:
        a = alarm(at=datetime.now(UTC) - timedelta(seconds=5))
        await publish(bench.js, a)
        await wait_until(lambda: _count(bench, 1), 5)
        assert (await bench.call("dismiss", id=a.id, reason="test"))["ok"]
        await wait_until(lambda: not lc.rows(), 5)
        assert await bench.store.incident_of(a.id) is None


async def test_the_api_answers_bad_requests_clearly(bench: Bench) -> None:
    async with bench.lifecycle():
        answer = await bench.call("confirm")
        assert not answer["ok"] and answer["error"] == "bad_request"
        msg = await bench.nc.request(f"{api.PREFIX}.list", b"[1]", timeout=5)
        assert json.loads(msg.data)["error"] == "bad_request"


async def test_the_lifecycle_rides_out_a_nats_restart(tmp_path: Path) -> None:
    policy = Policy(manual=False, detectors=0, escalate_after=1.0)
    async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as nc:
        js = nc.jetstream(timeout=5.0)
        await ensure_stream(js, StreamSettings())
        bench = Bench(nc, AlarmStore(await ensure_kv(js, BUCKET)))
        async with bench.lifecycle(policy, resync=0.5):
            server.kill()
            await asyncio.sleep(0.5)
            await server.start()
            await wait_until(lambda: nc.is_connected, 10)
            a = alarm()
            await wait_until(_published(bench, a), 10)
            await wait_until(lambda: _stored_count(bench, "fire.confirmed.>", 1), 15)
            (event,) = await stored(nc, "fire.confirmed.>")
            assert event.incident.confirmed_by == "policy:escalation"
            assert (await bench.rows())[0]["state"] == "confirmed"


def _published(bench: Bench, event: FireAlarm) -> Any:
    async def attempt() -> bool:
        try:
            await publish(bench.js, event)
        except Exception:
            return False
        return True

    return attempt


async def test_a_new_lifecycle_files_only_recent_alarms(bench: Bench) -> None:
    old = alarm("7")
    await publish(bench.js, old)
    await asyncio.sleep(1.2)
    async with bench.lifecycle(catch_up=1.0):
        recent = alarm("8")
        await publish(bench.js, recent)
        await wait_until(lambda: _count(bench, 1), 5)
        await asyncio.sleep(0.3)
        assert [r["id"] for r in await bench.rows()] == [recent.id]


async def test_two_instances_opening_a_site_at_once_agree_on_one_incident(bench: Bench) -> None:
    async with bench.lifecycle() as one, bench.lifecycle() as two:
        slow = AlarmStore(bench.store.kv)
        create = slow.save

        async def save_slowly(incident: Any, revision: int | None) -> int:
            if revision is None:
                await asyncio.sleep(0.3)  # the other instance reads the head meanwhile
            return await create(incident, revision)

        slow.save = save_slowly  # type: ignore[method-assign]
        one.store = slow
        a, b = alarm("1", site="SH-1", component=1), alarm("2", site="SH-1", component=2)
        await asyncio.gather(one.ingest(a), two.ingest(b))
        await wait_until(lambda: _count(bench, 2), 5)
        rows = await bench.rows()
        assert len({r["incident"] for r in rows}) == 1, rows


async def test_a_redelivered_alarm_of_a_dismissed_incident_stays_dismissed(bench: Bench) -> None:
    async with bench.lifecycle() as lc:
        first, second = alarm(component=1), alarm(component=2)
        await lc.ingest(first)
        remember = lc.store.remember

        async def lost(alarm_id: str, incident_id: str) -> None:
            raise TimeoutError("the index write never came back")

        lc.store.remember = lost  # type: ignore[method-assign]
        with pytest.raises(TimeoutError):
            await lc.ingest(second)  # joined and stored, not indexed: redelivered later
        lc.store.remember = remember  # type: ignore[method-assign]
        assert (await bench.call("dismiss", id=second.id, reason="false"))["ok"]
        await lc.ingest(second)  # the redelivery
        rows = await bench.rows()
        assert sorted(r["state"] for r in rows) == ["dismissed", "dismissed"]
        assert len({r["incident"] for r in rows}) == 1


async def test_a_dismissal_never_closes_alarms_the_operator_has_not_seen(bench: Bench) -> None:
    async with bench.lifecycle() as lc:
        faulty, fire = alarm(component=1), alarm(component=7, tag="later")
        await lc.ingest(faulty)
        await lc.ingest(fire)  # a real fire elsewhere in the building, after the false alarm
        refused = await bench.call("dismiss", id=faulty.id, reason="false")
        assert not refused["ok"] and refused["error"] == "changed" and fire.id in refused["detail"]
        assert {r["state"] for r in await bench.rows()} == {"pending"}
        ok = await bench.call("dismiss", id=fire.id, reason="false")  # seen them all: allowed
        assert ok["ok"] and ok["state"] == "dismissed"


async def test_an_incident_acted_on_while_losing_the_head_race_is_kept(bench: Bench) -> None:
    async with bench.lifecycle() as lc:
        a = alarm(site="SH-1")
        set_head = lc.store.set_head

        async def lose_after_a_confirm(head_key: str, incident_id: str, revision: int | None) -> None:
            lc.view[incident_id] = (await lc.store.load(incident_id))[0]  # type: ignore[index]
            await lc.confirm(incident_id, "zhang")  # it was visible: an operator acted on it
            await set_head(head_key, "inc-someone-else", revision)
            raise Conflict("head")

        lc.store.set_head = lose_after_a_confirm  # type: ignore[method-assign]
        kept = await lc.ingest(a)
        assert kept.state == "confirmed" and kept.alarm(a.id) is not None
        rows = await bench.rows()
        assert [(r["id"], r["state"], r["incident"]) for r in rows] == [(a.id, "confirmed", kept.id)]
        assert len(await stored(bench.nc, "fire.confirmed.>")) == 1
