"""Declarative panel dialects: a YAML file describes a simple binary CRT dialect, no Python.

A dialect file gives the line settings, the poll/keep-alive frame, the framing (head and tail
bytes, a fixed length or a length field), the checksum, where the controller/loop/point address
and the event code sit, and what each event code means. `load_dialect` validates it strictly
(the error names the key) and `DeclarativeCodec` is then an ordinary `LineCodec`.

The meanings map onto the standard's objects: point events (fire, fault, supervisory...) are a
component status (type 2) with that bit; a restore is the point back to normal (the normalizer
turns a cleared fault bit into "fault cleared"); whole-panel events (main/backup power, reset)
are a system status (type 1) of the controller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from firegate.codecs.api import (
    STATUS,
    SYSTEM_STATUS,
    Context,
    LineCodec,
    LineSettings,
    PanelAddress,
    Reading,
)
from firegate.codecs.checksums import CHECKSUMS, SIZES
from firegate.codecs.errors import CodecError
from firegate.errors import ConfigError, ConfigProblem

NORMAL = STATUS["normal"]
# meaning -> (object, status bits); a restore is the object back to normal
MEANINGS: dict[str, tuple[Literal["component", "system", "none"], int]] = {
    "fire": ("component", NORMAL | STATUS["fire"]),
    "fault": ("component", NORMAL | STATUS["fault"]),
    "disabled": ("component", NORMAL | STATUS["disabled"]),
    "supervisory": ("component", NORMAL | STATUS["supervisory"]),
    "started": ("component", NORMAL | STATUS["started"]),
    "feedback": ("component", NORMAL | STATUS["feedback"]),
    "delay": ("component", NORMAL | STATUS["delay"]),
    "power_fault": ("component", NORMAL | STATUS["power_fault"]),
    "restore": ("component", NORMAL),  # fault cleared, enabled, stopped...: the point is normal
    "main_power_fault": ("system", NORMAL | SYSTEM_STATUS["main_power_fault"]),
    "backup_power_fault": ("system", NORMAL | SYSTEM_STATUS["backup_power_fault"]),
    "bus_fault": ("system", NORMAL | SYSTEM_STATUS["bus_fault"]),
    "power_restore": ("system", NORMAL),  # main and backup power back: the panel is normal
    "reset": ("system", NORMAL | SYSTEM_STATUS["reset"]),
    "none": ("none", 0),  # keep-alive answers, self-test chatter: nothing to store
}
Meaning = Literal[
    "fire",
    "fault",
    "disabled",
    "supervisory",
    "started",
    "feedback",
    "delay",
    "power_fault",
    "restore",
    "main_power_fault",
    "backup_power_fault",
    "bus_fault",
    "power_restore",
    "reset",
    "none",
]
MAX_FRAME = 4096


def _hex(value: Any) -> Any:
    if isinstance(value, str):
        text = re.sub(r"\s+|0x|,", "", value, flags=re.IGNORECASE)
        try:
            return bytes.fromhex(text)
        except ValueError as e:
            raise ValueError(f"not hexadecimal bytes: {value!r}") from e
    if isinstance(value, int) and 0 <= value <= 0xFF:  # YAML reads `head: 0xAA` as an int
        return bytes([value])
    return value


HexBytes = Annotated[bytes, BeforeValidator(_hex)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LineModel(_Strict):
    baudrate: int = Field(9600, gt=0)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: float = 1

    @model_validator(mode="after")
    def _stopbits(self) -> LineModel:
        if self.stopbits not in (1, 1.5, 2):
            raise ValueError(f"stopbits is 1, 1.5 or 2, not {self.stopbits}")
        return self


class PollModel(_Strict):
    frame: HexBytes = Field(min_length=1)
    interval: float = Field(gt=0, description="seconds between polls / keep-alives")


class LengthField(_Strict):
    offset: int = Field(ge=0)
    size: Literal[1, 2] = 1
    endian: Literal["big", "little"] = "big"
    counts: Literal["frame", "rest"] = "rest"  # the whole frame, or the bytes after the field
    adjust: int = 0  # added to the value (e.g. a checksum and tail the count leaves out)


class FramingModel(_Strict):
    head: HexBytes = b""
    tail: HexBytes = b""
    length: int | None = Field(None, gt=0, le=MAX_FRAME)  # fixed total length
    length_field: LengthField | None = None
    max_length: int = Field(256, gt=0, le=MAX_FRAME)

    @model_validator(mode="after")
    def _one_way(self) -> FramingModel:
        if not self.head and not self.tail:
            raise ValueError("give head or tail bytes (or both)")
        if self.length is not None and self.length_field is not None:
            raise ValueError("give length or length_field, not both")
        if self.length is None and self.length_field is None and not self.tail:
            raise ValueError("a frame needs an end: length, length_field or tail")
        if self.length is not None and self.length > self.max_length:
            raise ValueError("length is over max_length")
        return self


class ChecksumModel(_Strict):
    kind: Literal[
        "sum8", "xor8", "sum16", "crc16_modbus", "crc16_ccitt", "crc16_xmodem", "crc16_kermit", "crc16_x25"
    ]
    start: int = 0  # first byte covered (negative: from the frame's end)
    end: int = 0  # one past the last byte covered (0 or negative: from the end, before the checksum)
    at: int | None = None  # offset of its first byte (negative: from the end; none: just before the tail)
    endian: Literal["big", "little"] = "big"


class FieldModel(_Strict):
    offset: int  # negative: from the frame's end
    size: int = Field(1, ge=1, le=4)
    encoding: Literal["binary", "binary_le", "bcd", "ascii"] = "binary"


class FieldsModel(_Strict):
    event: FieldModel
    controller: FieldModel | None = None
    loop: FieldModel | None = None
    point: FieldModel | None = None
    component_type: FieldModel | None = None  # the standard's component type, if the frame says it


def _code(value: Any) -> Any:
    if isinstance(value, str) and value.lower().startswith("0x"):
        return int(value, 16)
    return value


class DialectModel(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    summary: str = ""
    line: LineModel = LineModel()
    mode: Literal["poll", "listen"] = "listen"
    poll: PollModel | None = None
    liveness: float | None = Field(None, gt=0)
    framing: FramingModel
    checksum: ChecksumModel | None = None
    fields: FieldsModel
    events: dict[Annotated[int, BeforeValidator(_code)], Meaning] = Field(min_length=1)
    acknowledge: HexBytes | None = None
    component_type: int = Field(0, ge=0, le=255)  # when the frame does not say it

    @model_validator(mode="after")
    def _consistent(self) -> DialectModel:
        if self.mode == "poll" and self.poll is None:
            raise ValueError("mode poll needs a poll frame")
        length = self.framing.length
        if length is not None:
            if length < len(self.framing.head) + len(self.framing.tail):
                raise ValueError(f"framing.length {length} is shorter than the head and tail")
            for name, spec in self.fields:
                if spec is not None and spec.offset >= 0 and spec.offset + spec.size > length:
                    raise ValueError(f"fields.{name} ends past the frame's {length} bytes")
        return self


@dataclass(frozen=True, slots=True)
class DialectFrame:
    raw: bytes


def _position(offset: int, frame_len: int) -> int:
    return offset if offset >= 0 else frame_len + offset


class DeclarativeFramer:
    """Frames of one dialect in any chunking; garbage is skipped and reported, memory bounded
    (the buffer never holds more than one maximal frame plus one chunk)."""

    def __init__(self, spec: DialectModel) -> None:
        self.spec = spec
        self.framing = spec.framing
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[DialectFrame | CodecError]:
        self.buffer += data
        out: list[DialectFrame | CodecError] = []
        while self.buffer:
            if not self._step(out):
                break
        return out

    def _skip(self, out: list[DialectFrame | CodecError], count: int, reason: str, why: str) -> None:
        dropped = bytes(self.buffer[:count])
        del self.buffer[:count]
        out.append(CodecError(f"{why} ({len(dropped)} bytes skipped)", reason=reason, data=dropped))

    def _step(self, out: list[DialectFrame | CodecError]) -> bool:
        """One frame or one error off the buffer; False when more bytes are needed."""
        f = self.framing
        head = f.head
        if head:
            at = self.buffer.find(head)
            if at < 0:
                keep = len(head) - 1  # the head may be split across chunks
                if len(self.buffer) > keep:
                    self._skip(out, len(self.buffer) - keep, "delimiter", "no frame head")
                return False
            if at > 0:
                self._skip(out, at, "delimiter", "bytes before a frame head")
                return True
        size = self._size()
        if size is None:
            return False  # length field not yet here
        if size < 0:
            self._skip(out, max(len(head), 1), "length", "frame length out of range")
            return True
        if size == 0:  # tail framing: up to the tail
            end = self.buffer.find(f.tail, len(head))
            if end < 0:
                if len(self.buffer) > f.max_length:
                    count = len(head) if head else len(self.buffer) - len(f.tail) + 1
                    self._skip(out, count, "length", f"no tail within {f.max_length} bytes")
                    return True
                return False
            size = end + len(f.tail)
            if size > f.max_length:
                self._skip(out, len(head) if head else size, "length", "frame over max_length")
                return True
        if len(self.buffer) < size:
            return False
        frame = bytes(self.buffer[:size])
        if f.tail and not frame.endswith(f.tail):
            self._skip(out, max(len(head), 1), "delimiter", f"no tail {f.tail.hex()} at the end")
            return True
        problem = checksum_problem(self.spec, frame)
        if problem:
            # the head bytes were a false start or the frame is damaged: resync after them
            self._skip(out, max(len(head), 1) if head else size, "checksum", problem)
            return True
        del self.buffer[:size]
        out.append(DialectFrame(frame))
        return True

    def _size(self) -> int | None:
        """The whole frame's size; 0 for tail framing, -1 for a length out of range."""
        f = self.framing
        if f.length is not None:
            return f.length
        lf = f.length_field
        if lf is None:
            return 0
        if len(self.buffer) < lf.offset + lf.size:
            return None
        value = int.from_bytes(self.buffer[lf.offset : lf.offset + lf.size], lf.endian) + lf.adjust
        total = value if lf.counts == "frame" else lf.offset + lf.size + value
        if total < lf.offset + lf.size + len(f.tail) or total > f.max_length:
            return -1
        return total


def _span(spec: DialectModel, frame_len: int) -> tuple[int, int, int]:
    """(start, end) of the covered bytes and where the checksum sits, in a frame of this size."""
    assert spec.checksum is not None
    c = spec.checksum
    at = frame_len - len(spec.framing.tail) - SIZES[c.kind] if c.at is None else _position(c.at, frame_len)
    start = _position(c.start, frame_len)
    end = at if c.end == 0 else _position(c.end, frame_len)
    return start, end, at


def checksum_problem(spec: DialectModel, frame: bytes) -> str | None:
    if spec.checksum is None:
        return None
    start, end, at = _span(spec, len(frame))
    size = SIZES[spec.checksum.kind]
    if not 0 <= start <= end <= len(frame) or not 0 <= at <= len(frame) - size:
        return f"frame of {len(frame)} bytes too short for its checksum"
    want = CHECKSUMS[spec.checksum.kind](frame[start:end])
    got = int.from_bytes(frame[at : at + size], spec.checksum.endian)
    if want != got:
        return f"checksum {got:#x}, computed {want:#x}"
    return None


def read_field(spec: FieldModel, frame: bytes, what: str) -> int:
    start = _position(spec.offset, len(frame))
    raw = frame[start : start + spec.size]
    if start < 0 or len(raw) != spec.size:
        raise CodecError(f"{what} at {spec.offset} is past the frame's end", reason="length", data=frame)
    if spec.encoding == "binary":
        return int.from_bytes(raw, "big")
    if spec.encoding == "binary_le":
        return int.from_bytes(raw, "little")
    if spec.encoding == "bcd":
        digits = raw.hex()
        if not digits.isdigit():
            raise CodecError(f"{what} {digits} is not BCD", reason="address", data=frame)
        return int(digits)
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise CodecError(f"{what} {text!r} is not ASCII digits", reason="address", data=frame)
    return int(text)


def write_field(spec: FieldModel, frame: bytearray, value: int) -> None:
    start = _position(spec.offset, len(frame))
    if spec.encoding == "binary":
        raw = value.to_bytes(spec.size, "big")
    elif spec.encoding == "binary_le":
        raw = value.to_bytes(spec.size, "little")
    elif spec.encoding == "bcd":
        raw = bytes.fromhex(f"{value:0{spec.size * 2}d}")
    else:
        raw = f"{value:0{spec.size}d}".encode("ascii")
    if len(raw) != spec.size:
        raise ValueError(f"{value} does not fit in {spec.size} bytes of {spec.encoding}")
    frame[start : start + spec.size] = raw


class DeclarativeCodec(LineCodec[DialectFrame]):
    """A `LineCodec` made from a dialect file."""

    name: ClassVar[str] = "declarative"

    def __init__(self, spec: DialectModel, source: str = "") -> None:
        self.spec = spec
        self.source = source
        # instance attributes shadow the class-level defaults the registry reads
        self.name = spec.name  # type: ignore[misc]
        self.summary = spec.summary  # type: ignore[misc]
        self.line = LineSettings(  # type: ignore[misc]
            spec.line.baudrate, spec.line.bytesize, spec.line.parity, spec.line.stopbits
        )
        self.liveness = spec.liveness  # type: ignore[misc]

    def framer(self) -> DeclarativeFramer:
        return DeclarativeFramer(self.spec)

    def raw(self, frame: DialectFrame) -> bytes:
        return frame.raw

    def decode(self, frame: DialectFrame, context: Context) -> list[Reading]:
        spec, raw = self.spec, frame.raw
        code = read_field(spec.fields.event, raw, "event code")
        meaning = spec.events.get(code)
        if meaning is None:
            raise CodecError(f"unknown event code {code:#04x}", reason="unknown_event", data=raw)
        kind, status = MEANINGS[meaning]
        if kind == "none":
            return []
        address = PanelAddress(*(self._address_part(name, raw) for name in ("controller", "loop", "point")))
        if kind == "system":
            return [Reading(1, (context.system_status(address.controller, status, when=None),))]
        obj = context.component_status(address, status, when=None)
        if spec.fields.component_type is not None and obj.component_type == 0:
            obj = type(obj).make(
                obj.system_type,
                obj.system_address,
                read_field(spec.fields.component_type, raw, "component type") & 0xFF,
                obj.component_address,
                obj.status,
                obj.description,
                obj.time,
            )
        return [Reading(2, (obj,))]

    def _address_part(self, name: str, raw: bytes) -> int:
        spec: FieldModel | None = getattr(self.spec.fields, name)
        return 0 if spec is None else read_field(spec, raw, name)

    def acknowledge(self, frame: DialectFrame) -> bytes | None:
        return self.spec.acknowledge

    def poll(self) -> bytes | None:
        return self.spec.poll.frame if self.spec.poll is not None else None

    @property
    def poll_interval(self) -> float | None:
        return self.spec.poll.interval if self.spec.poll is not None else None

    def answers_poll(self, frame: DialectFrame) -> bool:
        return True

    def build(self, code: int, address: PanelAddress | None = None, size: int | None = None) -> bytes:
        """A frame saying event ``code`` for ``address``: for simulators and tests. ``size`` is
        the total length for length-field and tail framing (default: just big enough)."""
        spec, f = self.spec, self.spec.framing
        address = address or PanelAddress()
        fields = [spec.fields.event, spec.fields.controller, spec.fields.loop, spec.fields.point]
        reach = max((fs.offset + fs.size for fs in fields if fs is not None and fs.offset >= 0), default=0)
        csize = SIZES[spec.checksum.kind] if spec.checksum else 0
        total = f.length or size or max(reach, len(f.head)) + csize + len(f.tail)
        if f.length_field is not None:
            total = max(total, f.length_field.offset + f.length_field.size + csize + len(f.tail))
        frame = bytearray(total)
        frame[: len(f.head)] = f.head
        if f.tail:
            frame[total - len(f.tail) :] = f.tail
        if f.length_field is not None:
            lf = f.length_field
            value = (total if lf.counts == "frame" else total - lf.offset - lf.size) - lf.adjust
            frame[lf.offset : lf.offset + lf.size] = value.to_bytes(lf.size, lf.endian)
        write_field(spec.fields.event, frame, code)
        for name, value in (
            ("controller", address.controller),
            ("loop", address.loop),
            ("point", address.point),
        ):
            fs = getattr(spec.fields, name)
            if fs is not None:
                write_field(fs, frame, value)
        if spec.checksum is not None:
            start, end, at = _span(spec, total)
            value = CHECKSUMS[spec.checksum.kind](bytes(frame[start:end]))
            frame[at : at + csize] = value.to_bytes(csize, spec.checksum.endian)
        return bytes(frame)


def _problems(error: ValidationError, where: str) -> list[ConfigProblem]:
    out = []
    for e in error.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(file)"
        out.append(ConfigProblem(key, e["msg"].removeprefix("Value error, "), e.get("input"), where))
    return out


def parse_dialect(text: str, where: str = "<dialect>") -> DeclarativeCodec:
    """A codec from a dialect file's text; ConfigError naming the key for a bad file."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError([ConfigProblem("(file)", f"not YAML: {e}", where=where)]) from e
    if not isinstance(doc, dict):
        raise ConfigError([ConfigProblem("(file)", "a dialect file is a mapping of keys", where=where)])
    try:
        spec = DialectModel.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(_problems(e, where)) from e
    return DeclarativeCodec(spec, where)


def load_dialect(path: str | Path) -> DeclarativeCodec:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([ConfigProblem("(file)", f"cannot read: {e.strerror}", where=str(path))]) from e
    return parse_dialect(text, str(path))


def shipped() -> list[DeclarativeCodec]:
    """The dialect files shipped in firegate/codecs/dialects (one entry point registers them all)."""
    folder = resources.files("firegate.codecs") / "dialects"
    return [
        parse_dialect(item.read_text(encoding="utf-8"), f"firegate/codecs/dialects/{item.name}")
        for item in sorted(folder.iterdir(), key=lambda i: i.name)
        if item.name.endswith((".yaml", ".yml"))
    ]
