"""Commands down to devices over NATS request/reply: `firegate.cmd.<device>.<action>`.

Each gateway process subscribes for the devices it holds, so a request reaches the process that
has the device's connection, and a device connected nowhere gets NATS' "no responders" at once.

Gateways behind one load balancer also ask each other, on `firegate.presence.<device>`, whether
a device that fell silent on one of them reconnected to another (see `served_elsewhere`). Every
gateway process subscribes to all of those, apart from the device commands, so an answer never
waits behind a command that is still retrying.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from datetime import datetime
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError

from firegate import subjects
from firegate.aio import stop_if_cancelled
from firegate.codecs.gb26875 import DataUnitError, EncodeError, frame_to_json
from firegate.codecs.gb26875.objects import OBJECT_CLASSES, InfoObject, Reserved
from firegate.codecs.gb26875.tables import READ_REPLY_TYPE
from firegate.codecs.gb26875.timetag import TimeTag
from firegate.devicetime import device_local
from firegate.gateway.server import Gateway
from firegate.gateway.session import CommandFailed

log = logging.getLogger("firegate.gateway.remote")
PREFIX = subjects.COMMANDS
ACTIONS = ("clock_sync", "init", "duty_check", "read")
PRESENCE_PREFIX = subjects.PRESENCE  # gateway to gateway only
STALL_BACKOFF = 10.0  # s without presence questions after one went unanswered as a whole


def _objects(type_flag: int, specs: list[dict[str, Any]] | None) -> list[InfoObject]:
    cls = OBJECT_CLASSES.get(type_flag)
    if cls is None or type_flag not in READ_REPLY_TYPE:
        raise ValueError(f"type {type_flag} is not a read request (61-68, 81, 84-86, 88)")
    if not specs:
        if cls is Reserved:
            return [Reserved(0)]
        raise ValueError(f"read type {type_flag} needs 'objects' with {cls.__name__} fields")
    out = []
    for spec in specs:
        fields = dict(spec)
        if "start_time" in fields:
            # a time with an offset (as every time firegate writes) is meant in the device's zone
            when = device_local(datetime.fromisoformat(fields["start_time"]))
            fields["start_time"] = TimeTag.from_datetime(when)
        out.append(cls(**fields))
    return out


class CommandServer:
    def __init__(self, nc: NATS, gateway: Gateway, *, presence_timeout: float = 1.0) -> None:
        self.nc = nc
        self.gw = gateway
        self.instance = secrets.token_hex(8)  # tells this process' own presence answers apart
        self.presence_timeout = presence_timeout
        self._subs: dict[str, Subscription] = {}
        self._stalled_until = 0.0
        gateway.served_elsewhere = self.served_elsewhere

    async def run(self) -> None:
        """Follow the gateway's sessions: subscribe when a device appears, drop it when it leaves."""
        presence = await self.nc.subscribe(f"{PRESENCE_PREFIX}.*", cb=self._presence)
        try:
            while True:
                stop_if_cancelled()
                change, device = await self.gw.device_events.get()
                if change == "up" and device not in self._subs:
                    self._subs[device] = await self.nc.subscribe(f"{PREFIX}.{device}.*", cb=self._handle)
                elif change == "down" and device in self._subs:
                    with contextlib.suppress(Exception):
                        await self._subs.pop(device).unsubscribe()
        finally:
            subs, self._subs = [presence, *self._subs.values()], {}
            for sub in subs:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await sub.unsubscribe()

    async def served_elsewhere(self, devices: list[str]) -> set[str]:
        """Those of `devices` another gateway process holds a connection for right now. Bounded
        by the presence timeout however NATS behaves; raises TimeoutError past it."""
        loop = asyncio.get_running_loop()
        if not self.nc.is_connected or loop.time() < self._stalled_until:
            return set()  # nobody to ask: the caller reports them offline
        try:
            async with asyncio.timeout(self.presence_timeout + 0.5):  # a stalled link blocks sends too
                answers = await asyncio.gather(*(self._held_elsewhere(d) for d in devices))
        except TimeoutError:
            # don't hold up every sweep of a link that stopped moving: ask again in a while
            self._stalled_until = loop.time() + STALL_BACKOFF
            raise
        return {d for d, held in zip(devices, answers, strict=True) if held}

    async def _held_elsewhere(self, device: str) -> bool:
        ask = json.dumps({"asker": self.instance}).encode()
        try:
            msg = await self.nc.request(f"{PRESENCE_PREFIX}.{device}", ask, timeout=self.presence_timeout)
        except (NoRespondersError, TimeoutError):
            return False  # no gateway holds it
        with contextlib.suppress(ValueError, AttributeError):
            answer = json.loads(msg.data)
            return bool(answer.get("ok")) and answer.get("gateway") != self.instance
        return False

    async def _presence(self, msg: Msg) -> None:
        # silence, not "no": only the process serving the device answers, so the first answer counts
        device = msg.subject.rsplit(".", 1)[-1]
        with contextlib.suppress(ValueError, AttributeError):
            if json.loads(msg.data).get("asker") == self.instance:
                return
        if msg.reply and self.gw.serves(device):
            body = {"ok": True, "device": device, "gateway": self.instance}
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(body).encode())

    async def _handle(self, msg: Msg) -> None:
        parts = msg.subject.split(".")
        device, action = parts[2], parts[3]
        try:
            args = json.loads(msg.data) if msg.data else {}
            if not isinstance(args, dict):
                raise ValueError("the request body must be a JSON object")
            result = await self.execute(device, action, args)
            body: dict[str, Any] = {"ok": True, "device": device, "action": action, **result}
        except CommandFailed as e:
            body = {"ok": False, "device": device, "action": action, "error": e.reason, "detail": str(e)}
        except (ValueError, TypeError, OverflowError, EncodeError, DataUnitError) as e:
            body = {"ok": False, "device": device, "action": action, "error": "bad_request", "detail": str(e)}
        if msg.reply:
            await msg.respond(json.dumps(body, ensure_ascii=False).encode())

    async def execute(self, device: str, action: str, args: dict[str, Any]) -> dict[str, Any]:
        gw = self.gw
        if action == "clock_sync":
            await gw.clock_sync(device)
            return {"result": "confirmed"}
        if action == "init":
            await gw.init_device(device)
            return {"result": "confirmed"}
        if action == "duty_check":
            minutes = int(args.get("timeout_minutes", 10))
            if not 1 <= minutes <= 255:
                raise ValueError(f"timeout_minutes must be 1..255, got {minutes}")
            await gw.start_duty_check(device, minutes)
            return {
                "result": "confirmed",
                "answer_window_s": minutes * 60,
                "note": f"the answer arrives as a duty_check_result event on fire.device.{device}",
            }
        if action == "read":
            type_flag = int(args.get("type", 81))
            reply = await gw.read(device, type_flag, _objects(type_flag, args.get("objects")))
            return {"result": "reply", "reply": frame_to_json(reply)}
        raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")


async def request(nc: NATS, device: str, action: str, args: dict[str, Any], wait: float) -> dict[str, Any]:
    """Client side (the CLI and operator consoles)."""
    import nats.errors

    try:
        msg = await nc.request(f"{PREFIX}.{device}.{action}", json.dumps(args).encode(), timeout=wait)
    except nats.errors.NoRespondersError:
        return {
            "ok": False,
            "device": device,
            "action": action,
            "error": "not_connected",
            "detail": f"no gateway holds device {device}",
        }
    except TimeoutError:
        return {
            "ok": False,
            "device": device,
            "action": action,
            "error": "timeout",
            "detail": f"no answer within {wait} s",
        }
    result: dict[str, Any] = json.loads(msg.data)
    return result
