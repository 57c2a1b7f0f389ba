"""Destinations built from the configuration: webhooks get the faults their filters allow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.js.client import JetStreamContext

from firegate.bus.events import CenterInfo, DeviceOffline, Envelope, FaultRaised, FireConfirmed, Point
from firegate.bus.jetstream import MSG_ID_HEADER, StreamSettings, ensure_stream
from firegate.config import Settings
from firegate.forwarders.courier import ensure_dead_letter_stream
from firegate.forwarders.delivery import Delivery
from firegate.forwarders.http import HttpPoster
from firegate.forwarders.routes import dispatch_couriers, durable_name, fault_couriers
from firegate.tools.fake119 import FakeDispatch119
from tests.natsserver import nats_client, running_nats_server, wait_until


def fault(device: str, site: str, system_type: int, n: int) -> FaultRaised:
    now = datetime.now(UTC)
    return FaultRaised(
        id=f"{device}.2.{n:04x}.fault",
        device=device,
        site=site,
        occurred_at=None,
        received_at=now,
        condition="fault",
        point=Point(system_type=system_type, system_address=1, component_address=n),
    )


def offline(device: str, site: str) -> DeviceOffline:
    now = datetime.now(UTC)
    return DeviceOffline(
        id=f"{device}.offline.1",
        device=device,
        site=site,
        occurred_at=None,
        received_at=now,
        last_seen=now,
        silent_s=120.0,
    )


async def publish(js: JetStreamContext, event: Envelope) -> None:
    await js.publish(event.subject, event.model_dump_json().encode(), headers={MSG_ID_HEADER: event.id})


@pytest.fixture
async def js(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as nc:
        ctx = nc.jetstream(timeout=5.0)
        await ensure_stream(ctx, StreamSettings())
        await ensure_dead_letter_stream(ctx)
        yield ctx


async def test_webhooks_get_the_faults_their_filters_allow(js: JetStreamContext) -> None:
    async with FakeDispatch119() as everything, FakeDispatch119() as picky:
        settings = Settings(
            faults={  # type: ignore[arg-type]
                "webhooks": [
                    {"url": everything.url, "backoff_initial": 0.05},
                    {"url": picky.url, "sites": ["A"], "system_types": [1], "kinds": ["fault"]},
                ]
            }
        )
        couriers = fault_couriers(js, settings)
        assert [c.settings.subjects for c in couriers] == [
            ("fire.fault.>", "fire.device.>"),
            ("fire.fault.>",),
        ]
        tasks = [asyncio.create_task(c.run()) for c in couriers]
        try:
            events: list[Envelope] = [
                fault("1", "A", 1, 1),  # both
                fault("2", "B", 1, 2),  # another site: not the picky one
                fault("1", "A", 10, 3),  # another system: not the picky one
                offline("1", "A"),  # a device event: not the picky one (kinds)
            ]
            for e in events:
                await publish(js, e)
            await everything.wait_for(4, 10)
            await picky.wait_for(1, 10)
            await wait_until(lambda: _all_acked(js, [c.settings.durable for c in couriers]), 5)
            assert picky.accepted == [events[0].id]
            assert sorted(everything.accepted) == sorted(e.id for e in events)
            assert everything.requests[0].body is not None and "type" in everything.requests[0].body
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t


async def _all_acked(js: JetStreamContext, durables: list[str]) -> bool:
    for name in durables:
        info = await js.consumer_info("FIRE", name)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


def test_every_119_endpoint_gets_its_own_durable_consumer() -> None:
    settings = Settings(dispatch119={"url": "http://a.example/in, https://b.example/in"})  # type: ignore[arg-type]
    couriers = dispatch_couriers(None, settings)  # type: ignore[arg-type]
    names = [c.settings.durable for c in couriers]
    assert names == [durable_name("119", "http://a.example/in"), durable_name("119", "https://b.example/in")]
    assert len(set(names)) == 2 and all(n.startswith("fwd-119-") for n in names)
    assert all(c.settings.subjects == ("fire.confirmed.>",) for c in couriers)
    assert couriers[0].accept(FireConfirmed.model_construct()) and not couriers[0].accept(offline("1", "A"))


def _confirmed(center: CenterInfo | None = None) -> Delivery:
    from firegate.bus.schema import example_events

    event = next(e for e in example_events() if isinstance(e, FireConfirmed))
    incident = event.incident.model_copy(update={"center": center or CenterInfo()})
    event = event.model_copy(update={"incident": incident})
    return Delivery(event, event.subject, event.model_dump_json().encode(), 1)


def test_the_119_body_names_the_center_of_the_config(caplog: pytest.LogCaptureFixture) -> None:
    """An event whose incident names no center (stored before `center` was set, or by a lifecycle
    that was not told) is POSTed naming the forwarder's: every body says who sends it."""
    center = {"id": "SH-XH-FRMC", "name": "徐汇区消防远程监控中心", "phone": "021-64119119"}
    settings = Settings(dispatch119={"url": "http://a.example/in"}, center=center)  # type: ignore[arg-type]
    (courier,) = dispatch_couriers(None, settings)  # type: ignore[arg-type]
    poster = courier.destination
    assert isinstance(poster, HttpPoster)
    body = json.loads(poster._body(_confirmed()))
    assert body["center"] == center
    named = CenterInfo(id="other", name="另一中心", phone="1")  # the lifecycle's own, kept
    assert json.loads(poster._body(_confirmed(named)))["center"] == named.model_dump()
    # without a configured center: a warning at start, and the event's center as it is
    caplog.set_level(logging.WARNING, "firegate.forwarders.routes")
    bare = Settings(dispatch119={"url": "http://a.example/in"})  # type: ignore[arg-type]
    (courier,) = dispatch_couriers(None, bare)  # type: ignore[arg-type]
    assert isinstance(courier.destination, HttpPoster)
    assert json.loads(courier.destination._body(_confirmed()))["center"] == CenterInfo().model_dump()
    assert any("center.name" in r.getMessage() for r in caplog.records)
