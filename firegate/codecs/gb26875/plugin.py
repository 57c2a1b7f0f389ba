"""GB/T 26875.3 as a line codec: for `firegate codec test` and the codec list.

A `gb26875` panel line is served by the gateway's own session (confirm after storage, commands
down, newest session wins), exactly as over TCP; this class lets the integrator's tools read a
capture of such a line the same way they read any dialect.
"""

from __future__ import annotations

from typing import ClassVar

from firegate.codecs.api import Context, LineCodec, LineSettings, Reading
from firegate.codecs.errors import CodecError
from firegate.codecs.gb26875 import Command, Frame, Framer, answer, decode_data_unit


class _Framer:
    def __init__(self) -> None:
        self._framer = Framer()

    def feed(self, data: bytes) -> list[Frame | CodecError]:
        return list(self._framer.feed(data))


class GB26875Codec(LineCodec[Frame]):
    name: ClassVar[str] = "gb26875"
    summary: ClassVar[str] = "GB/T 26875.3-2011 frames (UITDs), the same as over TCP"
    line: ClassVar[LineSettings] = LineSettings(9600)

    def framer(self) -> _Framer:
        return _Framer()

    def raw(self, frame: Frame) -> bytes:
        return frame.raw

    def decode(self, frame: Frame, context: Context) -> list[Reading]:
        if frame.command != Command.SEND_DATA:
            return []
        unit = decode_data_unit(frame.data)
        if unit is None or unit.heartbeat or not unit.objects:
            return []
        return [Reading(unit.type, unit.objects, device=str(frame.source), time=frame.time.value)]

    def acknowledge(self, frame: Frame) -> bytes | None:
        return answer(frame, Command.CONFIRM) if frame.command == Command.SEND_DATA else None
