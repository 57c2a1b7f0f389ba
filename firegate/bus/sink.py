"""Ingest's sink on JetStream: a batch's events are accepted once each is stored or spooled."""

from __future__ import annotations

from collections.abc import Sequence

from firegate.bus.events import Envelope
from firegate.bus.publisher import Publisher
from firegate.bus.spool import Record


class JetStreamSink:
    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def publish(self, events: Sequence[Envelope], *, fire: bool) -> None:
        """``fire``: a batch of ingest's fire lane, spooled even past the spool's bound."""
        records = [Record(e.subject, e.id, e.model_dump_json().encode(), fire) for e in events]
        await self.publisher.publish_many(records)  # raises when not durable: no confirm is sent
