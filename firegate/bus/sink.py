"""The gateway's sink on JetStream: a frame's events are accepted once each is stored or spooled."""

from __future__ import annotations

from collections.abc import Sequence

from firegate.bus.events import Envelope
from firegate.bus.publisher import Publisher
from firegate.bus.spool import Record


class JetStreamSink:
    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def publish(self, events: Sequence[Envelope], *, fire: bool) -> None:
        # fire events go first within the frame too, and are spooled even past the spool's bound
        ordered = sorted(events, key=lambda e: e.kind != "alarm")
        records = [
            Record(e.subject, e.id, e.model_dump_json().encode(), fire or e.kind == "alarm") for e in ordered
        ]
        await self.publisher.publish_many(records)  # raises when not durable: no confirm is sent
