"""Test kit for serial lines: a pty pair the line opens by a stable path (a symlink that can
vanish and come back, as a USB adapter does), a small dialect, and a line running with its
own ingest."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

from prometheus_client import REGISTRY

from firegate.bus.kvmemory import MemoryStatusMemory
from firegate.codecs.api import STATUS, Context, LineCodec, LineSettings, PanelAddress, Reading
from firegate.codecs.errors import CodecError
from firegate.gateway.serial.config import Panel
from firegate.gateway.serial.line import PanelLine
from firegate.ingest import Ingest
from firegate.ingest.normalize import Normalizer
from firegate.ingest.sink import EventSink, MemorySink

STX, ETX, ACK, ENQ = b"\x02", b"\x03", b"\x06", b"\x05"


class Pty:
    """The far end of a serial line: the test writes what the panel sends and reads what firegate
    sends. ``path`` is a symlink to the current slave: `vanish` removes it, `replug` makes a new
    pair behind the same path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master = -1
        self.slave = -1
        self.received = bytearray()
        self._got = asyncio.Event()
        self.replug()

    def replug(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        os.set_blocking(self.master, False)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.path.symlink_to(os.ttyname(self.slave))
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self.master)
            return
        self.received += data
        self._got.set()

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    async def wait_for(self, data: bytes, timeout: float = 3.0) -> None:
        """Until firegate has sent ``data`` (anywhere in what it sent so far)."""
        async with asyncio.timeout(timeout):
            while data not in self.received:
                self._got.clear()
                await self._got.wait()

    def vanish(self) -> None:
        """The adapter is unplugged: the device node goes away, the line gets EIO."""
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self.slave = -1
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def checksum(body: bytes) -> bytes:
    return b"%02X" % (sum(body) & 0xFF)


def frame(body: bytes) -> bytes:
    """A demo frame: STX body checksum ETX."""
    return STX + body + checksum(body) + ETX


class DemoFramer:
    MAX = 64

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes | CodecError]:
        out: list[bytes | CodecError] = []
        for byte in data:
            if not self.buffer and byte != STX[0]:
                out.append(CodecError("garbage between frames", reason="delimiter", data=bytes([byte])))
                continue
            self.buffer.append(byte)
            if byte == ETX[0]:
                whole, self.buffer = bytes(self.buffer), bytearray()
                body, sum_ = whole[1:-3], whole[-3:-1]
                if checksum(body) != sum_:
                    out.append(CodecError("bad checksum", reason="checksum", data=whole))
                else:
                    out.append(whole)
            elif len(self.buffer) > self.MAX:
                out.append(CodecError("frame too long", reason="length", data=bytes(self.buffer)))
                self.buffer = bytearray()
        # runs of garbage are one error each, as a real framer would report them
        merged: list[bytes | CodecError] = []
        for item in out:
            last = merged[-1] if merged else None
            if isinstance(item, CodecError) and isinstance(last, CodecError) and last.reason == item.reason:
                last.data += item.data
                continue
            merged.append(item)
        return merged


class DemoCodec(LineCodec[bytes]):
    """``F,loop,point`` fire, ``T,loop,point`` fault, ``N,loop,point`` normal, ``K`` keep-alive,
    ``P`` the answer to a poll (ENQ); each frame acknowledged with ACK."""

    name: ClassVar[str] = "demo"
    line: ClassVar[LineSettings] = LineSettings(19200, 8, "E", 1)

    def framer(self) -> DemoFramer:
        return DemoFramer()

    def raw(self, frame: bytes) -> bytes:
        return frame

    def decode(self, frame: bytes, context: Context) -> list[Reading]:
        body = frame[1:-3].decode("ascii")
        kind, *rest = body.split(",")
        if kind in ("K", "P"):
            return []
        if kind not in ("F", "T", "N") or len(rest) != 2:
            raise CodecError(f"unknown event {body!r}", reason="unknown_event", data=frame)
        bits = STATUS["normal"] | {"F": STATUS["fire"], "T": STATUS["fault"], "N": 0}[kind]
        address = PanelAddress(1, int(rest[0]), int(rest[1]))
        return [Reading(2, (context.component_status(address, bits, when=None),))]

    def acknowledge(self, frame: bytes) -> bytes | None:
        return ACK

    def poll(self) -> bytes | None:
        return ENQ

    def answers_poll(self, frame: bytes) -> bool:
        return frame[1:2] == b"P"


class HoardingFramer:
    """A buggy framer that keeps every byte and never gives a frame."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes | CodecError]:
        self.buffer += data
        return []


class HoardingCodec(DemoCodec):
    name: ClassVar[str] = "hoarding"

    def __init__(self) -> None:
        self.framers: list[HoardingFramer] = []

    def framer(self) -> HoardingFramer:  # type: ignore[override]
        self.framers.append(HoardingFramer())
        return self.framers[-1]


def make_ingest(sink: EventSink | None = None) -> Ingest:
    return Ingest(sink or MemorySink(), Normalizer(MemoryStatusMemory()))


def panel(port: Path | str, **changes: Any) -> Panel:
    values: dict[str, Any] = {
        "port": str(port),
        "dialect": "demo",
        "device": "panel-1",
        "reopen_min": 0.05,
        "reopen_max": 0.2,
    }
    values.update(changes)
    return Panel.model_validate(values)


@contextlib.asynccontextmanager
async def running_line(line: PanelLine) -> AsyncIterator[PanelLine]:
    """The line and its ingest running for the block; cancelled after it."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(line.ingest.run()), tg.create_task(line.run())]
        try:
            yield line
        finally:
            for task in tasks:
                task.cancel()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
