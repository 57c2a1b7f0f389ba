"""One UITD connection: bytes in through the framer, each data unit handed to ingest (fires
ahead of the connection's other frames), the confirm out only once ingest has stored it. One
report of a connection is in ingest at a time, in order, as the device itself sends them (spec
§6.5: one frame outstanding). Commands down wait for their answer here."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, cast

from firegate.bus.events import DeviceInfo, DeviceRefused, Envelope, Point, event_id
from firegate.codecs.gb26875 import (
    Command,
    DataUnit,
    DataUnitError,
    Frame,
    FrameError,
    Framer,
    HeaderInfo,
    InfoObject,
    UitdOperation,
    answer,
    build_frame,
    encode_data_unit,
)
from firegate.codecs.gb26875.tables import TypeFlag, name_of, zh_of
from firegate.devicetime import device_time
from firegate.errors import FiregateError
from firegate.gateway import metrics
from firegate.gateway.udp import DatagramPeer
from firegate.ingest import Lane, Outcome, Report, carries_fire
from firegate.ops.logging import FieldsAdapter

if TYPE_CHECKING:
    from firegate.gateway.server import Gateway

log = logging.getLogger("firegate.gateway")

READ_SIZE = 4096  # per-connection receive buffer: 10,000 connections must fit in a few hundred MB


def _skew(tag: datetime, now: datetime) -> float:
    """Seconds a device's clock is ahead of the center's: its time tag against now, both read in
    the device time zone (never the host's)."""
    device, center = device_time(tag), device_time(now)
    assert device is not None and center is not None
    return (device - center).total_seconds()


class CommandFailed(FiregateError, RuntimeError):
    """A command down to a device was denied or never answered. ``reason`` is the metric label."""

    def __init__(self, reason: str, device: str, detail: str = "") -> None:
        super().__init__(f"{reason}: device {device}" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.device = device


@dataclass(slots=True)
class Inbound:
    frame: Frame
    unit: DataUnit | None
    error: DataUnitError | None
    fire: bool
    arrived: float
    skew: float | None = None  # device time minus center time on arrival; None for a resend


class Session(asyncio.BufferedProtocol):
    """Created per TCP connection by the gateway's server."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.framer = Framer()
        self._buf = bytearray(READ_SIZE)
        self._view = memoryview(self._buf)
        self.transport: asyncio.Transport | None = None
        self.protocol = "tcp"
        self._counted = False
        self.peer = "?"
        self.device: str | None = None
        self.device_raw: bytes = bytes(6)
        self.center_raw: bytes | None = None
        self._fire: deque[Inbound] = deque()
        self._normal: deque[Inbound] = deque()
        self._current: Inbound | None = None  # the frame in ingest now
        self.idle = asyncio.Event()  # set while nothing is queued or in ingest: what a drain waits for
        self.idle.set()
        self.closed = asyncio.Event()
        self._paused = False  # reading paused: this connection's queue, or ingest, is full
        self._awaiting_room = False  # paused until ingest calls _room
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._serial = 0
        self._tokens = float(gateway.options.rate_burst)
        self._refill = time.monotonic()
        self.last_rx = time.monotonic()
        self.valid_frames = 0
        self.greeted = False
        self._recent: deque[bytes] = deque(maxlen=4)  # confirmed: seen again, it is a retransmission
        self._unconfirmed: deque[bytes] = deque(maxlen=4)  # shed or not stored: the device resends it
        self._skew_warned = False
        self._fields: dict[str, object] = {"device": None, "peer": self.peer}
        self.log = FieldsAdapter(log, self._fields)  # every line of this session names its device

    # ---- transport callbacks ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        # the metrics' protocol label: a serial line's transport names itself
        udp = isinstance(transport, DatagramPeer)
        self.protocol = "udp" if udp else transport.get_extra_info("protocol", "tcp")
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._fields["peer"] = self.peer
        if not self.gw.admit(self):
            return
        self.transport.set_write_buffer_limits(high=self.gw.options.write_buffer_limit)
        metrics.connections[self.protocol].inc()
        self._counted = True
        self.gw.start_session(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self.feed(self._view[:nbytes])
        except Exception:
            # a bug must cost this connection (the device resends elsewhere), never the loop
            self.log.exception("handling the connection's bytes failed")
            self.close("internal_error")

    def feed(self, data: bytes | memoryview) -> None:
        self.last_rx = time.monotonic()
        for item in self.framer.feed(data):
            if isinstance(item, Frame):
                self._frame(item)
            else:
                self._frame_error(item)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed.is_set():
            return
        if self._counted:
            metrics.connections[self.protocol].dec()
        self.closed.set()
        # nothing queued was confirmed: the device retransmits it to whoever serves it next
        self._fire.clear()
        self._normal.clear()
        if self._current is None:
            self.idle.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CommandFailed("disconnected", self.device or self.peer))
        self._pending.clear()
        self.gw.end_session(self)

    def pause_writing(self) -> None:
        # the peer does not read what we send: drop it rather than buffer forever
        self.close("write_buffer_full")

    # ---- inbound ------------------------------------------------------------------------------

    def _frame_error(self, error: FrameError) -> None:
        metrics.decode_error(error.reason).inc()
        self.gw.throttle.log(
            f"bad_frame.{error.reason}",
            logging.INFO,
            "bad frame: %s",
            error,
            extra={**self._fields, "serial": error.serial, "reason": error.reason},
        )
        if error.deniable and error.header is not None:
            self._deny(error.header, error.reason)

    def _deny(self, to: Frame | HeaderInfo, reason: str) -> None:
        self.write(answer(to, Command.DENY, center_address=self.center_raw))
        metrics.DENIES.inc()
        metrics.denies.get(reason, metrics.denies["frame"]).inc()

    def _frame(self, frame: Frame) -> None:
        metrics.frames_in(self.protocol, frame.command).inc()  # two dict lookups, no .labels()
        self.valid_frames += 1
        command = frame.command
        if command in (Command.CONFIRM, Command.REPLY, Command.DENY):
            future = self._pending.get(frame.serial)
            if future is not None and not future.done():
                future.set_result(frame)
            return
        if command != Command.SEND_DATA:
            # control and request go center -> UITD; from a UITD they are refused (§6)
            if command < 128:
                metrics.decode_errors["direction"].inc()
                self._deny(frame, "direction")
            else:
                metrics.decode_errors["user_command"].inc()
            return
        raw = frame.raw
        if self._holds(raw):
            # the device resent a frame still queued here: the one confirm answers both
            metrics.RETRANSMISSIONS.inc()
            return
        unit: DataUnit | None = None
        error: DataUnitError | None = None
        try:
            unit = frame.data_unit
        except DataUnitError as e:
            error = e
            metrics.decode_errors["data_unit"].inc()
        fire = unit is not None and carries_fire(unit.objects)
        item = Inbound(frame, unit, error, fire, time.monotonic())
        if frame.time.value is not None and raw not in self._recent and raw not in self._unconfirmed:
            # against the time it arrived, not the time it is handled: a loaded center does not
            # make a device's clock wrong; and never from a resend, which keeps its first time tag
            item.skew = _skew(frame.time.value, self.gw.now_local())
        queued = self._queued()
        full = queued >= self.gw.options.queue_limit or self.gw.ingest.full
        if self.protocol == "udp" and not fire and full:
            metrics.shed["queue_full"].inc()  # datagrams cannot be paused; fire never shed
            return
        (self._fire if fire else self._normal).append(item)
        self.idle.clear()
        if queued + 1 >= self.gw.options.queue_limit:
            self._pause()
        self._pump()

    def _holds(self, raw: bytes) -> bool:
        if self._current is not None and self._current.frame.raw == raw:
            return True
        return any(i.frame.raw == raw for i in self._fire) or any(i.frame.raw == raw for i in self._normal)

    def _pause(self) -> None:
        if not self._paused and self.transport is not None and self.protocol == "tcp":
            self.transport.pause_reading()
            self._paused = True

    def _resume(self) -> None:
        if self._paused and not self.closed.is_set() and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _queued(self) -> int:
        return len(self._fire) + len(self._normal)

    def _room(self) -> None:
        """Ingest has room again."""
        self._awaiting_room = False
        if self._queued() < self.gw.options.queue_limit:
            self._resume()

    def _pump(self) -> None:
        """Hand the next frame to ingest when none of this connection's is there: fires first."""
        while self._current is None and not self.closed.is_set() and (self._fire or self._normal):
            item = self._fire.popleft() if self._fire else self._normal.popleft()
            report = self._report(item)
            if report is None:
                continue  # answered here (a heartbeat, a resend, a shed frame)
            self._current = item
            ingest = self.gw.ingest
            ingest.submit(report)
            if (
                report.lane is not Lane.FIRE
                and ingest.full
                and self.protocol == "tcp"
                and not self._awaiting_room
            ):
                self._awaiting_room = True
                self._pause()  # stop reading; the kernel and the device wait
                ingest.when_room(self._room)
        if self._paused and not self._awaiting_room and self._queued() < self.gw.options.queue_limit // 2:
            # frames answered here (sheds, heartbeats, resends) drain the queue too: read again
            self._resume()
        if self._current is None and not self._fire and not self._normal:
            self.idle.set()

    def _report(self, item: Inbound) -> Report | None:
        """What ingest is to store for a frame; None when the frame is answered here."""
        frame = item.frame
        if self.device is None and not self._bind(item):
            return None
        if frame.source_raw != self.device_raw:
            # a device is its source address (spec §8); one connection speaks for one device
            metrics.decode_errors["source_changed"].inc()
            self._deny(frame, "source_changed")
            self.log.info(
                "denied a frame from another source address %d",
                frame.source,
                extra={"serial": frame.serial, "reason": "source_changed"},
            )
            return None
        device = self.device
        assert device is not None
        if item.skew is not None:
            self._observe_skew(item.skew, frame.serial)
        if frame.raw in self._recent:
            # confirmed before, so stored before: only the confirm was lost
            metrics.RETRANSMISSIONS.inc()
            self._confirm(item)
            return None
        events: list[Envelope] = []
        online = self.gw.tracker.online_event(device, self.gw.site_of(device), self.peer)
        if online is not None:
            events.append(online)
        unit = item.unit
        lane = Lane.FIRE if item.fire else Lane.NORMAL
        if frame.is_heartbeat:
            if online is None:
                self._confirm(item)
                return None
            lane = Lane.LINK
            unit = None
        elif item.error is not None or (unit is not None and not unit.known):
            events.append(self._undecoded(device, frame, item))
            unit = None
        elif unit is not None:
            if not item.fire and not self._take_token():
                metrics.shed["rate_limit"].inc()
                self._unconfirmed.append(frame.raw)
                if online is None:
                    self.gw.tracker.seen(device)
                return None  # no confirm: the device keeps it and retransmits later
            if unit.objects and isinstance(unit.objects[0], UitdOperation):
                self.gw.duty.observe(device, unit.objects)
            metrics.data_unit(unit.type).inc()
        return Report(
            device=device,
            lane=lane,
            unit=unit,
            frame_time=frame.time.value,
            raw=frame.raw,
            events=events,
            on_done=self._stored,
            context={"serial": frame.serial, "peer": self.peer},
        )

    def _stored(self, outcome: Outcome) -> None:
        """Ingest's answer for the frame in it."""
        item, self._current = self._current, None
        if item is not None:
            if outcome is Outcome.STORED_RAW:
                metrics.decode_errors["normalize"].inc()
            if outcome:
                self._confirm(item)
            else:
                metrics.shed["publish_failed"].inc()
                self._unconfirmed.append(item.frame.raw)
                self.gw.throttle.log(
                    "not_confirming",
                    logging.WARNING,
                    "not confirming: events not stored",
                    extra={**self._fields, "serial": item.frame.serial},
                )
        self._pump()

    def _confirm(self, item: Inbound) -> None:
        frame = item.frame
        assert self.device is not None
        self.gw.tracker.seen(self.device)
        self.write(answer(frame, Command.CONFIRM, center_address=self.center_raw))
        metrics.CONFIRMS.inc()
        metrics.CONFIRM_LATENCY.observe(time.monotonic() - item.arrived)
        if not self.greeted:
            self.greeted = True  # the device's first exchange is done: now our commands may follow
            self.gw.greet(self)
        self._recent.append(frame.raw)

    def _observe_skew(self, skew: float, serial: int) -> None:
        metrics.CLOCK_SKEW.observe(skew)
        if abs(skew) > metrics.CLOCK_SKEW_LIMIT and not self._skew_warned:
            self._skew_warned = True  # once per session: the histogram has the rest, without the device
            self.gw.throttle.log(
                "clock_skew",
                logging.WARNING,
                "device clock is %+.1f s off center time (GB 50440 allows %.0f s)",
                skew,
                metrics.CLOCK_SKEW_LIMIT,
                extra={**self._fields, "serial": serial, "clock_skew_s": round(skew, 1)},
            )

    def _undecoded(self, device: str, frame: Frame, item: Inbound) -> Envelope:
        """User-defined types and data units that do not fit their layout: confirmed (the sum was
        right), kept raw, and published so nothing a device said is silently lost."""
        type_flag = frame.data[0]
        data: dict[str, object] = {"raw": frame.data.hex()}
        if item.error is not None:
            data["error"] = str(item.error)
        return DeviceInfo(
            id=event_id(device, type_flag, frame.data, "raw"),
            device=device,
            site=self.gw.site_of(device),
            occurred_at=device_time(frame.time.value),
            received_at=self.gw.now_utc(),
            raw=frame.raw.hex(),
            info_type=type_flag,
            info_type_name=name_of(TypeFlag, type_flag),
            info_type_zh=zh_of(TypeFlag, type_flag),
            point=Point(),
            data=data,
        )

    def _bind(self, item: Inbound) -> bool:
        frame = item.frame
        device = self.gw.device_id(frame.source_raw)
        refusal = self.gw.registry_refusal(device, self.peer)
        if refusal is not None:
            self._fields["device"] = device  # the refusal's lines name who was refused
            self._refuse(device, refusal, item)
            self.close(refusal if refusal == "unknown_device" else "wrong_network")
            return False
        self.device = device
        self._fields["device"] = device
        self.device_raw = frame.source_raw
        if self.gw.options.center_address:
            self.center_raw = self.gw.options.center_address.to_bytes(6, "little")
        self.gw.claim(self)
        return True

    def _refuse(self, device: str, reason: Literal["unknown_device", "wrong_network"], item: Inbound) -> None:
        """Not confirmed, but not lost quietly either: a refusal event is stored (every time for
        a fire, which is also logged as a WARNING), so an operator sees a new device's fire."""
        frame = item.frame
        if item.fire:
            metrics.REFUSED_FIRES.inc()
            self.log.warning(
                "refused a FIRE ALARM from a device the site registry does not admit (%s); "
                "admit it in the registry to receive its alarms",
                reason,
                extra={"serial": frame.serial, "reason": reason},
            )
        if not self.gw.refused(device, reason, fire=item.fire):
            return
        event = DeviceRefused(
            id=event_id(device, frame.data[0] if frame.data else 0, frame.data, f"refused.{reason}"),
            device=device,
            site=self.gw.site_of(device),
            occurred_at=device_time(frame.time.value),
            received_at=self.gw.now_utc(),
            raw=frame.raw.hex(),
            peer=self.peer,
            reason=reason,
            fire=item.fire,
        )
        lane = Lane.FIRE if item.fire else Lane.NORMAL
        self.gw.ingest.submit(Report(device=device, lane=lane, events=[event], context={"peer": self.peer}))

    def _take_token(self) -> bool:
        now = time.monotonic()
        opts = self.gw.options
        self._tokens = min(float(opts.rate_burst), self._tokens + (now - self._refill) * opts.rate_limit)
        self._refill = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    # ---- outbound -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            metrics.close_reason(reason).inc()
            # at shutdown one line per connection would be thousands: the gateway logs the count
            level = logging.DEBUG if reason == "shutdown" else logging.INFO
            self.log.log(level, "closing the connection: %s", reason, extra={"reason": reason})
            self.transport.close()

    def next_serial(self) -> int:
        serial = self._serial
        self._serial = (self._serial + 1) & 0xFFFF
        return serial

    async def command(
        self, command: int, type_flag: int, objects: Sequence[InfoObject], *, action: str
    ) -> Frame:
        """Send a control (1) or request (4) and return the confirm or reply, retransmitting the
        same bytes after a timeout or a deny (spec §6.5)."""
        if self.device is None:
            raise CommandFailed("not_identified", self.peer)
        opts = self.gw.options
        serial = self.next_serial()
        raw = build_frame(
            serial=serial,
            command=command,
            source=self.center_raw or bytes(6),
            destination=self.device_raw,
            data=encode_data_unit(type_flag, objects),
        )
        last = "timeout"
        loop = asyncio.get_running_loop()
        for _attempt in range(opts.retries + 1):
            if self.closed.is_set():
                last = "disconnected"
                break
            future: asyncio.Future[Frame] = loop.create_future()
            self._pending[serial] = future
            self.write(raw)
            try:
                reply = await asyncio.wait_for(future, opts.confirm_timeout)
            except TimeoutError:
                continue
            except CommandFailed:
                last = "disconnected"
                break
            finally:
                self._pending.pop(serial, None)
            if reply.command == Command.DENY:
                last = "denied"
                continue
            expected = Command.REPLY if command == Command.REQUEST else Command.CONFIRM
            if reply.command != expected:  # a wrong answer counts as none (spec §6.5): send again
                last = "bad_answer"
                continue
            metrics.command_result(action, "ok").inc()
            return reply
        metrics.command_result(action, last).inc()
        raise CommandFailed(last, self.device)
