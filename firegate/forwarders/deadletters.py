"""The dead-letter stream, read and replayed by ops (`firegate deadletter list|replay`).

A courier parks an event it could not deliver (too old, or refused as malformed) in stream
``FIRE_DEADLETTER`` with headers saying where it came from and why. Replaying republishes the
event on its original subject (under a message id of its own; receivers deduplicate it by its
idempotency key), marked for the consumer that parked it: the other destinations, the lifecycle
and the fault tracker skip the copy. Then it is removed from the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime

import nats.errors
import nats.js.errors
from nats.js.client import JetStreamContext

from firegate.bus.jetstream import MSG_ID_HEADER
from firegate.forwarders.courier import DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM, REPLAY_FOR


@dataclass(frozen=True, slots=True)
class DeadLetter:
    seq: int
    consumer: str
    parked_at: datetime | None
    destination: str
    reason: str
    detail: str
    subject: str
    event_id: str
    data: bytes

    def row(self) -> dict[str, object]:
        return {
            "seq": self.seq,
            "parked_at": self.parked_at.isoformat().replace("+00:00", "Z") if self.parked_at else None,
            "destination": self.destination,
            "consumer": self.consumer,
            "reason": self.reason,
            "detail": self.detail,
            "subject": self.subject,
            "event_id": self.event_id,
        }


async def dead_letters(js: JetStreamContext, limit: int = 1000) -> list[DeadLetter]:
    """The parked events, oldest first (at most ``limit``)."""
    try:
        info = await js.stream_info(DEAD_LETTER_STREAM)
    except nats.js.errors.NotFoundError:
        return []
    if info.state.messages == 0:
        return []
    sub = await js.subscribe(f"{DEAD_LETTER_PREFIX}.>", stream=DEAD_LETTER_STREAM, ordered_consumer=True)
    out: list[DeadLetter] = []
    try:
        while len(out) < min(limit, info.state.messages):
            try:
                msg = await sub.next_msg(timeout=2.0)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            out.append(
                _letter(
                    msg.metadata.sequence.stream, msg.subject, msg.headers, msg.data, msg.metadata.timestamp
                )
            )
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


async def dead_letter(js: JetStreamContext, seq: int) -> DeadLetter | None:
    """One parked event by its sequence in the dead-letter stream."""
    try:
        msg = await js.get_msg(DEAD_LETTER_STREAM, seq)
    except nats.js.errors.NotFoundError:
        return None
    return _letter(seq, msg.subject or "", msg.headers, msg.data or b"", None)


def _letter(
    seq: int, subject: str, headers: dict[str, str] | None, data: bytes, parked_at: datetime | None
) -> DeadLetter:
    h = headers or {}
    parts = subject.split(".")  # firegate.deadletter.<consumer>.<device, or site for an incident>
    return DeadLetter(
        seq=seq,
        consumer=parts[2] if len(parts) > 2 else "",
        parked_at=parked_at,
        destination=h.get("Firegate-Destination", ""),
        reason=h.get("Firegate-Reason", ""),
        detail=h.get("Firegate-Detail", ""),
        subject=h.get("Firegate-Subject", ""),
        event_id=h.get("Firegate-Event-Id", ""),
        data=data,
    )


async def replay(js: JetStreamContext, letters: list[DeadLetter], stream: str = "FIRE") -> list[int]:
    """Republish each on its original subject for the consumer that parked it (the others skip
    the copy), then remove it; the sequences replayed."""
    done = []
    for letter in letters:
        if not letter.subject.startswith("fire."):
            continue  # not an event of stream FIRE: leave it for a person to look at
        # a message id of its own: the original's may still be in the duplicate window, and a
        # deduplicated replay would be no replay at all (receivers deduplicate by their key)
        headers = {
            MSG_ID_HEADER: f"{letter.event_id or letter.subject}.replay.{letter.seq}",
            REPLAY_FOR: letter.consumer,
        }
        # stored now, or (duplicate) by an earlier replay that died before the removal
        await js.publish(letter.subject, letter.data, timeout=5.0, stream=stream, headers=headers)
        async with asyncio.timeout(5.0):
            await js.delete_msg(DEAD_LETTER_STREAM, letter.seq)
        done.append(letter.seq)
    return done
