"""RS-485 direction control on a local port (Linux's serial_rs485, ioctl TIOCSRS485).

Most USB and device-server RS-485 ports switch the transceiver's direction by themselves; a
UART wired to a transceiver on a board needs the kernel told to drive RTS around each send,
which is what ``panels[].rs485`` asks for. A port without an RS-485 mode refuses the ioctl
(ENOTTY): the line then does not open, and says why.
"""

from __future__ import annotations

import fcntl
import struct

from firegate.gateway.serial.config import Rs485

TIOCSRS485 = 0x542F  # linux/include/uapi/asm-generic/ioctls.h
SER_RS485_ENABLED = 1 << 0
SER_RS485_RTS_ON_SEND = 1 << 1
SER_RS485_RTS_AFTER_SEND = 1 << 2
SER_RS485_RX_DURING_TX = 1 << 4
_SERIAL_RS485 = struct.Struct("=8I")  # flags, delay before, delay after (ms), 5 x padding


class Rs485Error(OSError):
    """The port has no RS-485 mode (or refused these settings)."""


def serial_rs485(settings: Rs485) -> bytes:
    """The kernel's struct serial_rs485 for ``settings``."""
    flags = SER_RS485_ENABLED
    if settings.rts_on_send:
        flags |= SER_RS485_RTS_ON_SEND
    if settings.rts_after_send:
        flags |= SER_RS485_RTS_AFTER_SEND
    if settings.rx_during_tx:
        flags |= SER_RS485_RX_DURING_TX
    return _SERIAL_RS485.pack(
        flags, settings.delay_before_send_ms, settings.delay_after_send_ms, 0, 0, 0, 0, 0
    )


def enable(fd: int, settings: Rs485) -> None:
    try:
        fcntl.ioctl(fd, TIOCSRS485, serial_rs485(settings))
    except OSError as e:
        why = e.strerror or str(e)
        raise Rs485Error(e.errno, f"the port has no RS-485 mode to set (rs485): {why}") from e
