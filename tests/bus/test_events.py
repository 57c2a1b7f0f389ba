"""Every event kind through the real path: JetStreamSink/Publisher -> stream FIRE -> parse_event."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from firegate.bus.events import EVENT_MODELS, Envelope, parse_event
from firegate.bus.jetstream import MSG_ID_HEADER
from firegate.bus.publisher import Publisher, PublisherSettings, PublishOutcome
from firegate.bus.schema import example_events
from firegate.bus.sink import JetStreamSink
from firegate.bus.spool import Spool

pytestmark = pytest.mark.timeout(30)

SETTINGS = PublisherSettings(retry_for=2.0, ack_timeout=1.0, backoff_initial=0.02, backoff_max=0.1)


def events() -> list[Envelope]:
    """One realistic event of every model, plus one from a panel (a configured, non-numeric id)."""
    out = example_events()
    online = next(e for e in out if e.type == "device_online")
    out.append(
        online.model_copy(
            update={
                "device": "panel-xh-0002",
                "site": "SH-XH-0002",
                "id": "panel-xh-0002.online.1715904307216",
            }
        )
    )
    return out


async def consume(js: JetStreamContext, subject: str, count: int) -> list[Msg]:
    """Exactly `count` messages from stream FIRE on `subject` (a filter), from the start."""
    sub = await js.subscribe(subject, stream="FIRE", ordered_consumer=True)
    try:
        msgs = [await sub.next_msg(timeout=5.0) for _ in range(count)]
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await sub.next_msg(timeout=0.3)  # and nothing more
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await sub.unsubscribe()
    return msgs


async def test_every_event_kind_is_stored_on_its_subject_and_parses_back(
    js: JetStreamContext, nc: NATS, spool: Spool
) -> None:
    sent = events()
    assert {type(e) for e in sent} == set(EVENT_MODELS)
    async with Publisher(nc, spool, SETTINGS) as pub:
        sink = JetStreamSink(pub)
        for event in sent:  # one frame's worth each, so the stream keeps this order
            await sink.publish([event], fire=event.kind == "alarm")
    assert spool.pending_records == 0  # all went to JetStream, none to the spool

    for msg, event in zip(await consume(js, "fire.>", len(sent)), sent, strict=True):
        # an incident's events on its site, every other event on its device
        key = event.site if event.kind in ("confirmed", "dismissed") else event.device
        assert msg.subject == f"fire.{event.kind}.{key}"
        assert msg.headers is not None and msg.headers[MSG_ID_HEADER] == event.id
        got = parse_event(msg.data)
        assert type(got) is type(event) and got == event

    for subject in sorted({e.subject for e in sent}):  # what a consumer of one subject sees
        expected = [e for e in sent if e.subject == subject]
        stored = [parse_event(m.data) for m in await consume(js, subject, len(expected))]
        assert stored == expected, subject


async def test_a_retransmitted_event_is_stored_once(js: JetStreamContext, nc: NATS, spool: Spool) -> None:
    alarm = next(e for e in example_events() if e.type == "fire_alarm")
    # the UITD retransmits (no confirm within 10 s): same object bytes, so the same id, though
    # firegate received it later (and maybe on another gateway)
    again = alarm.model_copy(update={"received_at": alarm.received_at + timedelta(seconds=10)})
    # a genuinely new report of the same point (its own time tag): a new id, stored
    later = alarm.model_copy(
        update={
            "id": "74565.2.0f6b3e9a1c2d4b5a6978.alarm",
            "received_at": alarm.received_at + timedelta(minutes=3),
        }
    )
    async with Publisher(nc, spool, SETTINGS) as pub:
        sink = JetStreamSink(pub)
        await sink.publish([alarm], fire=True)
        await sink.publish([again], fire=True)  # accepted (the device gets its confirm) ...
        outcome = await pub.publish(again.subject, again.model_dump_json().encode(), again.id, fire=True)
        assert outcome is PublishOutcome.DUPLICATE  # ... but not stored again
        await sink.publish([later], fire=True)

    info = await js.stream_info("FIRE")
    assert info.state.messages == 2
    stored = [parse_event(m.data) for m in await consume(js, alarm.subject, 2)]
    assert stored == [alarm, later]  # the first copy is the one kept
