"""A panel dialect's line: bytes through the codec's framer, each frame decoded into readings,
one ingest report per reading, and the dialect's acknowledgement written only once every report
of the frame is stored. Frames go to ingest one at a time, in line order (a panel waits for the
acknowledgement of one before it sends the next); a full ingest stops the reading.

The panel's link (port open and, in poll mode, polls answered; with a `liveness`, frames heard
within it) is an event, stored as a device's online/offline is, so that the fault tracker
treats a dead panel link as it treats a silent UITD.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firegate.bus.events import DeviceInfo, Envelope, Point, event_id
from firegate.codecs.api import Context, Framer, LineCodec, Reading, unit_of
from firegate.codecs.errors import CodecError
from firegate.devicetime import device_now, device_time
from firegate.gateway.liveness import DeviceTracker
from firegate.gateway.serial import metrics
from firegate.gateway.serial.config import DEFAULT_POLL_INTERVAL, Panel
from firegate.gateway.serial.points import PanelPoints, points_of
from firegate.gateway.serial.port import LineProtocol, PortSettings, SerialLine
from firegate.ingest import Ingest, Lane, Outcome, Report, carries_fire

QUEUE_LIMIT = 32  # frames decoded and waiting for ingest before the line stops reading
MAX_UNFRAMED = 16 * 1024  # bytes fed without a frame or an error coming out: the framer starts over
WRITE_BUFFER_LIMIT = 16 * 1024  # unsent bytes (flow control holding the line): reopen it
RESENDS_KEPT = 256  # frames remembered for the resend window
LINK_RETRY = 1.0  # seconds between attempts to store a link event


@dataclass(slots=True, eq=False)
class _Pending:
    """A decoded frame on its way to ingest."""

    frame: object
    raw: bytes
    readings: list[Reading]
    conn: _PanelProtocol
    undecoded: Envelope | None = None  # a frame that framed but did not decode: kept raw
    waiting: int = 0
    stored: bool = True


class _PanelProtocol(LineProtocol):
    line: PanelLine

    def received(self, data: bytes) -> None:
        self.line.received(self, data)


class PanelLine(SerialLine):
    def __init__(
        self,
        panel: Panel,
        key: str,
        codec: LineCodec[Any],
        ingest: Ingest,
        *,
        site_of: Callable[[str], str],
        points: PanelPoints | None = None,
    ) -> None:
        super().__init__(panel, key, PortSettings.of(panel, codec.line))
        assert panel.device is not None  # config requires it for every dialect but gb26875
        self.device = panel.device
        self.codec = codec
        self.ingest = ingest
        self.site = panel.site or site_of(panel.device)
        self.points = points if points is not None else points_of(panel)
        self.options = dict(panel.codec_options)
        self.origin = f"serial:{panel.dialect}"
        self.polling = panel.mode == "poll"
        self.counters = metrics.LineCounters(self.name)
        # the panel entry's period, else the dialect's own (a keep-alive the panel expects)
        self._poll_interval = panel.poll_interval or codec.poll_interval or DEFAULT_POLL_INTERVAL
        self._conn: _PanelProtocol | None = None
        self._connected = asyncio.Event()
        self._framer: Framer[Any] = codec.framer()  # a fresh one at each opening
        self._unframed = 0
        self._queue: deque[_Pending] = deque()
        self._current: _Pending | None = None
        self._paused = False
        self._awaiting_room = False
        self._seen: OrderedDict[bytes, tuple[float, datetime]] = OrderedDict()  # raw -> (last, first time)
        # one device: swept only when the link goes down, so any silence makes it offline there
        self._tracker = DeviceTracker(idle_timeout=-1.0)
        self.up = False
        self._reported = False
        self._ever_down = False  # a link down was reported (or the port has opened once)
        self._link_changed = asyncio.Event()
        self._answered = asyncio.Event()
        self._misses = 0
        self._last_frame = 0.0

    # ---- the line's lifetime ----------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._report_link(), name=f"panel {self.name} link")
            if self.polling:
                tg.create_task(self._poll(), name=f"panel {self.name} poll")
            elif self.codec.liveness:
                tg.create_task(self._watch_silence(self.codec.liveness), name=f"panel {self.name} liveness")
            await super().run()

    def protocol(self) -> LineProtocol:
        return _PanelProtocol(self)

    def open_failed(self, error: Exception) -> None:
        # a panel whose port has not opened since start is down too: a fault the operator sees,
        # not only a log line. Its last sign of life is this line's start.
        if not self._ever_down:
            self._ever_down = True
            self._tracker.seen(self.device)
            self.up = self._reported = True
            self._set_link(False, f"the port does not open: {error}")

    def opened(self, protocol: LineProtocol) -> None:
        assert isinstance(protocol, _PanelProtocol)
        self._ever_down = True  # from now on, the link's own changes say it
        self._conn = protocol
        self._framer = self.codec.framer()
        self._unframed = 0
        self._paused = False
        self._misses = 0
        self._last_frame = time.monotonic()
        self._connected.set()
        if not self.polling and not self.codec.liveness:
            self._set_link(True, "port open")  # nothing else tells whether the panel is there

    def lost(self, protocol: LineProtocol) -> None:
        if protocol is not self._conn:
            return
        self._conn = None
        self._connected.clear()
        self._queue.clear()  # none of it was acknowledged: the panel sends it again
        self._set_link(False, "port closed")

    # ---- bytes in -----------------------------------------------------------------------------

    def received(self, conn: _PanelProtocol, data: bytes) -> None:
        if conn is not self._conn:
            return
        try:
            items = self._framer.feed(data)
        except CodecError as e:  # a framer should return its errors; one that raises is still heard
            items = [e]
        except Exception:
            self._codec_bug("framing")
            self._framer = self.codec.framer()
            return
        if items:
            self._unframed = 0
        else:
            self._unframed += len(data)
            if self._unframed > MAX_UNFRAMED:  # a framer that never gives up would grow forever
                self.counters.frame_error("overflow").inc()
                self._bad("overflow", f"{self._unframed} bytes without a frame: framing starts over")
                self._framer = self.codec.framer()
                self._unframed = 0
        for item in items:
            if isinstance(item, CodecError):
                self.counters.frame_error(item.reason).inc()
                self._bad(item.reason, str(item), item.data)
            else:
                self._frame(conn, item)

    def _frame(self, conn: _PanelProtocol, frame: object) -> None:
        now = time.monotonic()
        self._last_frame = now
        undecoded = None
        try:
            raw = self.codec.raw(frame)
            answers = not self.polling or self.codec.answers_poll(frame)
        except Exception:
            self._codec_bug("decoding")
            return
        clock = self._clock(raw, now)
        try:
            readings = self.codec.decode(frame, Context(self.device, self.points, self.options, clock=clock))
        except CodecError as e:
            # it framed (its check was right): kept raw and acknowledged, so that a panel resending
            # until acknowledged never holds back the frames after it (a fire among them)
            self.counters.frame_error(e.reason).inc()
            self._bad(e.reason, str(e), e.data, framing=False)
            readings, undecoded = [], self._undecoded(raw, e, clock())
        except Exception:
            self._codec_bug("decoding")
            return
        if answers:
            self._answered.set()
            self._set_link(True, "poll answered" if self.polling else "frame received")
        self._queue.append(_Pending(frame, raw, readings, conn, undecoded))
        if len(self._queue) >= QUEUE_LIMIT:
            self._pause()
        self._pump()

    def _clock(self, raw: bytes, now: float) -> Callable[[], datetime]:
        """The device time a frame without a time of its own is read at: its first arrival for a
        resend within the window (the same event ids: stored once), else now."""
        window = self.panel.resend_window
        seen = self._seen.get(raw)
        when = (
            seen[1] if seen is not None and now - seen[0] <= window else device_now().replace(microsecond=0)
        )
        if window > 0:
            self._seen[raw] = (now, when)  # a panel resending for long keeps the first time
            self._seen.move_to_end(raw)
            while self._seen and (
                len(self._seen) > RESENDS_KEPT or now - next(iter(self._seen.values()))[0] > window
            ):
                self._seen.popitem(last=False)
        return lambda: when

    def _bad(self, reason: str, text: str, data: bytes = b"", *, framing: bool = True) -> None:
        self.throttle.log(
            f"bad_frame.{reason}",
            logging.INFO,
            "bad frame from the panel (%s): %s%s",
            reason,
            text,
            "; a wrong baud rate or parity shows as many of these" if framing else "; kept raw",
            extra={"reason": reason, "data": data[:64]},
        )

    def _codec_bug(self, what: str) -> None:
        self.counters.frame_error("codec_bug").inc()
        self.throttle.log(
            f"codec_bug.{what}",
            logging.ERROR,
            "dialect %s failed %s a frame",
            self.panel.dialect,
            what,
            exc_info=True,
        )

    # ---- to ingest and back ---------------------------------------------------------------------

    def _pump(self) -> None:
        while self._current is None and self._queue:
            item = self._queue.popleft()
            try:
                reports = [self._report(item, r) for r in item.readings]
            except Exception:  # objects that do not encode: the codec's bug, never the line's end
                self._codec_bug("encoding")
                continue
            if item.undecoded is not None:
                reports.append(self._raw_report(item, item.undecoded))
            if not reports:
                self.counters.frames["keepalive"].inc()
                self._acknowledge(item)
                continue
            self._current = item
            item.waiting = len(reports)
            for report in reports:
                self.ingest.submit(report)
            fire = any(r.lane is Lane.FIRE for r in reports)
            if not fire and self.ingest.full and not self._awaiting_room:
                self._awaiting_room = True
                self._pause()  # the panel and the port's buffer wait
                self.ingest.when_room(self._room)
        if self._paused and not self._awaiting_room and len(self._queue) < QUEUE_LIMIT // 2:
            self._resume()

    def _report(self, item: _Pending, reading: Reading) -> Report:
        return Report(
            device=reading.device or self.device,
            lane=Lane.FIRE if carries_fire(reading.objects) else Lane.NORMAL,
            unit=unit_of(reading),
            frame_time=reading.time,
            raw=item.raw,
            on_done=functools.partial(self._stored, item),
            context={"panel": self.name},
            origin=self.origin,
        )

    def _raw_report(self, item: _Pending, event: Envelope) -> Report:
        return Report(
            device=self.device,
            lane=Lane.NORMAL,
            events=[event],
            raw=item.raw,
            on_done=functools.partial(self._stored, item),
            context={"panel": self.name},
            origin=self.origin,
        )

    def _undecoded(self, raw: bytes, error: CodecError, when: datetime) -> Envelope:
        """A frame the dialect framed but cannot read, as a raw record: nothing the panel said
        is lost quietly (a resend of it gets the same id)."""
        return DeviceInfo(
            id=event_id(self.device, 0, raw, "raw"),
            device=self.device,
            site=self.site,
            occurred_at=device_time(when),
            received_at=datetime.now(UTC),
            origin=self.origin,
            raw=raw.hex(),
            info_type=0,
            info_type_name="panel_frame",
            info_type_zh="控制器原始帧",
            point=Point(),
            data={"raw": raw.hex(), "error": str(error), "reason": error.reason},
        )

    def _stored(self, item: _Pending, outcome: Outcome) -> None:
        item.waiting -= 1
        item.stored = item.stored and bool(outcome)
        if item.waiting:
            return
        if self._current is item:
            self._current = None
        if item.stored:
            self.counters.frames["stored" if item.undecoded is None else "stored_raw"].inc()
            if self._tracker.is_online(self.device):
                self._tracker.seen(self.device)  # the last time heard, for a later offline event
            self._acknowledge(item)
        else:
            self.counters.frames["not_stored"].inc()
            self.throttle.log(
                "not_stored", logging.WARNING, "not acknowledging a frame: its events were not stored"
            )
        self._pump()

    def _acknowledge(self, item: _Pending) -> None:
        if item.conn is not self._conn:
            return  # the line reopened since: the panel sends it again
        try:
            ack = self.codec.acknowledge(item.frame)
        except Exception:
            self._codec_bug("acknowledging")
            return
        if ack:
            self._write(ack)

    def _write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None or conn.transport is None or conn.transport.is_closing():
            return
        conn.transport.write(data)
        if conn.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            # the panel does not take what we send (flow control held): start the line over
            self.log.warning(
                "serial line not writable (%d bytes unsent): reopening",
                conn.transport.get_write_buffer_size(),
            )
            conn.transport.abort()

    def _pause(self) -> None:
        conn = self._conn
        if not self._paused and conn is not None and conn.transport is not None:
            self._paused = True
            conn.transport.pause_reading()

    def _resume(self) -> None:
        conn = self._conn
        if (
            self._paused
            and conn is not None
            and conn.transport is not None
            and not conn.transport.is_closing()
        ):
            self._paused = False
            conn.transport.resume_reading()

    def _room(self) -> None:
        self._awaiting_room = False
        if len(self._queue) < QUEUE_LIMIT:
            self._resume()

    # ---- the panel's link ---------------------------------------------------------------------

    def _set_link(self, up: bool, why: str) -> None:
        if up == self.up:
            return
        self.up = up
        self.link_up.set(1 if up else 0)
        self.log.log(
            logging.INFO if up else logging.WARNING, "panel link %s: %s", "up" if up else "down", why
        )
        self._link_changed.set()

    async def _report_link(self) -> None:
        """Stores the link's changes as the device's online/offline events, until stored."""
        while True:
            await self._link_changed.wait()
            self._link_changed.clear()
            while self._reported != self.up:
                up = self.up
                try:
                    if up:
                        online = self._tracker.online_event(self.device, self.site, self.panel.port)
                        if online is not None:
                            await self.ingest.store([online])
                        self._tracker.seen(self.device)
                    else:
                        offline = self._tracker.sweep(lambda _device: self.site)
                        try:
                            await self.ingest.store(offline)
                        except BaseException:
                            self._tracker.unsweep(offline)
                            raise
                    self._reported = up
                except Exception as e:
                    self.throttle.log(
                        "link_not_stored", logging.WARNING, "panel link event not stored, retrying: %s", e
                    )
                    await asyncio.sleep(LINK_RETRY)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._connected.wait()
            conn, started = self._conn, loop.time()
            try:
                request = self.codec.poll()
            except Exception:
                self._codec_bug("polling")
                request = None
            if request:
                self._answered.clear()
                self._write(request)
                try:
                    await asyncio.wait_for(self._answered.wait(), self.panel.reply_timeout)
                    self._misses = 0
                except TimeoutError:
                    if conn is self._conn:
                        self._misses += 1
                        metrics.POLLS_MISSED.labels(self.name).inc()
                        if self._misses >= self.panel.poll_misses:
                            self._set_link(False, f"{self._misses} polls in a row unanswered")
            await asyncio.sleep(max(0.0, self._poll_interval - (loop.time() - started)))

    async def _watch_silence(self, limit: float) -> None:
        while True:
            await asyncio.sleep(min(limit / 4, 5.0))
            if self._conn is not None and self.up and time.monotonic() - self._last_frame > limit:
                self._set_link(False, f"nothing heard for {limit:g} s")
