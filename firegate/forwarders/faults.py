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
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, ValidationError

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
from firegate.forwarders.metrics import fault_repair_seconds, faults_open
from firegate.forwarders.supervise import restarting

log = logging.getLogger(__name__)

BUCKET = "FIRE_FAULTS"
LIST_SUBJECT = "firegate.fault.list"
QUEUE = "firegate-faults"



class OpenFault(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    device: str
    site: str
    condition: str
    condition_zh: str | None = None
    point: Point | None = None
    raised_at: datetime
    event_id: str

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


def fault_key(device: str, point: Point | None, condition: str) -> str:
    """``fault.<device>.<system>-<address>-<component>|device.<condition>``."""
    if point is None or point.system_type is None:
        where = "device"
    else:
        where = f"{point.system_type}-{point.system_address or 0}-{point.component_address or 0}"
    parts = ("".join(c if c.isalnum() or c in "-_" else "_" for c in p) for p in (device, where, condition))
    return "fault." + ".".join(parts)


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
    ) -> None:
        self.nc = nc
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
        sub = await subscribe(self.js, self.stream, self.durable, subjects,
                              start_window=self.catch_up, ack_wait=30.0)
        await pull_forever(sub, self._take, self.ready)

    async def _take(self, msg: Msg) -> None:
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
        if isinstance(event, FaultRaised):
            await self._open(fault_key(event.device, event.point, event.condition), event, event.condition,
                             event.condition_zh, event.point)
        elif isinstance(event, DeviceOffline):
            await self._open(fault_key(event.device, None, "offline"), event, "offline", "离线", None)
        elif isinstance(event, FaultCleared):
            await self._close(fault_key(event.device, event.point, event.condition), event.received_at)
        elif isinstance(event, DeviceOnline):
            await self._close(fault_key(event.device, None, "offline"), event.received_at)

    async def _open(
        self, key: str, event: Envelope, condition: str, condition_zh: str | None, point: Point | None
    ) -> None:
        fault = OpenFault(
            device=event.device,
            site=event.site,
            condition=condition,
            condition_zh=condition_zh,
            point=point,
            raised_at=event.received_at,
            event_id=event.id,
        )
        with contextlib.suppress(nats.js.errors.KeyWrongLastSequenceError):  # open already: keep the first
            async with asyncio.timeout(self.timeout):
                await self.kv.create(key, fault.model_dump_json().encode())
            faults_open.inc()

    async def _close(self, key: str, cleared_at: datetime) -> None:
        async with asyncio.timeout(self.timeout):
            try:
                entry = await self.kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return  # never seen open (raised before tracking began), or closed already
            try:
                await self.kv.delete(key, last=entry.revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                return  # another instance closed it
        with contextlib.suppress(ValidationError, TypeError):
            raised = OpenFault.model_validate_json(entry.value or b"").raised_at
            fault_repair_seconds.observe(max(0.0, (cleared_at - raised).total_seconds()))
        faults_open.dec()

    # -- queries

    async def open_faults(self) -> list[OpenFault]:
        out: list[OpenFault] = []
        watcher = await self.kv.watch("fault.>", ignore_deletes=True)
        try:
            async with asyncio.timeout(self.timeout * 5):
                async for entry in watcher:
                    if entry is None:
                        break
                    with contextlib.suppress(ValidationError):
                        out.append(OpenFault.model_validate_json(entry.value or b""))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return out

    async def _count(self) -> None:
        while True:
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
