"""UDP: each remote address gets a Session behind a transport adapter, so one code path answers
TCP and UDP devices alike (the application protocol is transport-independent, STD §5.1)."""

from __future__ import annotations

import asyncio
from typing import Any

Addr = tuple[str, int]


class DatagramPeer(asyncio.Transport):
    """Looks like a stream transport to a Session; writes go back to one address as datagrams."""

    def __init__(self, endpoint: asyncio.DatagramTransport, addr: Addr, on_close: Any) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._addr = addr
        self._closing = False
        self._on_close = on_close

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closing and not self._endpoint.is_closing():
            self._endpoint.sendto(bytes(data), self._addr)

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._on_close(self._addr)  # ends the session as a lost TCP connection would

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._addr if name == "peername" else default

    def pause_reading(self) -> None:  # datagrams cannot be paused; the queue bound still holds
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0
