"""Printer-port text: what a panel prints, read off its printer port (listen mode).

Panels print each event as a few lines of GB2312/GB18030 text with ESC/POS control codes (ESC @
resets the printer, FS & enters Chinese mode, ESC 6 selects a character set...). The framer strips
the control codes and cuts the text into records: a record starts at a reset (ESC @ or ESC 6) and
ends at a carriage return, a blank line or a form feed. The decoder reads each record's date,
time, event word, controller/loop/point address and zone text, by default with patterns for the
formats in the field notes (泛海三江 9108: ``ESC @ yyyy.mm.dd   hh:mm:ss ... LF FS & <event> CR``;
利达 LD128EN: ``ESC 6 ... LF LF``), or with the line's own ``patterns``.

Line options (`codec_options`): ``encoding`` (default gb18030), ``patterns`` (regular expressions
with the named groups date, time, event, controller, loop, point, zone; tried in order, the
first match wins), ``events`` (event word -> meaning, merged over the defaults).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from firegate.codecs.api import Context, LineCodec, LineSettings, PanelAddress, Reading
from firegate.codecs.declarative import MEANINGS
from firegate.codecs.errors import CodecError

MAX_RECORD = 512  # bytes; longer is a runaway line (wrong baud rate, binary noise): dropped, counted
RESETS = frozenset(b"@6")  # after ESC: ESC @ (initialize), ESC 6 (character set): a record starts
# ESC/POS sequences to strip: those with one argument byte first, then ESC/FS/GS + one byte, then
# the other C0 controls (LF stays: it separates lines)
_CONTROL = re.compile(
    rb"\x1b[!\-EGMRtadJ3 {V][\x00-\xff]|\x1c[!\-W][\x00-\xff]|\x1d[!BhwHf][\x00-\xff]"
    rb"|[\x1b\x1c\x1d][\x00-\xff]|[\x00-\x09\x0b-\x1a\x1e\x1f\x7f]"
)

# Chinese event words -> meanings (declarative.MEANINGS); longest words are tried first
EVENTS: dict[str, str] = {
    "火警": "fire",
    "火灾报警": "fire",
    "故障": "fault",
    "故障恢复": "restore",
    "恢复": "restore",
    "屏蔽": "disabled",
    "取消屏蔽": "restore",
    "监管": "supervisory",
    "启动": "started",
    "反馈": "feedback",
    "延时": "delay",
    "主电故障": "main_power_fault",
    "备电故障": "backup_power_fault",
    "主电恢复": "power_restore",
    "备电恢复": "power_restore",
    "复位": "reset",
    "系统复位": "reset",
}
_DATE = re.compile(r"(?P<y>\d{2,4})\s*[./\-年]\s*(?P<m>\d{1,2})\s*[./\-月]\s*(?P<d>\d{1,2})\s*日?")
_TIME = re.compile(r"(?P<h>\d{1,2})\s*[:时]\s*(?P<mi>\d{1,2})(?:\s*[:分]\s*(?P<s>\d{1,2})\s*秒?)?")
_ADDRESS = re.compile(
    r"(?:(?P<controller>\d{1,3})\s*(?:号机|机|#)\s*)?(?P<loop>\d{1,3})\s*(?:回路|-)\s*(?P<point>\d{1,4})\s*(?:号|点|地址)?"
)

_CONTROLLER = re.compile(r"(?P<controller>\d{1,3})\s*(?:号机|#机)")


@dataclass(frozen=True, slots=True)
class PrintRecord:
    raw: bytes  # as received, control codes included
    text: bytes  # the printable bytes, lines joined by LF


class PrinterFramer:
    """Records in any chunking. A record over MAX_RECORD bytes is dropped (counted) up to its end."""

    def __init__(self) -> None:
        self.buffer = bytearray()  # the current record's bytes as received
        self.overflowed = False

    def feed(self, data: bytes) -> list[PrintRecord | CodecError]:
        out: list[PrintRecord | CodecError] = []
        buffer = self.buffer
        for b in data:  # a printer port runs at ~1 kB/s: a byte loop is cheap enough
            if b in RESETS and buffer.endswith(b"\x1b"):
                del buffer[-1]
                self._close(out)
                buffer += b"\x1b"
            if not self.overflowed:
                buffer.append(b)
            if b in (0x0D, 0x0C) or (b == 0x0A and buffer.endswith(b"\n\n")):
                self._close(out)
            elif len(buffer) > MAX_RECORD:
                out.append(
                    CodecError(
                        f"a printed record over {MAX_RECORD} bytes", reason="length", data=bytes(buffer)
                    )
                )
                buffer.clear()
                self.overflowed = True
        return out

    def _close(self, out: list[PrintRecord | CodecError]) -> None:
        raw = bytes(self.buffer)
        self.buffer.clear()
        if self.overflowed:  # the end of a runaway record: what follows is a new one
            self.overflowed = False
            return
        text = _CONTROL.sub(b"", raw.replace(b"\r", b"\n"))
        lines = (line.strip() for line in text.split(b"\n"))
        text = b"\n".join(line for line in lines if line)
        if raw:  # control codes alone (三江's poll answer FS . ESC @) show the panel is there
            out.append(PrintRecord(raw, text))


def _int(value: str | None) -> int:
    return int(value) if value else 0


class PrinterCodec(LineCodec[PrintRecord]):
    name: ClassVar[str] = "printer"
    summary: ClassVar[str] = (
        "printer-port text (GB18030 + ESC/POS): 泛海三江 9108, 利达 LD128EN... by patterns"
    )
    line: ClassVar[LineSettings] = LineSettings(9600)

    def framer(self) -> PrinterFramer:
        return PrinterFramer()

    def raw(self, frame: PrintRecord) -> bytes:
        return frame.raw

    def decode(self, frame: PrintRecord, context: Context) -> list[Reading]:
        if not frame.text:
            return []
        options = context.options
        encoding = str(options.get("encoding", "gb18030"))
        try:
            text = frame.text.decode(encoding)
        except (UnicodeDecodeError, LookupError) as e:
            raise CodecError(f"not {encoding} text: {e}", reason="encoding", data=frame.raw) from e
        words = _events(options.get("events"))
        fields = _match(text, options.get("patterns"), words)
        if fields is None or not fields.get("event"):
            raise CodecError(f"no event in {text!r}", reason="unparsed_line", data=frame.raw)
        meaning = words.get(fields["event"])
        if meaning is None:
            raise CodecError(
                f"unknown event word {fields['event']!r}", reason="unknown_event", data=frame.raw
            )
        kind, status = MEANINGS[meaning]
        if kind == "none":
            return []
        when = _when(fields.get("date"), fields.get("time"), context)
        address = PanelAddress(
            _int(fields.get("controller")), _int(fields.get("loop")), _int(fields.get("point"))
        )
        if kind == "system":
            return [Reading(1, (context.system_status(address.controller, status, when=when),))]
        zone = (fields.get("zone") or "").strip()
        return [Reading(2, (context.component_status(address, status, when=when, text=zone),))]


def _events(extra: Any) -> dict[str, str]:
    words = dict(EVENTS)
    if isinstance(extra, Mapping):
        for word, meaning in extra.items():
            if meaning not in MEANINGS:
                raise CodecError(
                    f"event {word!r}: {meaning!r} is not one of {sorted(MEANINGS)}", reason="options"
                )
            words[str(word)] = str(meaning)
    return words


def _match(text: str, patterns: Any, words: Mapping[str, str]) -> dict[str, str] | None:
    if patterns:
        for pattern in patterns if isinstance(patterns, list | tuple) else [patterns]:
            try:
                found = re.search(str(pattern), text, re.DOTALL)
            except re.error as e:
                raise CodecError(f"bad pattern {pattern!r}: {e}", reason="options") from e
            if found:
                return {k: v for k, v in found.groupdict().items() if v is not None}
        return None
    # the default: the date, the time, an address and a known event word anywhere; the rest is the zone
    fields: dict[str, str] = {}
    rest = text.replace("\n", "  ")
    date = _DATE.search(rest)
    if date:
        fields["date"] = f"{date['y']}-{date['m']}-{date['d']}"
        rest = rest[: date.start()] + " " + rest[date.end() :]
    clock = _TIME.search(rest)
    if clock:
        fields["time"] = f"{clock['h']}:{clock['mi']}:{clock['s'] or 0}"
        rest = rest[: clock.start()] + " " + rest[clock.end() :]
    address = _ADDRESS.search(rest)
    address = address or _CONTROLLER.search(rest)  # a whole-panel event names the panel alone
    if address:
        fields.update({k: v for k, v in address.groupdict().items() if v is not None})
        rest = rest[: address.start()] + " " + rest[address.end() :]
    for word in sorted(words, key=len, reverse=True):
        at = rest.find(word)
        if at >= 0:
            fields["event"] = word
            rest = rest[:at] + " " + rest[at + len(word) :]
            break
    fields["zone"] = " ".join(rest.split())
    return fields


def _when(date: str | None, clock: str | None, context: Context) -> datetime | None:
    if not date:
        return None
    try:
        y, m, d = (int(p) for p in re.split(r"\D+", date.strip())[:3])
        h, mi, s = (
            ([int(p) for p in re.split(r"\D+", clock.strip()) if p] + [0, 0, 0])[:3] if clock else (0, 0, 0)
        )
        when = datetime(y + 2000 if y < 100 else y, m, d, h, mi, s)
        return when if 2000 <= when.year <= 2255 else None  # what a GB/T 26875.3 time tag can say
    except ValueError:
        return None  # a date the panel got wrong: the time of arrival then
