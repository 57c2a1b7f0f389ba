"""Separate retention by event kind: the records the law asks a year of, and telemetry.

Two JetStream streams with disjoint subjects, so that telemetry can never evict a record:

- records (stream ``bus.stream``, ``FIRE``): fire alarms, confirmed and dismissed fires (the
  operator's and the policy's decisions), faults raised and cleared, the facilities' other status
  changes, operations at the panel, devices online, offline and refused. GB 50440 asks at least a
  year of alarm and facility-status records; when in doubt a kind is a record.
- telemetry (``bus.telemetry_stream``, ``FIRE_TELEMETRY``): ``fire.telemetry.<device>``, that is
  analog samples and device information (versions, configuration, clocks), kept for a bounded
  window.

Each stream has its own max_age and max_bytes, and discards its oldest messages at its own limit.
An atomic batch goes to one stream only (the publisher groups by `store_of`). The previous version
had one stream over ``fire.>``; `ensure_streams` narrows it to the record subjects first, then
creates the telemetry stream, so what it holds stays (its old telemetry until it ages out).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, NamedTuple, get_args

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext

from firegate.aio import stop_if_cancelled
from firegate.bus import metrics
from firegate.bus.errors import StreamInfoError
from firegate.bus.events import Kind
from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.ops.logging import Throttle

log = logging.getLogger(__name__)

Store = Literal["records", "telemetry"]

RECORD_KINDS: Final[tuple[Kind, ...]] = (
    "alarm",
    "confirmed",
    "dismissed",
    "fault",
    "status",
    "device",
    "operation",
)
TELEMETRY_KINDS: Final[tuple[Kind, ...]] = ("telemetry",)
RECORD_SUBJECTS: Final = tuple(f"fire.{kind}.>" for kind in RECORD_KINDS)
TELEMETRY_SUBJECTS: Final = tuple(f"fire.{kind}.>" for kind in TELEMETRY_KINDS)
LEGACY_SUBJECTS: Final = ("fire.>",)  # the single stream of firegate before separate retention

RECORDS_STREAM: Final = "FIRE"
TELEMETRY_STREAM: Final = "FIRE_TELEMETRY"
DAY: Final = 86400.0
RECORDS_MAX_AGE: Final = 400 * DAY  # a year of records (GB 50440) and some slack
TELEMETRY_MAX_AGE: Final = 30 * DAY

_JS_API: Final = "$JS.API"
_ERR_STREAM_NOT_FOUND: Final = 10059


def store_of(subject: str) -> Store:
    """Which store an event's subject (``fire.<kind>.<key>``) belongs to; anything not known as
    telemetry is a record."""
    parts = subject.split(".", 2)
    kind = parts[1] if len(parts) > 2 and parts[0] == "fire" else ""
    return "telemetry" if kind in TELEMETRY_KINDS else "records"


def _classified() -> None:
    """Every event kind is in exactly one store: a kind in neither would have no stream."""
    kinds = set(get_args(Kind))
    both = set(RECORD_KINDS) & set(TELEMETRY_KINDS)
    missing = kinds - set(RECORD_KINDS) - set(TELEMETRY_KINDS)
    if both or missing:  # pragma: no cover - a programming error, caught at import
        raise RuntimeError(f"event kinds in both stores {sorted(both)} or in none {sorted(missing)}")


_classified()


@dataclass(frozen=True, slots=True)
class StreamLayout:
    """The two streams firegate stores events in."""

    records: StreamSettings
    telemetry: StreamSettings

    def __post_init__(self) -> None:
        if self.records.name == self.telemetry.name:
            raise ValueError(f"records and telemetry need two streams, both are named {self.records.name}")

    @classmethod
    def build(
        cls,
        *,
        records: str = RECORDS_STREAM,
        telemetry: str = TELEMETRY_STREAM,
        duplicate_window: float = 120.0,
        max_age: float = RECORDS_MAX_AGE,
        max_bytes: int = -1,
        telemetry_max_age: float = TELEMETRY_MAX_AGE,
        telemetry_max_bytes: int = -1,
        num_replicas: int = 1,
    ) -> StreamLayout:
        return cls(
            StreamSettings(
                name=records,
                subjects=RECORD_SUBJECTS,
                duplicate_window=duplicate_window,
                max_age=max_age,
                max_bytes=max_bytes,
                num_replicas=num_replicas,
            ),
            StreamSettings(
                name=telemetry,
                subjects=TELEMETRY_SUBJECTS,
                duplicate_window=duplicate_window,
                max_age=telemetry_max_age,
                max_bytes=telemetry_max_bytes,
                num_replicas=num_replicas,
            ),
        )

    @property
    def streams(self) -> tuple[StreamSettings, StreamSettings]:
        return self.records, self.telemetry

    def settings_of(self, subject: str) -> StreamSettings:
        """The stream that stores ``subject``."""
        return self.telemetry if store_of(subject) == "telemetry" else self.records

    def stream_of(self, subject: str) -> str:
        return self.settings_of(subject).name


async def ensure_streams(js: JetStreamContext, layout: StreamLayout) -> None:
    """Create both streams, or bring them to ``layout``; migrates the single stream of before.

    The records stream is narrowed first: JetStream refuses a stream whose subjects overlap
    another's, so the telemetry stream can only take ``fire.telemetry.>`` once it is released.
    Narrowing keeps every message; old telemetry in the records stream leaves at its max_age.
    Raises StreamConfigError (with the stream's name) when NATS refuses either.
    """
    before = await _subjects(js, layout.records.name)
    await ensure_stream(js, layout.records)
    if before is not None and any(s in LEGACY_SUBJECTS or store_of(s) == "telemetry" for s in before):
        log.warning(
            "stream %s held every kind of event (%s); it now holds records only (%s), telemetry goes "
            "to %s; the telemetry it holds stays until it is %g days old",
            layout.records.name,
            ", ".join(before),
            ", ".join(layout.records.subjects),
            layout.telemetry.name,
            layout.records.max_age / DAY,
        )
    await ensure_stream(js, layout.telemetry)


async def _subjects(js: JetStreamContext, name: str) -> list[str] | None:
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        return None
    return list(info.config.subjects or [])


# -- usage metrics ---------------------------------------------------------------------------


class StreamUsage(NamedTuple):
    stream: str
    bytes: int
    limit_bytes: int  # -1: no limit of its own
    messages: int
    oldest_age: float  # seconds; 0 when empty
    max_age: float  # seconds; 0: none


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _timestamp(text: str) -> datetime:
    """A JetStream time (RFC 3339 with up to nanoseconds) as an aware datetime."""
    return datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00"))


async def stream_usage(nc: NATS, name: str, wait: float = 5.0) -> StreamUsage:
    """What ``name`` holds against its limits, from one stream info request (it carries the
    oldest message's time, which nats-py's StreamInfo drops). Raises StreamInfoError."""
    try:
        msg = await nc.request(f"{_JS_API}.STREAM.INFO.{name}", b"", timeout=wait)
    except (TimeoutError, nats.errors.TimeoutError) as e:
        raise StreamInfoError(name, "timeout", f"no answer within {wait:g} s") from e
    except nats.errors.NoRespondersError as e:
        raise StreamInfoError(name, "api_error", "no JetStream answers") from e
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError, OSError) as e:
        raise StreamInfoError(name, "disconnected", repr(e)) from e
    except nats.errors.Error as e:
        raise StreamInfoError(name, "api_error", repr(e)) from e
    try:
        resp = json.loads(msg.data)
        error = resp.get("error")
        if error:
            reason = "not_found" if error.get("err_code") == _ERR_STREAM_NOT_FOUND else "api_error"
            raise StreamInfoError(name, reason, str(error.get("description", "")))
        config, state = resp["config"], resp["state"]
        messages = int(state.get("messages", 0))
        oldest = 0.0
        if messages:
            oldest = max(0.0, (datetime.now(UTC) - _timestamp(state["first_ts"])).total_seconds())
        return StreamUsage(
            stream=name,
            bytes=int(state.get("bytes", 0)),
            limit_bytes=int(config.get("max_bytes", -1)),
            messages=messages,
            oldest_age=oldest,
            max_age=int(config.get("max_age", 0)) / 1e9,  # nanoseconds on the wire
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise StreamInfoError(name, "api_error", f"unreadable stream info {msg.data[:80]!r}") from e


class StreamWatch:
    """Refreshes the ``firegate_stream_*`` gauges of each stream from its stream info."""

    def __init__(
        self, nc: NATS, streams: Sequence[str], *, interval: float = 30.0, timeout: float = 5.0
    ) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError(f"interval and timeout must be > 0, got {interval}, {timeout}")
        self._nc = nc
        self.streams = tuple(streams)
        self.interval = interval
        self.timeout = timeout
        self._throttle = Throttle(log, every=600.0)

    async def refresh(self) -> list[StreamUsage]:
        """One round over the streams; what could not be read is counted and logged, not raised."""
        out = []
        for name in self.streams:
            try:
                usage = await stream_usage(self._nc, name, self.timeout)
            except StreamInfoError as e:
                metrics.stream_info_failures[e.reason].inc()
                self._throttle.log(f"info {name}", logging.WARNING, "retention metrics: %s", e)
                continue
            metrics.stream_bytes.labels(stream=name).set(usage.bytes)
            metrics.stream_limit_bytes.labels(stream=name).set(usage.limit_bytes)
            metrics.stream_messages.labels(stream=name).set(usage.messages)
            metrics.stream_oldest_age.labels(stream=name).set(usage.oldest_age)
            metrics.stream_max_age.labels(stream=name).set(usage.max_age)
            out.append(usage)
        return out

    async def run(self) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        while True:
            stop_if_cancelled()
            await self.refresh()
            await asyncio.sleep(self.interval)
