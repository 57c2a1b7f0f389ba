"""What a forwarder delivers, and the interface of a destination.

A `Destination` takes one event at a time and either returns (the outside
system accepted it) or raises `DeliveryError`. The courier (firegate.forwarders.courier)
owns everything else: the durable consumer, order per key, retries with backoff,
acking only after acceptance, and dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from firegate.bus.events import Envelope


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to deliver, with what the stream says about it."""

    event: Envelope
    subject: str
    data: bytes  # the event as stored (JSON)
    stream_seq: int
    attempt: int = 1  # 1 on the first try; the courier increments it on each retry


class Destination(Protocol):
    """An outside system. ``name`` is the low-cardinality metric label (``119``, ``mqtt``, ``webhook``)."""

    name: str

    async def deliver(self, delivery: Delivery) -> None:
        """Return once the outside system accepted it; raise DeliveryError otherwise.

        Must honour its own timeout (never hang) and be safe to call again with the same
        delivery: the courier retries, and a crash after acceptance redelivers it.
        """
        ...

    async def close(self) -> None:
        """Release connections; called once when the courier stops."""
        ...
