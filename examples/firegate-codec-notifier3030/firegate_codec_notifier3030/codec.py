"""notifier3030: the old Notifier (诺蒂菲尔) 3030 panel's CRT output, listened to (a worked example).

Made with `firegate codec new notifier3030`, then filled in. What public UITD firmware notes
say of this dialect: 9600 baud, listen mode, one record per event, the first byte encodes the
event (0x6B fire, 0x45 fault, 0xD1 feedback, 0xF2 disable, 0x05 restore) and the record ends
with 0x0A. The rest of the record is modelled, NOT taken from Notifier's documents: the device
address as ASCII ``L<loop>D<point>`` (a detector) or ``L<loop>M<point>`` (a module), with an
optional ``P<panel>`` in front, then the zone text in GB18030. Check it against a capture of the
real panel before relying on it.

Why Python and not a YAML dialect: the address is text of variable length and the device kind
(detector or module) is a letter in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from firegate.codecs.api import STATUS, CodecError, Context, LineCodec, LineSettings, PanelAddress, Reading

TAIL = b"\x0a"
MAX_RECORD = 128
NORMAL = STATUS["normal"]
EVENTS = {
    0x6B: NORMAL | STATUS["fire"],
    0x45: NORMAL | STATUS["fault"],
    0xD1: NORMAL | STATUS["feedback"],
    0xF2: NORMAL | STATUS["disabled"],
    0x05: NORMAL,  # restore: the point is back to normal (a fault or a disable is then cleared)
}
KINDS = {"D": 25, "M": 84}  # GB 26875.3 component types: fire detector, module
ADDRESS = re.compile(rb"\s*(?:P(\d{1,3}))?\s*L(\d{1,2})\s*([DM])(\d{1,3})\s*")


@dataclass(frozen=True, slots=True)
class Frame:
    raw: bytes


class Framer:
    """Records ended by LF, in any chunking; a record over MAX_RECORD bytes is dropped up to its
    LF (reported once), so the buffer stays bounded."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.dropping = False

    def feed(self, data: bytes) -> list[Frame | CodecError]:
        out: list[Frame | CodecError] = []
        self.buffer += data
        while True:
            end = self.buffer.find(TAIL)
            if end < 0:
                if len(self.buffer) > MAX_RECORD:
                    if not self.dropping:
                        out.append(
                            CodecError("record over 128 bytes", reason="length", data=bytes(self.buffer))
                        )
                    self.dropping = True
                    self.buffer.clear()
                return out
            record = bytes(self.buffer[: end + 1])
            del self.buffer[: end + 1]
            if self.dropping:  # the end of a runaway record
                self.dropping = False
                continue
            if record == TAIL:  # blank line between records
                continue
            out.append(Frame(record))


class Notifier3030Codec(LineCodec[Frame]):
    name: ClassVar[str] = "notifier3030"
    summary: ClassVar[str] = "Notifier (诺蒂菲尔) old 3030 CRT output, listen mode (worked example)"
    line: ClassVar[LineSettings] = LineSettings(9600, 8, "N", 1)

    def framer(self) -> Framer:
        return Framer()

    def raw(self, frame: Frame) -> bytes:
        return frame.raw

    def decode(self, frame: Frame, context: Context) -> list[Reading]:
        code, body = frame.raw[0], frame.raw[1:-1]
        status = EVENTS.get(code)
        if status is None:
            raise CodecError(f"unknown event byte {code:#04x}", reason="unknown_event", data=frame.raw)
        found = ADDRESS.match(body)
        if found is None:
            raise CodecError(f"no device address in {body!r}", reason="address", data=frame.raw)
        panel, loop, kind, point = found.groups()
        try:
            zone = body[found.end() :].decode("gb18030").strip()
        except UnicodeDecodeError as e:
            raise CodecError(f"zone text is not GB18030: {e}", reason="encoding", data=frame.raw) from e
        address = PanelAddress(int(panel or 1), int(loop), int(point))
        obj = context.component_status(address, status, when=None, text=zone)
        if obj.component_type == 0:  # the point table did not say: the address's letter does
            obj = type(obj).make(
                obj.system_type,
                obj.system_address,
                KINDS[kind.decode()],
                obj.component_address,
                obj.status,
                obj.description,
                obj.time,
            )
        return [Reading(2, (obj,))]
