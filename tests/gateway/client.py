"""A minimal UITD for gateway tests, built from the codec (the full simulator lives in firegate.sim)."""

from __future__ import annotations

import asyncio
import contextlib

from firegate.codecs.gb26875 import Frame, FrameError, Framer, answer, build_frame, encode_data_unit
from firegate.codecs.gb26875.objects import InfoObject

CENTER = 88888


class Uitd:
    def __init__(self, address: int) -> None:
        self.address = address
        self.serial = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.framer = Framer()
        self.inbox: list[Frame] = []

    async def connect(self, port: int) -> Uitd:
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        return self

    def frame(
        self, type_flag: int | None = None, objects: list[InfoObject] | None = None, serial: int | None = None
    ) -> bytes:
        data = encode_data_unit(type_flag, objects or []) if type_flag is not None else b""
        if serial is None:
            serial = self.serial
            self.serial += 1
        return build_frame(serial=serial, command=2, source=self.address, destination=CENTER, data=data)

    async def send(self, raw: bytes) -> None:
        assert self.writer is not None
        self.writer.write(raw)
        await self.writer.drain()

    async def next_frame(self, timeout: float = 5.0) -> Frame:
        assert self.reader is not None
        while not self.inbox:
            chunk = await asyncio.wait_for(self.reader.read(4096), timeout)
            if not chunk:
                raise ConnectionError("closed by the gateway")
            for item in self.framer.feed(chunk):
                if isinstance(item, FrameError):
                    raise item
                self.inbox.append(item)
        return self.inbox.pop(0)

    async def exchange(self, raw: bytes, timeout: float = 5.0) -> Frame:
        await self.send(raw)
        return await self.next_frame(timeout)

    async def reply(self, request: Frame, type_flag: int, objects: list[InfoObject]) -> None:
        """Answer a center's request (cmd 4) with a reply (cmd 5) carrying `objects`."""
        await self.send(
            build_frame(
                serial=request.serial,
                command=5,
                source=self.address,
                destination=CENTER,
                data=encode_data_unit(type_flag, objects),
            )
        )

    async def answer_commands(self, count: int = 1, timeout: float = 5.0) -> list[Frame]:
        """Confirm control commands the center sends (clock sync, duty check)."""
        got = []
        for _ in range(count):
            frame = await self.next_frame(timeout)
            got.append(frame)
            await self.send(answer(frame, 3))
        return got

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
