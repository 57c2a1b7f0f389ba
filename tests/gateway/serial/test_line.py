"""A panel dialect on a real serial line (serialx over a pty pair): frames to stored events,
the acknowledgement only after storage, resends stored once, garbage counted, the port
vanishing and coming back, poll mode, a serial device server (socket://) restarting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from firegate.bus.events import DeviceInfo, DeviceOffline, DeviceOnline, FireAlarm
from firegate.bus.kvmemory import MemoryStatusMemory
from firegate.gateway.serial.line import MAX_UNFRAMED, PanelLine
from firegate.ingest import Ingest, IngestSettings
from firegate.ingest.normalize import Normalizer
from firegate.ingest.sink import MemorySink
from tests.gateway.serial.helpers import (
    ACK,
    ENQ,
    DemoCodec,
    HoardingCodec,
    Pty,
    frame,
    make_ingest,
    panel,
    running_line,
    sample,
)
from tests.natsserver import wait_until

FIRE = frame(b"F,3,17")


@contextlib.asynccontextmanager
async def demo_line(
    tmp_path: Path, sink: MemorySink | None = None, codec: DemoCodec | None = None, **changes: object
) -> AsyncIterator[tuple[PanelLine, Pty, MemorySink]]:
    pty = Pty(tmp_path / "ttyPANEL")
    sink = sink or MemorySink()
    line = PanelLine(
        panel(pty.path, **changes), "panels.0", codec or DemoCodec(), make_ingest(sink), site_of=str
    )
    try:
        async with running_line(line):
            yield line, pty, sink
    finally:
        pty.vanish()


def of(sink: MemorySink, kind: type[object]) -> list[object]:
    return [e for e in sink.events if isinstance(e, kind)]


async def test_a_fire_is_acknowledged_only_once_stored_and_stored_once_when_resent(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.delay = 0.4  # a slow store: the acknowledgement must wait for it
    async with demo_line(tmp_path, sink) as (line, pty, _):
        await wait_until(lambda: line.up)  # listen mode without liveness: up once the port opens
        pty.write(FIRE)
        await asyncio.sleep(0.25)
        assert ACK not in pty.received and not of(sink, FireAlarm)
        await pty.wait_for(ACK)
        fires = of(sink, FireAlarm)
        assert len(fires) == 1  # stored before the acknowledgement was written
        fire = fires[0]
        assert fire.device == "panel-1" and fire.origin == "serial:demo"  # type: ignore[attr-defined]
        assert fire.point.component_address == (17 << 16 | 3)  # type: ignore[attr-defined]
        # the acknowledgement was lost: the panel sends the same frame again, a second later
        # (the demo frame has no time of its own: the resend is read at the first one's time)
        sink.delay = 0.0
        await asyncio.sleep(1.1)
        pty.received.clear()
        pty.write(FIRE)
        await pty.wait_for(ACK)
        assert len(of(sink, FireAlarm)) == 1


async def test_the_same_frame_after_the_resend_window_is_a_new_alarm(tmp_path: Path) -> None:
    async with demo_line(tmp_path, resend_window=0.2) as (line, pty, sink):
        await wait_until(lambda: line.up)
        pty.write(FIRE)
        await pty.wait_for(ACK)
        await asyncio.sleep(1.1)  # the panel says it again, not a resend: never swallowed
        pty.received.clear()
        pty.write(FIRE)
        await pty.wait_for(ACK)
        assert len(of(sink, FireAlarm)) == 2


async def test_not_stored_is_not_acknowledged_and_the_resend_is(tmp_path: Path) -> None:
    sink = MemorySink()
    sink.fail = True
    async with demo_line(tmp_path, sink) as (line, pty, _):
        await wait_until(lambda: line.up)
        before = sample("firegate_serial_frames_total", panel="panel-1", result="not_stored")
        pty.write(frame(b"T,1,2"))
        await wait_until(
            lambda: sample("firegate_serial_frames_total", panel="panel-1", result="not_stored") > before
        )
        await asyncio.sleep(0.1)
        assert ACK not in pty.received
        sink.fail = False
        pty.write(frame(b"T,1,2"))
        await pty.wait_for(ACK)
        assert len([e for e in sink.events if e.kind == "fault"]) == 1


async def test_keepalives_are_acknowledged_in_line_order(tmp_path: Path) -> None:
    async with demo_line(tmp_path) as (line, pty, sink):
        await wait_until(lambda: line.up)
        pty.write(frame(b"F,1,1") + frame(b"K") + frame(b"T,1,2"))
        await pty.wait_for(ACK * 3)
        assert [e.kind for e in sink.events if e.kind in ("alarm", "fault")] == ["alarm", "fault"]


async def test_garbage_and_a_wrong_baud_rate_are_counted_and_the_line_goes_on(tmp_path: Path) -> None:
    # any baud rate opens (22800 is real); what a wrong one reads is noise
    async with demo_line(tmp_path, baudrate=22800) as (line, pty, sink):
        await wait_until(lambda: line.up)
        assert line.settings.baudrate == 22800 and line.settings.parity == "E"  # the dialect's parity
        before = {
            r: sample("firegate_serial_frame_errors_total", panel="panel-1", reason=r)
            for r in ("delimiter", "checksum")
        }
        noise = bytes((i * 97 + 13) % 256 for i in range(2000)).replace(b"\x02", b"\xfe")
        pty.write(noise + b"\x02F,1,1ZZ\x03")  # noise, then a frame with a broken checksum
        await wait_until(
            lambda: (
                sample("firegate_serial_frame_errors_total", panel="panel-1", reason="checksum")
                > before["checksum"]
            )
        )
        assert (
            sample("firegate_serial_frame_errors_total", panel="panel-1", reason="delimiter")
            > before["delimiter"]
        )
        assert ACK not in pty.received and not sink.events[1:]  # only the online event
        pty.write(FIRE)
        await pty.wait_for(ACK)
        assert len(of(sink, FireAlarm)) == 1


async def test_a_framer_that_never_gives_up_is_started_over(tmp_path: Path) -> None:
    codec = HoardingCodec()
    async with demo_line(tmp_path, codec=codec) as (line, pty, _):
        await wait_until(lambda: line.up)
        before = sample("firegate_serial_frame_errors_total", panel="panel-1", reason="overflow")
        for _ in range(5):
            pty.write(b"\xaa" * (MAX_UNFRAMED // 2))
            await asyncio.sleep(0.05)
        await wait_until(
            lambda: (
                sample("firegate_serial_frame_errors_total", panel="panel-1", reason="overflow") >= before + 2
            )
        )
        assert all(len(f.buffer) <= MAX_UNFRAMED + 4096 for f in codec.framers[-1:])
        assert len(codec.framers) >= 3


async def test_the_port_vanishing_is_a_link_down_and_its_return_a_link_up(tmp_path: Path) -> None:
    async with demo_line(tmp_path) as (_, pty, sink):
        await wait_until(lambda: of(sink, DeviceOnline))
        reopens = sample("firegate_serial_reopens_total", panel="panel-1")
        assert sample("firegate_serial_link_up", panel="panel-1") == 1
        pty.vanish()  # the USB adapter is unplugged
        await wait_until(lambda: of(sink, DeviceOffline))
        assert sample("firegate_serial_link_up", panel="panel-1") == 0
        offline = of(sink, DeviceOffline)[0]
        assert offline.device == "panel-1"  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)  # a few reopen attempts fail meanwhile, backing off
        pty.replug()
        await wait_until(lambda: len(of(sink, DeviceOnline)) == 2)
        assert sample("firegate_serial_reopens_total", panel="panel-1") == reopens + 1
        back = of(sink, DeviceOnline)[1]
        assert back.outage_s is not None and back.outage_s >= 0.5  # type: ignore[attr-defined]
        pty.write(FIRE)
        await pty.wait_for(ACK)
        assert len(of(sink, FireAlarm)) == 1


async def test_poll_mode_polls_and_an_unanswered_panel_is_a_link_down(tmp_path: Path) -> None:
    changes: dict[str, Any] = {"mode": "poll", "poll_interval": 0.1, "reply_timeout": 0.05, "poll_misses": 2}
    async with demo_line(tmp_path, **changes) as (line, pty, sink):
        await pty.wait_for(ENQ)
        assert not line.up  # polled, not yet answered
        pty.write(frame(b"P"))
        await wait_until(lambda: of(sink, DeviceOnline))
        assert line.up
        # a panel that stops answering: two polls missed in a row and the link is down
        missed = sample("firegate_serial_polls_missed_total", panel="panel-1")
        await wait_until(lambda: of(sink, DeviceOffline))
        assert sample("firegate_serial_polls_missed_total", panel="panel-1") >= missed + 2
        assert sample("firegate_serial_link_up", panel="panel-1") == 0
        # it answers again
        pty.received.clear()
        await pty.wait_for(ENQ)
        pty.write(frame(b"P"))
        await wait_until(lambda: len(of(sink, DeviceOnline)) == 2)
        # an event between polls is taken as in listen mode, but is no answer to a poll
        await pty.wait_for(ACK)  # the poll answer's own
        pty.received.clear()
        pty.write(FIRE)
        await pty.wait_for(ACK)
        assert len(of(sink, FireAlarm)) == 1


class DeviceServer:
    """A serial device server's TCP side (a Moxa NPort in TCP server mode): it can be stopped
    and started again on the same port."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.received = bytearray()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                self.received += data

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    def send(self, data: bytes) -> None:
        self.writers[-1].write(data)


async def test_a_device_server_restart_is_reopened_with_backoff(tmp_path: Path) -> None:
    server = DeviceServer()
    await server.start()
    sink = MemorySink()
    line = PanelLine(
        panel(f"socket://127.0.0.1:{server.port}", device="panel-tcp", reopen_min=0.1, reopen_max=0.4),
        "panels.0",
        DemoCodec(),
        make_ingest(sink),
        site_of=str,
    )
    try:
        async with running_line(line):
            await wait_until(lambda: server.writers and line.up)
            server.send(FIRE)
            await wait_until(lambda: ACK in server.received)
            await server.stop()
            await wait_until(lambda: of(sink, DeviceOffline))
            await asyncio.sleep(1.0)  # refused reopens meanwhile: 0.1, 0.2, 0.4, 0.4 s apart
            await server.start()
            await wait_until(lambda: len(of(sink, DeviceOnline)) == 2, within=2.0)
            server.received.clear()
            server.send(frame(b"T,2,2"))
            await wait_until(lambda: ACK in server.received)
            assert [e.kind for e in sink.events if e.kind in ("alarm", "fault")] == ["alarm", "fault"]
    finally:
        if server.server is not None and server.server.is_serving():
            await server.stop()


def test_the_pty_kit_leaves_no_descriptor_open(tmp_path: Path) -> None:
    async def main() -> None:
        pty = Pty(tmp_path / "tty")
        pty.vanish()

    before = len(os.listdir("/proc/self/fd"))
    asyncio.run(main())
    assert len(os.listdir("/proc/self/fd")) == before


async def test_a_full_ingest_stops_the_reading_until_it_has_room(tmp_path: Path) -> None:
    pty = Pty(tmp_path / "ttyPANEL")
    sink = MemorySink()
    ingest = Ingest(sink, Normalizer(MemoryStatusMemory()), IngestSettings(queue_limit=1))
    line = PanelLine(panel(pty.path, device="panel-bp"), "panels.0", DemoCodec(), ingest, site_of=str)
    read = "firegate_serial_received_bytes_total"
    try:
        async with asyncio.TaskGroup() as tg:
            running = tg.create_task(line.run())  # ingest itself not yet: its queue fills
            await wait_until(lambda: line.up)
            first, second = frame(b"T,1,1"), frame(b"T,1,2")
            pty.write(first)
            await wait_until(lambda: sample(read, panel="panel-bp") == len(first))
            pty.write(second)  # stays in the port's buffer: the line does not read while ingest is full
            await asyncio.sleep(0.3)
            assert sample(read, panel="panel-bp") == len(first) and ACK not in pty.received
            ingesting = tg.create_task(ingest.run())  # room: the line reads on
            await pty.wait_for(ACK * 2)
            assert [e.kind for e in sink.events if e.kind == "fault"] == ["fault", "fault"]
            running.cancel()
            ingesting.cancel()
    finally:
        pty.vanish()


async def test_settings_the_port_refuses_are_logged_with_the_key_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with demo_line(tmp_path, stopbits=1.5) as (line, _, sink):  # POSIX serial has no 1.5
        await wait_until(lambda: "the port refuses the line settings" in caplog.text)
        await asyncio.sleep(0.1)
        assert not line.up
        assert [type(e) for e in sink.events] == [DeviceOffline]  # the panel link is down: a fault
    assert "panels.0" in caplog.text and "1.5" in caplog.text


class Talkative(DemoCodec):
    """A panel that sends a keep-alive at least every 0.3 s while it lives."""

    liveness = 0.3


async def test_a_listening_panel_silent_past_its_liveness_is_a_link_down(tmp_path: Path) -> None:
    async with demo_line(tmp_path, codec=Talkative()) as (line, pty, sink):
        await asyncio.sleep(0.2)
        assert not line.up  # the port is open, but the panel has not been heard yet
        pty.write(frame(b"K"))
        await wait_until(lambda: of(sink, DeviceOnline))
        await wait_until(lambda: of(sink, DeviceOffline))  # nothing more for 0.3 s
        assert sample("firegate_serial_link_up", panel="panel-1") == 0
        pty.write(frame(b"K"))
        await wait_until(lambda: len(of(sink, DeviceOnline)) == 2)


class _KeepAliveCodec(DemoCodec):
    """A dialect that names its own poll period, as a YAML dialect's `poll.interval` does."""

    @property
    def poll_interval(self) -> float | None:
        return 0.1


async def test_a_poll_line_polls_at_the_dialects_own_period_unless_the_panel_says(tmp_path: Path) -> None:
    async with demo_line(tmp_path, codec=_KeepAliveCodec(), mode="poll", reply_timeout=0.05) as (_, pty, _):
        await pty.wait_for(ENQ)
        await asyncio.sleep(0.55)
        assert pty.received.count(ENQ) >= 4  # every 0.1 s, not the default 5 s
    async with demo_line(
        tmp_path, codec=_KeepAliveCodec(), mode="poll", poll_interval=1.0, reply_timeout=0.05
    ) as (_, pty, _):
        await pty.wait_for(ENQ)
        await asyncio.sleep(0.55)
        assert pty.received.count(ENQ) == 1  # the panel entry's period wins


async def test_a_port_that_never_opens_is_a_link_down_and_its_first_opening_a_link_up(tmp_path: Path) -> None:
    """An adapter missing when firegate starts: the panel's link fault is raised at once, not
    only logged; plugged in later, the panel comes online with the outage."""
    path = tmp_path / "ttyLATE"
    sink = MemorySink()
    line = PanelLine(
        panel(path, reopen_min=0.05, reopen_max=0.1), "panels.0", DemoCodec(), make_ingest(sink), site_of=str
    )
    pty: Pty | None = None
    try:
        async with running_line(line):
            await wait_until(lambda: of(sink, DeviceOffline))
            (offline,) = of(sink, DeviceOffline)
            assert offline.device == "panel-1"  # type: ignore[attr-defined]
            assert sample("firegate_serial_link_up", panel="panel-1") == 0
            await asyncio.sleep(0.3)  # failing reopens: one offline event, not one per attempt
            assert len(of(sink, DeviceOffline)) == 1
            pty = Pty(path)
            await wait_until(lambda: of(sink, DeviceOnline))
            (online,) = of(sink, DeviceOnline)
            assert online.outage_s is not None and online.outage_s > 0  # type: ignore[attr-defined]
    finally:
        if pty is not None:
            pty.vanish()


def test_rs485_settings_are_the_kernels_serial_rs485() -> None:
    from firegate.gateway.serial.config import Rs485
    from firegate.gateway.serial.rs485 import serial_rs485

    packed = serial_rs485(Rs485(rts_on_send=True, delay_before_send_ms=2, delay_after_send_ms=3))
    assert len(packed) == 32  # struct serial_rs485: flags, two delays, five padding words
    flags, before, after, *padding = struct.unpack("=8I", packed)
    assert (flags, before, after, padding) == (0b11, 2, 3, [0] * 5)  # enabled, RTS on send
    assert struct.unpack(
        "=8I", serial_rs485(Rs485(rts_on_send=False, rts_after_send=True, rx_during_tx=True))
    )[0] == (0b10101)


async def test_a_port_without_an_rs485_mode_does_not_open_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A pty has no RS-485 mode (ENOTTY), as an RS-232 port would not: the line stays closed, the
    panel's link is down (a fault), and the log names the setting."""
    async with demo_line(tmp_path, rs485={"rts_on_send": True}) as (line, _, sink):
        await wait_until(lambda: of(sink, DeviceOffline))
        await wait_until(lambda: "rs485" in caplog.text)
        assert not line.up
    assert "no RS-485 mode" in caplog.text


async def test_a_frame_that_frames_but_does_not_decode_is_kept_raw_and_acknowledged(tmp_path: Path) -> None:
    """An event code the dialect does not know: its check was right, so it is stored as a raw
    record and acknowledged; a panel resending until acknowledged never holds back the fire
    after it."""
    async with demo_line(tmp_path) as (line, pty, sink):
        await wait_until(lambda: line.up)
        unknown = frame(b"X,1,2")
        pty.write(unknown + FIRE)
        await wait_until(lambda: pty.received.count(ACK) == 2)
        (raw,) = [e for e in of(sink, DeviceInfo) if e.info_type_name == "panel_frame"]  # type: ignore[attr-defined]
        assert raw.data["reason"] == "unknown_event" and raw.raw == unknown.hex()  # type: ignore[attr-defined]
        assert raw.kind == "telemetry" and raw.origin == "serial:demo"  # type: ignore[attr-defined]
        assert len(of(sink, FireAlarm)) == 1
        assert sample("firegate_serial_frames_total", panel="panel-1", result="stored_raw") == 1
        pty.write(unknown)  # resent: the same record, stored once
        await wait_until(lambda: pty.received.count(ACK) == 3)
        assert len([e for e in of(sink, DeviceInfo) if e.info_type_name == "panel_frame"]) == 1  # type: ignore[attr-defined]
