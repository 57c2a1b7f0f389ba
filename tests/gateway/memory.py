"""An in-memory transport for gateway sessions: the bytes a test feeds, the bytes the session
writes, and a close the test can see, without sockets or scheduling luck. Beside the real-socket
tests, for fast, deterministic cases (frames split anywhere, a half-open link)."""

from __future__ import annotations

import asyncio
from typing import Any

from firegate.codecs.gb26875 import Frame, Framer
from firegate.gateway.server import Gateway
from firegate.gateway.session import Session


class MemoryTransport(asyncio.Transport):
    def __init__(self, session: Session, peer: tuple[str, int]) -> None:
        super().__init__()
        self.session = session
        self.peer = peer
        self.written = bytearray()
        self.closed_reason: str | None = None
        self.reading = True
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing:
            self.written += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            asyncio.get_running_loop().call_soon(self.session.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class MemoryLink:
    """One device's connection to the gateway, held in memory."""

    def __init__(self, gateway: Gateway, peer: tuple[str, int] = ("10.0.0.7", 40000)) -> None:
        self.session = Session(gateway)
        self.transport = MemoryTransport(self.session, peer)
        self.session.connection_made(self.transport)
        self._framer = Framer()
        self._read = 0

    def send(self, data: bytes) -> None:
        """Bytes from the device, as one read of the socket."""
        self.session.buffer_updated(self._copy_in(data))

    def _copy_in(self, data: bytes) -> int:
        buffer = self.session.get_buffer(len(data))
        buffer[: len(data)] = data
        return len(data)

    def replies(self) -> list[Frame]:
        """Frames the gateway wrote since the last call."""
        new = bytes(self.transport.written[self._read :])
        self._read = len(self.transport.written)
        return [f for f in self._framer.feed(new) if isinstance(f, Frame)]

    async def wait_replies(self, count: int, timeout: float = 5.0) -> list[Frame]:
        got: list[Frame] = []
        async with asyncio.timeout(timeout):
            while len(got) < count:
                got += self.replies()
                await asyncio.sleep(0.001)
        return got
