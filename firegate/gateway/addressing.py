"""Device ids from the 6-byte address. Vendors differ (most read a little-endian integer, an
older helper IP:port): configurable, LE integer by default."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

AddressMode = Literal["le_int", "ipv4_port", "bcd"]


def le_int(raw: bytes) -> str:
    return str(int.from_bytes(raw, "little"))


def ipv4_port(raw: bytes) -> str:
    # DG's reading: IPv4 then a big-endian port; '-' keeps the id one NATS subject token
    return "-".join(str(b) for b in raw[:4]) + f"-{int.from_bytes(raw[4:6], 'big')}"


def bcd(raw: bytes) -> str:
    digits = "".join(f"{b >> 4}{b & 0xF}" for b in reversed(raw))
    return digits.lstrip("0") or "0" if digits.isdigit() else le_int(raw)


DEVICE_ID: dict[str, Callable[[bytes], str]] = {"le_int": le_int, "ipv4_port": ipv4_port, "bcd": bcd}
