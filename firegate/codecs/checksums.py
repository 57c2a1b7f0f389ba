"""The checksums panel dialects use, by the names a dialect file gives them.

Each takes the covered bytes and returns an int; `SIZES` says how many bytes it occupies.
CRC16 variants are the catalogue ones (reveng): MODBUS, CCITT-FALSE, XMODEM, KERMIT, X-25.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache


def sum8(data: bytes) -> int:
    return sum(data) & 0xFF


def xor8(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def sum16(data: bytes) -> int:
    return sum(data) & 0xFFFF


@cache
def _table(poly: int, reflected: bool) -> tuple[int, ...]:
    table = []
    for n in range(256):
        if reflected:
            crc = n
            for _ in range(8):
                crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        else:
            crc = n << 8
            for _ in range(8):
                crc = ((crc << 1) ^ poly if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


def _crc16(poly: int, init: int, reflected: bool, xorout: int) -> Callable[[bytes], int]:
    # reflected algorithms use the bit-reversed polynomial
    rpoly = int(f"{poly:016b}"[::-1], 2) if reflected else poly

    def crc(data: bytes) -> int:
        table = _table(rpoly, reflected)
        value = init
        if reflected:
            for b in data:
                value = (value >> 8) ^ table[(value ^ b) & 0xFF]
        else:
            for b in data:
                value = ((value << 8) & 0xFFFF) ^ table[((value >> 8) ^ b) & 0xFF]
        return value ^ xorout

    return crc


crc16_modbus = _crc16(0x8005, 0xFFFF, True, 0)
crc16_ccitt = _crc16(0x1021, 0xFFFF, False, 0)  # CRC-16/CCITT-FALSE (IBM-3740)
crc16_xmodem = _crc16(0x1021, 0x0000, False, 0)
crc16_kermit = _crc16(0x1021, 0x0000, True, 0)
crc16_x25 = _crc16(0x1021, 0xFFFF, True, 0xFFFF)

CHECKSUMS: dict[str, Callable[[bytes], int]] = {
    "sum8": sum8,
    "xor8": xor8,
    "sum16": sum16,
    "crc16_modbus": crc16_modbus,
    "crc16_ccitt": crc16_ccitt,
    "crc16_xmodem": crc16_xmodem,
    "crc16_kermit": crc16_kermit,
    "crc16_x25": crc16_x25,
}
SIZES = {name: 1 if name.endswith("8") else 2 for name in CHECKSUMS}
