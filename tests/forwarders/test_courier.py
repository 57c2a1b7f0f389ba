"""Couriers against a private nats-server and the fake 119 receiver: once, in order, never lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext

from firegate.bus.events import FireConfirmed, IncidentAlarm, IncidentReport, Point, SiteInfo
from firegate.bus.jetstream import MSG_ID_HEADER, StreamSettings, ensure_stream
from firegate.forwarders.courier import (
    DEAD_LETTER_STREAM,
    Courier,
    CourierSettings,
    ensure_dead_letter_stream,
)
from firegate.forwarders.delivery import Delivery, Destination
from firegate.forwarders.http import HttpPoster
from firegate.forwarders.routes import _by_incident, incident_body, incident_key
from firegate.tools.fake119 import FakeDispatch119
from tests.natsserver import nats_client, running_nats_server, wait_until


def confirmed(incident: str = "inc-1", update: int = 1, device: str = "74565") -> FireConfirmed:
    now = datetime.now(UTC)
    alarms = [
        IncidentAlarm(
            id=f"{device}.2.{i:04x}.alarm",
            device=device,
            occurred_at=now.replace(tzinfo=None),
            received_at=now,
            source="component",
            manual=False,
            point=Point(system_type=1, system_address=1, component_type=42, component_address=i),
        )
        for i in range(update)
    ]
    report = IncidentReport(
        incident_id=incident,
        update=update,
        site=SiteInfo(id="SH-1", registered=True, unit="上海测试大厦", address="浦东新区 1 号"),
        alarms=alarms,
        first_alarm_at=now,
        confirmed_at=now,
        confirmed_by="zhang",
        confirmation="operator",
    )
    return FireConfirmed(
        id=f"{incident}.confirmed.{update}",
        device=device,
        site="SH-1",
        occurred_at=None,
        received_at=now,
        incident=report,
        alarm_ids=[alarms[-1].id],
        after_s=1.0,
    )


async def publish(js: JetStreamContext, event: FireConfirmed) -> None:
    await js.publish(event.subject, event.model_dump_json().encode(), headers={MSG_ID_HEADER: event.id})


class Rig:
    def __init__(self, nc: NATS, fake: FakeDispatch119) -> None:
        self.nc, self.fake = nc, fake
        self.js = nc.jetstream(timeout=5.0)

    def courier(self, **settings: Any) -> Courier:
        options: dict[str, Any] = {"backoff_initial": 0.05, "backoff_max": 0.2, "ack_wait": 2.0}
        options.update(settings)
        poster = HttpPoster(
            self.fake.url, name="119", timeout=1.0, body=incident_body, idempotency_key=incident_key
        )
        return Courier(
            self.js,
            poster,
            CourierSettings(durable="fwd-119-test", subjects=("fire.confirmed.>",), **options),
            key=_by_incident,
        )

    @contextlib.asynccontextmanager
    async def running(self, courier: Courier) -> AsyncIterator[Courier]:
        task = asyncio.create_task(courier.run())
        try:
            await asyncio.wait_for(courier.ready.wait(), 10)
            yield courier
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def dead_letters(self) -> list[Any]:
        sub = await self.js.subscribe("firegate.deadletter.>", ordered_consumer=True)
        out = []
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            while True:
                out.append(await sub.next_msg(timeout=0.5))
        await sub.unsubscribe()
        return out


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with (
        running_nats_server(tmp_path / "nats") as server,
        nats_client(server.url) as nc,
        FakeDispatch119() as fake,
    ):
        js = nc.jetstream(timeout=5.0)
        await ensure_stream(js, StreamSettings())
        await ensure_dead_letter_stream(js)
        yield Rig(nc, fake)


async def test_a_confirmed_fire_reaches_119_once_with_its_idempotency_key(rig: Rig) -> None:
    async with rig.running(rig.courier()):
        await publish(rig.js, confirmed())
        assert await rig.fake.wait_for(1, 5) == ["inc-1:1"]
        body = rig.fake.incidents["inc-1"]
        assert body["site"]["unit"] == "上海测试大厦" and body["incident_schema"] == "firegate.incident/1"
        await asyncio.sleep(0.3)
        assert len(rig.fake.requests) == 1


async def test_an_endpoint_down_for_a_while_gets_the_incident_once_when_back(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.fake.down = True
    with caplog.at_level(logging.INFO, "firegate.forwarders.courier"):
        async with rig.running(rig.courier()):
            await publish(rig.js, confirmed())
            await wait_until(lambda: len(rig.fake.requests) >= 3, 5)  # retried while down
            assert rig.fake.accepted == []
            rig.fake.down = False
            assert await rig.fake.wait_for(1, 5) == ["inc-1:1"]
            await asyncio.sleep(0.5)
            assert rig.fake.accepted == ["inc-1:1"]
    assert await rig.dead_letters() == []
    # the log tells the whole story: the first failure, then the delivery that ended the retries
    lines = [r for r in caplog.records if getattr(r, "event_id", None) == confirmed().id]
    assert "not delivered (attempt 1" in lines[0].getMessage() and lines[0].levelno == logging.WARNING
    assert "delivered at attempt" in lines[-1].getMessage() and lines[-1].levelno == logging.INFO


async def test_updates_of_one_incident_arrive_in_order_despite_failures(rig: Rig) -> None:
    rig.fake.fail_next(3)
    async with rig.running(rig.courier()):
        for update in (1, 2, 3):
            await publish(rig.js, confirmed(update=update))
        await publish(rig.js, confirmed("inc-2"))
        await rig.fake.wait_for(4, 10)
    order = [k for k in rig.fake.accepted if k.startswith("inc-1")]
    assert order == ["inc-1:1", "inc-1:2", "inc-1:3"]
    assert rig.fake.incidents["inc-1"]["update"] == 3


async def test_a_refused_payload_is_dead_lettered_at_once_and_others_go_on(rig: Rig) -> None:
    rig.fake.fail_next(1, status=422)
    async with rig.running(rig.courier()):
        await publish(rig.js, confirmed("inc-bad"))
        await wait_until(lambda: len(rig.fake.requests) >= 1, 5)
        await publish(rig.js, confirmed("inc-good"))
        assert await rig.fake.wait_for(1, 5) == ["inc-good:1"]
    (dead,) = await rig.dead_letters()
    assert dead.headers["Firegate-Reason"] == "refused"
    # the incident's site names the subjects, whichever device its first alarm came from
    assert dead.headers["Firegate-Subject"] == "fire.confirmed.SH-1"
    assert dead.subject == "firegate.deadletter.fwd-119-test.SH-1"
    assert FireConfirmed.model_validate_json(dead.data).incident.incident_id == "inc-bad"


async def test_an_event_older_than_max_age_is_dead_lettered_not_dropped(rig: Rig) -> None:
    rig.fake.down = True
    async with rig.running(rig.courier(max_age=0.5)):
        await publish(rig.js, confirmed())
        await wait_until(lambda: _dead_count(rig, 1), 5)
    (dead,) = await rig.dead_letters()
    assert dead.headers["Firegate-Reason"] == "max_age"
    info = await rig.js.consumer_info("FIRE", "fwd-119-test")
    assert info.num_ack_pending == 0 and info.num_pending == 0  # acked only once parked
    assert (await rig.js.stream_info(DEAD_LETTER_STREAM)).state.messages == 1


async def _dead_count(rig: Rig, n: int) -> bool:
    return len(await rig.dead_letters()) >= n


class _DiesAfterAcceptance:
    """The 119 side accepts, then the forwarder process dies before it can ack."""

    name = "119"

    def __init__(self, inner: Destination) -> None:
        self.inner = inner
        self.accepted = asyncio.Event()

    async def deliver(self, delivery: Delivery) -> None:
        await self.inner.deliver(delivery)
        self.accepted.set()
        await asyncio.Event().wait()  # killed here

    async def close(self) -> None:
        await self.inner.close()


async def test_a_courier_killed_mid_delivery_redelivers_and_the_key_deduplicates(rig: Rig) -> None:
    doomed = rig.courier(ack_wait=1.0)
    dying = _DiesAfterAcceptance(doomed.destination)
    doomed.destination = dying
    task = asyncio.create_task(doomed.run())
    await asyncio.wait_for(doomed.ready.wait(), 10)
    await publish(rig.js, confirmed())
    await asyncio.wait_for(dying.accepted.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert rig.fake.accepted == ["inc-1:1"]
    info = await rig.js.consumer_info("FIRE", "fwd-119-test")
    assert info.num_ack_pending == 1  # the receiver has it; the message is not acked
    async with rig.running(rig.courier(ack_wait=1.0)):
        await wait_until(lambda: len(rig.fake.requests) >= 2, 10)  # redelivered after ack_wait
        await wait_until(lambda: _consumer_done(rig), 5)
    assert rig.fake.accepted == ["inc-1:1"]
    assert [(r.key, r.status) for r in rig.fake.requests] == [("inc-1:1", 201), ("inc-1:1", 200)]


async def test_filters_skip_events_and_count_them(rig: Rig) -> None:
    courier = rig.courier()
    courier.accept = lambda event: event.site != "SH-1"
    async with rig.running(courier):
        await publish(rig.js, confirmed())
        await wait_until(lambda: _consumer_done(rig), 5)
    assert rig.fake.requests == []


async def _consumer_done(rig: Rig) -> bool:
    info = await rig.js.consumer_info("FIRE", "fwd-119-test")
    return bool(info.delivered.stream_seq >= 1 and info.num_ack_pending == 0)


async def test_a_new_destination_does_not_get_events_older_than_its_max_age(rig: Rig) -> None:
    await publish(rig.js, confirmed("inc-old"))
    await asyncio.sleep(1.2)
    async with rig.running(rig.courier(max_age=1.0)):
        await publish(rig.js, confirmed("inc-new"))
        assert await rig.fake.wait_for(1, 5) == ["inc-new:1"]
        await asyncio.sleep(0.3)
    assert rig.fake.accepted == ["inc-new:1"] and await rig.dead_letters() == []


async def test_a_bug_in_a_lane_restarts_the_courier_and_loses_nothing(rig: Rig) -> None:
    courier = rig.courier(ack_wait=1.0)
    calls: list[int] = []

    def buggy(delivery: Delivery) -> None:
        calls.append(delivery.stream_seq)
        if len(calls) == 1:
            raise RuntimeError("a bug after acceptance, before the ack")

    courier.on_accepted = buggy
    async with rig.running(courier):
        await publish(rig.js, confirmed())
        await wait_until(lambda: len(calls) >= 2, 10)  # restarted, redelivered, acked
        await wait_until(lambda: _consumer_done(rig), 5)
    assert rig.fake.accepted == ["inc-1:1"] and len(rig.fake.requests) == 2


async def test_after_a_restart_119_never_goes_back_to_an_older_update(rig: Rig) -> None:
    from firegate.forwarders.routes import LatestUpdates

    def courier() -> Courier:
        c = rig.courier(ack_wait=1.0)
        latest = LatestUpdates()
        c.on_accepted, c.superseded = latest.accepted, latest.superseded
        return c

    rig.fake.down = True
    async with rig.running(courier()):
        for update in (1, 2, 3):
            await publish(rig.js, confirmed(update=update))
        await wait_until(lambda: len(rig.fake.requests) >= 2, 5)  # retrying update 1
    rig.fake.down = False
    async with rig.running(courier()):
        await publish(rig.js, confirmed(update=4))  # fetched before the redeliveries
        await wait_until(lambda: _consumer_done(rig), 10)
    updates = [int(k.split(":")[1]) for k in rig.fake.accepted]
    assert updates == sorted(updates) and updates[-1] == 4, updates
    assert rig.fake.incidents["inc-1"]["update"] == 4


async def test_ops_list_and_replay_dead_letters_and_they_arrive(rig: Rig) -> None:
    import json
    import os
    import subprocess
    import sys

    firegate = str(Path(sys.executable).with_name("firegate"))
    url = rig.nc.connected_url
    assert url is not None
    env = dict(os.environ, FIREGATE_NATS__URL=f"nats://{url.hostname}:{url.port}")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [firegate, "deadletter", *args], capture_output=True, text=True, env=env, timeout=30
        )

    rig.fake.fail_next(1, status=422)
    other_fake = FakeDispatch119()
    await other_fake.start()
    other = Courier(
        rig.js,
        HttpPoster(other_fake.url, name="119", body=incident_body, idempotency_key=incident_key),
        CourierSettings(durable="fwd-119-other", subjects=("fire.confirmed.>",)),
        key=_by_incident,
    )
    async with rig.running(rig.courier()), rig.running(other):
        await publish(rig.js, confirmed("inc-parked"))
        await other_fake.wait_for(1, 5)  # the other endpoint took it at once
        await wait_until(lambda: _dead_count(rig, 1), 5)
        listed = await asyncio.to_thread(cli, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        (row,) = json.loads(listed.stdout)
        assert (row["destination"], row["reason"], row["subject"], row["event_id"]) == (
            "119",
            "refused",
            "fire.confirmed.SH-1",
            "inc-parked.confirmed.1",
        )
        assert (await asyncio.to_thread(cli, "replay", "999")).returncode == 1
        replayed = await asyncio.to_thread(cli, "replay", str(row["seq"]))
        assert replayed.returncode == 0, replayed.stderr
        assert await rig.fake.wait_for(1, 10) == ["inc-parked:1"]
        await wait_until(lambda: _consumer_done(rig), 5)
        await asyncio.sleep(0.3)
    await other_fake.stop()
    assert await rig.dead_letters() == []
    assert len(other_fake.requests) == 1  # the replay was for the consumer that parked it only


async def test_a_busy_lane_is_held_and_waiting_snapshots_collapse_to_the_newest(rig: Rig) -> None:
    from firegate.forwarders.routes import LatestUpdates

    def courier(fake: FakeDispatch119) -> Courier:
        c = Courier(
            rig.js,
            HttpPoster(fake.url, name="119", timeout=5.0, body=incident_body, idempotency_key=incident_key),
            CourierSettings(durable="fwd-119-test", subjects=("fire.confirmed.>",), ack_wait=1.0),
            key=_by_incident,
        )
        latest = LatestUpdates()
        c.on_accepted, c.superseded, c.newer = latest.accepted, latest.superseded, latest.newer
        return c

    rig.fake.delay = 1.5  # slow but accepting: each POST outlasts ack_wait
    async with rig.running(courier(rig.fake)):
        for update in range(1, 11):
            await publish(rig.js, confirmed(update=update))
        await wait_until(lambda: _consumer_has(rig, 10), 5)
        # a second forwarder process on the same consumer: the first one's held messages are
        # kept in progress, so none is handed to it while the lane is busy
        async with FakeDispatch119() as second_fake, rig.running(courier(second_fake)):
            await wait_until(lambda: rig.fake.incidents.get("inc-1", {}).get("update") == 10, 15)
            await wait_until(lambda: _consumer_done(rig), 10)
            assert second_fake.requests == []
    updates = [int(k.split(":")[1]) for k in rig.fake.accepted]
    assert updates == sorted(updates) and updates[-1] == 10 and len(updates) <= 2, updates


async def _consumer_has(rig: Rig, n: int) -> bool:
    info = await rig.js.consumer_info("FIRE", "fwd-119-test")
    return bool(info.delivered.stream_seq >= n)


async def test_the_dead_letter_stream_an_older_firegate_made_is_kept_as_it_is(tmp_path: Path) -> None:
    """The stream now comes from `ensure_stream`, as every stream of firegate's: one made by the
    previous code (no allow_atomic) is neither refused nor rewritten."""
    from nats.js.api import StorageType, StreamConfig

    from firegate.forwarders.courier import DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM

    old = StreamConfig(
        name=DEAD_LETTER_STREAM,
        subjects=[f"{DEAD_LETTER_PREFIX}.>"],
        storage=StorageType.FILE,
        num_replicas=1,
        max_age=400 * 86400.0,
    )
    async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as nc:
        js = nc.jetstream(timeout=5.0)
        made = await js.add_stream(old)
        await ensure_dead_letter_stream(js)
        info = await js.stream_info(DEAD_LETTER_STREAM)
        assert info.created == made.created and info.config.subjects == [f"{DEAD_LETTER_PREFIX}.>"]
