"""A tiny monitoring center for the simulator's tests, built from the codec alone.

It confirms every send-data frame (cmd 2) and can be told to drop or deny the next ones, delay
its confirms, send commands and requests, and drop connections. Loopback only, free port.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

from firegate.codecs.gb26875 import (
    Command,
    Frame,
    FrameError,
    Framer,
    InfoObject,
    answer,
    build_frame,
    encode_data_unit,
)

CENTER = 88888


@dataclass(frozen=True, slots=True)
class Received:
    conn: int
    frame: Frame
    at: float  # loop time


class Center:
    def __init__(self, address: int = CENTER) -> None:
        self.address = address
        self.received: list[Received] = []
        self.errors: list[FrameError] = []
        self.drop_confirms = 0  # say nothing to the next N send-data frames
        self.deny_next = 0  # deny the next N send-data frames
        self.confirm = True  # False: answer no send-data frame
        self.confirm_delay = 0.0
        self.confirms_sent = 0
        self.connections = 0
        self.port = 0
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._ids = itertools.count(1)
        self._serials = itertools.count(0)
        self._news = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Center:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        # 3.11's wait_closed() does not wait for the handlers: let them see their EOF and end
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        async with asyncio.timeout(5):
            await self._server.wait_closed()

    @property
    def open_connections(self) -> list[int]:
        return sorted(self._writers)

    def drop(self, conn: int | None = None) -> None:
        """Close one connection, or all."""
        for cid, writer in list(self._writers.items()):
            if conn is None or cid == conn:
                writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = next(self._ids)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        self._writers[conn] = writer
        framer = Framer()
        try:
            while data := await reader.read(65536):
                for item in framer.feed(data):
                    if isinstance(item, FrameError):
                        self.errors.append(item)
                        if item.header is not None:
                            writer.write(answer(item.header, Command.DENY))
                        continue
                    await self._on_frame(conn, item, writer)
        except ConnectionError:
            pass
        finally:
            self._writers.pop(conn, None)
            self._handlers.discard(task)
            writer.close()

    async def _on_frame(self, conn: int, frame: Frame, writer: asyncio.StreamWriter) -> None:
        async with self._news:
            self.received.append(Received(conn, frame, asyncio.get_running_loop().time()))
            self._news.notify_all()
        if frame.command != Command.SEND_DATA or not self.confirm:
            return
        if self.drop_confirms > 0:
            self.drop_confirms -= 1
            return
        if self.deny_next > 0:
            self.deny_next -= 1
            writer.write(answer(frame, Command.DENY))
            return
        if self.confirm_delay:
            await asyncio.sleep(self.confirm_delay)
        writer.write(answer(frame, Command.CONFIRM))
        self.confirms_sent += 1

    async def wait_for(
        self, pred: Callable[[Received], bool], within: float = 5.0, after: int = 0
    ) -> Received:
        """The first received frame (from index `after` on) that matches."""

        def find() -> Received | None:
            return next((r for r in self.received[after:] if pred(r)), None)

        async with asyncio.timeout(within), self._news:
            await self._news.wait_for(lambda: find() is not None)
        hit = find()
        assert hit is not None
        return hit

    async def wait_count(self, pred: Callable[[Received], bool], count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._news:
            await self._news.wait_for(lambda: sum(1 for r in self.received if pred(r)) >= count)

    def frames(self, pred: Callable[[Received], bool] = lambda r: True) -> list[Frame]:
        return [r.frame for r in self.received if pred(r)]

    def send(self, conn: int, data: bytes) -> None:
        """Write raw bytes on a connection."""
        self._writers[conn].write(data)

    def command(
        self,
        conn: int,
        type_flag: int,
        objects: Sequence[InfoObject],
        *,
        command: int = Command.CONTROL,
        destination: int = 0,
        **frame_args: Any,
    ) -> tuple[int, bytes]:
        """Send a control command (cmd 1) or a request (command=4); returns (serial, bytes)."""
        serial = next(self._serials)
        data = build_frame(
            serial=serial,
            command=command,
            source=self.address,
            destination=destination,
            data=encode_data_unit(type_flag, objects),
            **frame_args,
        )
        self._writers[conn].write(data)
        return serial, data


class UdpCenter(asyncio.DatagramProtocol):
    """The UDP flavour: confirms every send-data datagram."""

    def __init__(self) -> None:
        self.received: list[Frame] = []
        self.arrived = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        for item in Framer().feed(data):
            if isinstance(item, Frame):
                self.received.append(item)
                self.arrived.set()
                if item.command == Command.SEND_DATA and self.transport is not None:
                    self.transport.sendto(answer(item, Command.CONFIRM), addr)
