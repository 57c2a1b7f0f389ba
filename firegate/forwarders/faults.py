"""Open faults, tracked until cleared (GB 50440 §5.2.2: track, record, query, count faults).

`FaultTracker` consumes ``fire.fault.>`` and ``fire.device.>`` through the durable consumer
``faults`` and keeps every open fault in the KV bucket ``FIRE_FAULTS``, one key per device,
point and condition, holding when it was raised. A clear removes the key and records the time
to repair (`firegate_fault_repair_seconds`); a device offline is a fault of the device until
it is online again. ``firegate fault list`` asks it over ``firegate.fault.list``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, ValidationError

from firegate import subjects
from firegate.aio import stop_if_cancelled
from firegate.bus.events import (
    DeviceOffline,
    DeviceOnline,
    Envelope,
    FaultCleared,
    FaultRaised,
    Point,
    parse_event,
)
from firegate.forwarders.consumer import pull_forever, subscribe
from firegate.forwarders.courier import REPLAY_FOR
from firegate.forwarders.metrics import fault_repair_seconds, faults_open
from firegate.forwarders.precedence import Precedence
from firegate.forwarders.supervise import restarting

log = logging.getLogger(__name__)

BUCKET = "FIRE_FAULTS"
LIST_SUBJECT = subjects.FAULT_LIST
QUEUE = subjects.FAULT_QUEUE
MARKER_KEEP = timedelta(days=1)  # a cleared fault's marker outlives any redelivery or replay


class OpenFault(BaseModel):
    """One fault of one point: open, or cleared (kept a while as a marker, so a raise or a clear
    handled late, out of order by another instance or a redelivery, cannot reopen or close the
    wrong episode)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    device: str
    site: str
    condition: str
    condition_zh: str | None = None
    point: Point | None = None
    raised_at: datetime
    event_id: str
    cleared_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.cleared_at is None

    def row(self, now: datetime) -> dict[str, Any]:
        p = self.point
        return {
            "device": self.device,
            "site": self.site,
            "condition": self.condition,
            "condition_zh": self.condition_zh,
            "location": (p.location or p.description) if p else None,
            "system_type": p.system_type if p else None,
            "component_address": p.component_address if p else None,
            "raised_at": self.raised_at.isoformat().replace("+00:00", "Z"),
            "open_s": round((now - self.raised_at).total_seconds(), 1),
            "event_id": self.event_id,
        }


def raised_fault(record: OpenFault | None, new: OpenFault) -> OpenFault | None:
    """The record after a raise at ``new.raised_at``; None: nothing to change."""
    if record is None:
        return new
    if record.open:
        # the same episode: keep its earliest raise
        return new if new.raised_at < record.raised_at else None
    assert record.cleared_at is not None
    return new if new.raised_at > record.cleared_at else None  # else: a raise the clear ended


def cleared_fault(record: OpenFault | None, template: OpenFault, at: datetime) -> OpenFault | None:
    """The record after a clear at ``at``; None: nothing to change."""
    if record is None:
        # cleared before its raise was handled: a marker, so the late raise stays closed
        return template.model_copy(update={"raised_at": at, "cleared_at": at})
    if record.open and at >= record.raised_at:
        return record.model_copy(update={"cleared_at": at})
    return None  # cleared already, or a clear of an earlier episode handled late


def fault_key(device: str, point: Point | None, condition: str) -> str:
    """``fault.<device>.<system>-<address>-<component>|device.<condition>``."""
    if point is None or point.system_type is None:
        where = "device"
    else:
        where = f"{point.system_type}-{point.system_address or 0}-{point.component_address or 0}"
    parts = ("".join(c if c.isalnum() or c in "-_" else "_" for c in p) for p in (device, where, condition))
    return "fault." + ".".join(parts)


async def fault_records(kv: KeyValue, within: float) -> list[tuple[str, int | None, OpenFault]]:
    """Every fault record of the bucket (open ones and cleared markers), with its key and
    revision; unreadable ones (another version's, a hand edit) skipped."""
    out: list[tuple[str, int | None, OpenFault]] = []
    watcher = await kv.watch("fault.>", ignore_deletes=True)
    try:
        async with asyncio.timeout(within):
            async for entry in watcher:
                if entry is None:
                    break
                with contextlib.suppress(ValidationError):
                    out.append((entry.key, entry.revision, OpenFault.model_validate_json(entry.value or b"")))
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()  # type: ignore[no-untyped-call]
    return out


class FaultTracker:
    def __init__(
        self,
        nc: NATS,
        kv: KeyValue,
        *,
        stream: str = "FIRE",
        durable: str = "faults",
        catch_up: float = 600.0,
        recount: float = 30.0,
        timeout: float = 2.0,
        precedence: Precedence | None = None,
    ) -> None:
        self.nc = nc
        self.precedence = precedence or Precedence()  # shared with the process's other consumers
        self.js = nc.jetstream()
        self.kv = kv
        self.stream = stream
        self.durable = durable
        self.catch_up = catch_up
        self.recount = recount
        self.timeout = timeout
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Until cancelled; each part restarts after a failure."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(restarting("fault tracker consumer", self._consume))
            tg.create_task(restarting("fault tracker API", self._serve_api))
            tg.create_task(restarting("fault tracker count", self._count))

    # -- events in

    async def _consume(self) -> None:
        subjects = ["fire.fault.>", "fire.device.>"]
        sub = await subscribe(
            self.js, self.stream, self.durable, subjects, start_window=self.catch_up, ack_wait=30.0
        )
        await pull_forever(sub, self._take, self.ready)

    async def _take(self, msg: Msg) -> None:
        await self.precedence.yield_to_fires()  # a storm's faults wait for its fires
        if REPLAY_FOR in (msg.headers or {}):
            await msg.ack()  # a dead letter replayed for a forwarder: not a new report
            return
        try:
            event = parse_event(msg.data)
        except ValidationError:
            await msg.ack()  # not an event: nothing to track (the lifecycle logs unreadable ones)
            return
        try:
            await self.track(event)
        except (TimeoutError, nats.errors.Error) as e:
            log.warning("fault tracker: %s not tracked yet, redelivered: %r", event.id, e)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            return
        with contextlib.suppress(Exception):
            await msg.ack()

    async def track(self, event: Envelope) -> None:
        if isinstance(event, FaultRaised | FaultCleared):
            key = fault_key(event.device, event.point, event.condition)
            fault = self._fault(event, event.condition, event.condition_zh, event.point)
        elif isinstance(event, DeviceOffline | DeviceOnline):
            key = fault_key(event.device, None, "offline")
            fault = self._fault(event, "offline", "离线", None)
        else:
            return
        if isinstance(event, FaultRaised | DeviceOffline):
            await self._change(key, lambda record: raised_fault(record, fault))
            return
        closed = await self._change(key, lambda record: cleared_fault(record, fault, event.received_at))
        if closed is not None and closed.cleared_at is not None and closed.raised_at < closed.cleared_at:
            fault_repair_seconds.observe((closed.cleared_at - closed.raised_at).total_seconds())

    @staticmethod
    def _fault(event: Envelope, condition: str, condition_zh: str | None, point: Point | None) -> OpenFault:
        return OpenFault(
            device=event.device,
            site=event.site,
            condition=condition,
            condition_zh=condition_zh,
            point=point,
            raised_at=event.received_at,
            event_id=event.id,
        )

    async def _change(
        self, key: str, change: Callable[[OpenFault | None], OpenFault | None]
    ) -> OpenFault | None:
        """Compare-and-set one record; the record written, or None when nothing changed."""
        for _ in range(20):
            async with asyncio.timeout(self.timeout):
                try:
                    entry = await self.kv.get(key)
                    record: OpenFault | None = OpenFault.model_validate_json(entry.value or b"")
                    revision: int | None = entry.revision
                except nats.js.errors.KeyNotFoundError:
                    record, revision = None, None
                new = change(record)
                if new is None:
                    return None
                try:
                    if revision is None:
                        await self.kv.create(key, new.model_dump_json().encode())
                    else:
                        await self.kv.update(key, new.model_dump_json().encode(), last=revision)
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue  # another instance changed it: look again
                return new
        raise TimeoutError(f"fault {key}: too many concurrent changes")

    # -- queries

    async def open_faults(self) -> list[OpenFault]:
        """The open ones; cleared markers older than MARKER_KEEP are removed on the way."""
        out: list[OpenFault] = []
        stale: list[tuple[str, int | None]] = []
        old = datetime.now(UTC) - MARKER_KEEP
        for key, revision, fault in await fault_records(self.kv, self.timeout * 5):
            if fault.open:
                out.append(fault)
            elif fault.cleared_at and fault.cleared_at < old:
                stale.append((key, revision))
        for key, revision in stale:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                async with asyncio.timeout(self.timeout):
                    await self.kv.delete(key, last=revision)
        return out

    async def _count(self) -> None:
        while True:
            stop_if_cancelled()
            faults_open.set(len(await self.open_faults()))
            await asyncio.sleep(self.recount)

    async def _serve_api(self) -> None:
        sub = await self.nc.subscribe(LIST_SUBJECT, queue=QUEUE, cb=self._answer)
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _answer(self, msg: Msg) -> None:
        try:
            body = json.loads(msg.data or b"{}")
            site = body.get("site") if isinstance(body, dict) else None
            now = datetime.now(UTC)
            rows = [f.row(now) for f in await self.open_faults() if site is None or f.site == site]
            rows.sort(key=lambda r: str(r["raised_at"]))
            answer: dict[str, Any] = {"ok": True, "faults": rows}
        except Exception as e:  # an answer whatever happens
            answer = {"ok": False, "error": "unavailable", "detail": repr(e)}
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(answer, ensure_ascii=False).encode())
