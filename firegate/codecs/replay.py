"""Replay a capture through a line codec into the events the live path would store.

The bytes go through the codec's framer and decoder, then `unit_of` and the one `Normalizer`
(with an in-memory status memory, so a restore after a fault is a "fault cleared"), exactly as a
serial line's reports are normalized. Framing and decoding errors come out in stream order with
their reason and byte offset. `firegate codec test` and `firegate.codecs.testing` use this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from firegate.codecs.api import Context, DefaultPoints, LineCodec, PointTable, unit_of
from firegate.codecs.errors import CodecError

FIXED_TIME = datetime(2026, 1, 1, 8, 0, 0)  # the device-time clock a golden replay runs at


@dataclass(slots=True)
class Replay:
    items: list[dict[str, Any]] = field(default_factory=list)  # events and errors, in stream order

    @property
    def events(self) -> list[dict[str, Any]]:
        return [i for i in self.items if "error" not in i]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [i for i in self.items if "error" in i]


def read_capture(data: bytes, form: str = "auto") -> bytes:
    """A capture's bytes: ``raw`` as is, ``hex`` hex text (whitespace, 0x and # comments
    ignored), ``auto`` hex when every line reads as hex, raw otherwise."""
    if form == "raw":
        return data
    try:
        text = data.decode("utf-8")  # comments may be in any language
    except UnicodeDecodeError:
        if form == "hex":
            raise ValueError("not a hex capture: it is not text") from None
        return data
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    digits = re.sub(r"\s+|0x|,", "", "".join(lines), flags=re.IGNORECASE)
    if digits and len(digits) % 2 == 0 and re.fullmatch(r"[0-9a-fA-F]*", digits):
        return bytes.fromhex(digits)
    if form == "hex":
        raise ValueError("not a hex capture: hex digits, whitespace and # comments only")
    return data


def _error(e: CodecError, offset: int) -> dict[str, Any]:
    return {"error": e.reason, "offset": offset, "message": str(e), "data": e.data.hex()}


async def replay(
    codec: LineCodec[Any],
    chunks: Iterable[bytes],
    *,
    device: str = "panel-1",
    options: Mapping[str, Any] | None = None,
    points: PointTable | None = None,
    at: datetime | None = None,
) -> Replay:
    """The events (as JSON-ready dicts) and errors of a capture; ``at``: the device-time clock
    for frames without a time of their own and the receive time (None: now, as live)."""
    from firegate.bus.kvmemory import MemoryStatusMemory
    from firegate.devicetime import device_time
    from firegate.ingest.normalize import Normalizer

    memory = MemoryStatusMemory()
    origin = f"serial:{codec.name}"
    normalizer = Normalizer(memory, origin=origin)
    context = Context(
        device,
        points or DefaultPoints(),
        dict(options or {}),
        clock=(lambda: at) if at is not None else None,
    )
    received = device_time(at) if at is not None else None
    out = Replay()
    framer = codec.framer()
    # the stream offset of the next item: the built-in framers hand every byte on, as a frame or an
    # error's data (but a printer's runaway record past its first 512 bytes); a plugin's may not
    offset = 0
    for chunk in chunks:
        for item in framer.feed(chunk):
            if isinstance(item, CodecError):
                out.items.append(_error(item, offset))
                offset += len(item.data)
                continue
            raw = codec.raw(item)
            try:
                readings = codec.decode(item, context)
            except CodecError as e:
                out.items.append(_error(e, offset))
                readings = []
            for reading in readings:
                normalized = await normalizer.normalize(
                    reading.device or device,
                    unit_of(reading),
                    frame_time=reading.time,
                    raw=raw,
                    received_at=received,
                    origin=origin,
                )
                await memory.put_many(normalized.states)
                out.items.extend(e.model_dump(mode="json") for e in normalized.events)
            offset += len(raw)
    return out
