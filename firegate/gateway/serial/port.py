"""Opening a serial line and keeping it open: the port's settings, the reopen loop with a
bounded exponential backoff (a USB adapter unplugged, a serial device server restarting)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import serialx

from firegate.codecs.api import LineSettings
from firegate.gateway.serial import metrics, rs485
from firegate.gateway.serial.config import Panel, Rs485
from firegate.ops.logging import FieldsAdapter, Throttle

log = logging.getLogger("firegate.gateway.serial")

OPEN_TIMEOUT = 10.0  # seconds for a port (or a device server's TCP connect) to open
CLOSE_TIMEOUT = 2.0
STABLE_AFTER = 10.0  # a line open this long was fine: the next reopen starts from the shortest wait
OPEN_ERRORS = (OSError, serialx.SerialException, TimeoutError, ValueError)


@dataclass(frozen=True, slots=True)
class PortSettings:
    url: str
    baudrate: int
    bytesize: int
    parity: str
    stopbits: float
    rtscts: bool = False
    xonxoff: bool = False
    rs485: Rs485 | None = None

    @classmethod
    def of(cls, panel: Panel, line: LineSettings) -> PortSettings:
        """The panel's settings; those it leaves out are the dialect's (``line``)."""
        return cls(
            url=panel.port,
            baudrate=panel.baudrate or line.baudrate,
            bytesize=panel.bytesize or line.bytesize,
            parity=panel.parity or line.parity,
            stopbits=panel.stopbits or line.stopbits,
            rtscts=panel.rtscts,
            xonxoff=panel.xonxoff,
            rs485=panel.rs485,
        )

    def __str__(self) -> str:
        stop = f"{self.stopbits:g}"
        return f"{serialx.redact_uri(self.url)} {self.baudrate} {self.bytesize}{self.parity}{stop}"


async def open_port(settings: PortSettings, protocol: asyncio.Protocol) -> asyncio.Transport:
    """The port open with ``protocol`` connected to it; raises one of `OPEN_ERRORS`."""
    loop = asyncio.get_running_loop()
    first = _Rs485First(protocol, settings.rs485) if settings.rs485 is not None else protocol
    async with asyncio.timeout(OPEN_TIMEOUT):
        transport, _ = await serialx.create_serial_connection(
            loop,
            lambda: first,
            settings.url,
            baudrate=settings.baudrate,
            parity=serialx.Parity(settings.parity),
            stopbits=serialx.StopBits(settings.stopbits),
            xonxoff=settings.xonxoff,
            rtscts=settings.rtscts,
            byte_size=settings.bytesize,
            connect_timeout=OPEN_TIMEOUT,
        )
    if isinstance(first, _Rs485First) and first.error is not None:
        raise first.error
    return transport


class _Rs485First(asyncio.Protocol):
    """Sets the port's RS-485 mode before the line's protocol sees the port: a port that has none
    is never an open line (no link up, no bytes), only an opening that failed."""

    def __init__(self, line: asyncio.Protocol, settings: Rs485) -> None:
        self.line = line
        self.settings = settings
        self.error: OSError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        try:
            rs485.enable(transport.get_extra_info("serial").fileno(), self.settings)
        except OSError as e:
            self.error = e
            transport.close()  # nothing was written yet: nothing to lose
            return
        self.line.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.line.data_received(data)

    def eof_received(self) -> bool | None:
        return self.line.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.error is None:
            self.line.connection_lost(exc)

    def pause_writing(self) -> None:
        self.line.pause_writing()

    def resume_writing(self) -> None:
        self.line.resume_writing()


class Backoff:
    """first, 2 x first, ... up to most; back to first after `reset`."""

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = max(first, most)
        self._next = first

    def delay(self) -> float:
        delay, self._next = self._next, min(self.most, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first


class LineProtocol(asyncio.Protocol):
    """The bytes of one opening of a line; ``closed`` is set once the port is gone."""

    def __init__(self, line: SerialLine) -> None:
        self.line = line
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()
        self.error: Exception | None = None
        self._bytes = metrics.BYTES_IN.labels(line.name)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # serialx's transports are Transports
        self.line.opened(self)  # before the first bytes, whatever the transport

    def data_received(self, data: bytes) -> None:
        self._bytes.inc(len(data))
        self.received(data)

    def received(self, data: bytes) -> None:
        """The line's bytes, in any chunks."""

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        self.closed.set()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class SerialLine(ABC):
    """Opens the line, serves one opening until the port goes, waits, opens it again."""

    def __init__(self, panel: Panel, key: str, settings: PortSettings) -> None:
        self.panel = panel
        self.key = key  # "panels.N": what the operator looks up in the config
        self.settings = settings
        self.name = panel.name
        self.link_up = metrics.LINK_UP.labels(self.name)
        self.link_up.set(0)
        self._reopens = metrics.REOPENS.labels(self.name)
        metrics.POLLS_MISSED.labels(self.name)
        self._fields: dict[str, object] = {"panel": self.name, "port": serialx.redact_uri(panel.port)}
        self.log = FieldsAdapter(log, self._fields)
        self.throttle = Throttle(self.log, every=60.0)  # a vanished port fails every reopen

    @abstractmethod
    def protocol(self) -> LineProtocol:
        """A fresh protocol for the next opening."""

    @abstractmethod
    def opened(self, protocol: LineProtocol) -> None:
        """The line is open (from the protocol's connection_made, before any of its bytes)."""

    @abstractmethod
    def lost(self, protocol: LineProtocol) -> None:
        """The opening is over (the port vanished, errored or was closed)."""

    def stopping(self) -> bool:
        return False

    def open_failed(self, error: Exception) -> None:
        """The port could not be opened (each failed attempt). A gb26875 line names no device
        before its frames do, so by default there is nobody to mark down."""
        del error

    async def run(self) -> None:
        backoff = Backoff(self.panel.reopen_min, self.panel.reopen_max)
        failed = False
        while not self.stopping():
            protocol = self.protocol()
            try:
                transport = await open_port(self.settings, protocol)
            except serialx.UnsupportedSetting as e:
                failed = True
                self.open_failed(e)
                self.throttle.log(
                    "unsupported",
                    logging.ERROR,
                    "%s: the port refuses the line settings (%s): %s",
                    self.key,
                    self.settings,
                    e,
                )
                await asyncio.sleep(backoff.most)
                continue
            except OPEN_ERRORS as e:
                failed = True
                self.open_failed(e)
                self.throttle.log(
                    "open_failed", logging.WARNING, "cannot open serial line %s: %s", self.settings, e
                )
                await asyncio.sleep(backoff.delay())
                continue
            if failed:
                self._reopens.inc()
            self.log.info("serial line %s open", self.settings)
            opened_at = time.monotonic()
            try:
                await protocol.closed.wait()
            finally:
                await self._close(transport, protocol)
            failed = True
            if protocol.error is not None:
                self.log.warning("serial line %s lost: %s", self.settings, protocol.error)
            if time.monotonic() - opened_at >= STABLE_AFTER:
                backoff.reset()
            if not self.stopping():
                await asyncio.sleep(backoff.delay())

    async def _close(self, transport: asyncio.Transport, protocol: LineProtocol) -> None:
        try:
            self.lost(protocol)
        finally:
            if not transport.is_closing():
                transport.abort()
            closing = getattr(transport, "wait_closed", None)
            if closing is not None:
                with contextlib.suppress(Exception):  # a second cancel still propagates
                    await asyncio.wait_for(closing(), CLOSE_TIMEOUT)
