"""A gb26875 line: a UITD on a serial port, served by the gateway's own `Session` exactly as a
TCP connection is (device id from the source address, confirm after storage, retransmissions,
commands down, newest session wins). Each opening of the port is one session."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from firegate.codecs.gb26875.plugin import GB26875Codec
from firegate.gateway.serial.config import Panel
from firegate.gateway.serial.port import LineProtocol, PortSettings, SerialLine
from firegate.gateway.server import Gateway
from firegate.gateway.session import Session

log = logging.getLogger("firegate.gateway.serial")


class SerialPeer(asyncio.Transport):
    """The port as a Session sees a connection: named ``serial:<port>`` in its log lines."""

    def __init__(self, transport: asyncio.Transport, name: str) -> None:
        super().__init__()
        self._transport = transport
        self._name = name

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "protocol":
            return "serial"  # the gateway metrics' protocol label
        return self._name if name == "peername" else self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()


class _SessionProtocol(LineProtocol):
    """Hands the port's events to a Session (serialx transports call data_received, not the
    buffered protocol's get_buffer: the session's `feed` takes the bytes)."""

    def __init__(self, line: UitdLine) -> None:
        super().__init__(line)
        self.session = Session(line.gateway)
        self.peer = f"serial:{line.panel.port}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.session.connection_made(SerialPeer(self.transport, self.peer))

    def received(self, data: bytes) -> None:
        try:
            self.session.feed(data)
        except Exception:
            # as Session.buffer_updated: a bug costs this opening (the line reopens), never the loop
            self.session.log.exception("handling the line's bytes failed")
            self.session.close("internal_error")

    def pause_writing(self) -> None:
        self.session.pause_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost(exc)
        super().connection_lost(exc)


class UitdLine(SerialLine):
    def __init__(self, panel: Panel, key: str, gateway: Gateway) -> None:
        super().__init__(panel, key, PortSettings.of(panel, GB26875Codec.line))
        self.gateway = gateway

    def protocol(self) -> LineProtocol:
        return _SessionProtocol(self)

    def opened(self, protocol: LineProtocol) -> None:
        self.link_up.set(1)

    def lost(self, protocol: LineProtocol) -> None:
        self.link_up.set(0)

    def stopping(self) -> bool:
        return self.gateway.stopping
