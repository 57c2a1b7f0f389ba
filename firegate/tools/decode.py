"""`firegate decode`: frames to the decoded-frame JSON, or a readable table for integrators."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from firegate.codecs.gb26875 import (
    ChecksumError,
    CommandError,
    DataUnitError,
    Frame,
    FrameError,
    Framer,
    frame_to_json,
    parse_frame,
)
from firegate.codecs.gb26875.tables import (
    BIT_ZH,
    AnalogType,
    Command,
    ComponentType,
    SystemType,
    TypeFlag,
    command_is_known,
    zh_of,
)


def _hex_frames(lines: Iterable[str]) -> Iterator[tuple[int, bytes | str]]:
    for number, line in enumerate(lines, 1):
        text = "".join(line.split()).removeprefix("0x")
        if not text or text.startswith("#"):
            continue
        try:
            yield number, bytes.fromhex(text)
        except ValueError:
            yield number, f"not hexadecimal: {line.strip()[:60]!r}"


def _emit(frame: Frame, pretty: bool, where: str = "") -> None:
    doc = frame_to_json(frame)
    if pretty:
        sys.stdout.write(render_table(doc) + "\n")
    else:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    if not command_is_known(frame.command):
        sys.stderr.write(f"note: {where}command byte {frame.command} is reserved: a gateway denies it\n")


def _reserved(error: CommandError) -> Frame | FrameError:
    """A whole frame with a reserved command byte: shown (as reserved), not refused."""
    try:
        return parse_frame(error.data, verify_checksum=False, reserved_commands=True)
    except FrameError:
        return error


def run_decode(source: str, *, raw: bool = False, pretty: bool = False) -> int:
    """Exit status: 0 when every frame decoded cleanly, 1 otherwise (errors on stderr, one line each)."""
    failures = 0
    err = sys.stderr
    if source == "-" and raw:
        framer = Framer()
        for chunk in iter(lambda: sys.stdin.buffer.read(65536), b""):
            for item in framer.feed(chunk):
                if isinstance(item, CommandError):
                    item = _reserved(item)
                if isinstance(item, FrameError):
                    failures += 1
                    err.write(f"error: {item.reason}: {item}\n")
                else:
                    _emit(item, pretty)
        if framer.buffered:
            failures += 1
            err.write(f"error: {framer.buffered} bytes at the end do not form a whole frame\n")
        return 1 if failures else 0
    lines: Iterable[str] = sys.stdin if source == "-" else [source]
    for number, data in _hex_frames(lines):
        where = f"line {number}: " if source == "-" else ""
        if isinstance(data, str):
            failures += 1
            err.write(f"error: {where}{data}\n")
            continue
        try:
            frame = parse_frame(data, verify_checksum=False, reserved_commands=True)
        except FrameError as e:
            failures += 1
            err.write(f"error: {where}{e.reason}: {e}\n")
            continue
        _emit(frame, pretty, where)
        if not frame.checksum_ok:
            failures += 1
            err.write(f"error: {where}checksum: {ChecksumError.__name__} (checksum_ok is false)\n")
        try:
            frame.data_unit  # noqa: B018 - decoding is the check
        except DataUnitError as e:
            failures += 1
            err.write(f"error: {where}data_unit: {e}\n")
    return 1 if failures else 0


def _zh_value(key: str, value: Any) -> str:
    tables = {
        "system_type": SystemType,
        "component_type": ComponentType,
        "analog_type": AnalogType,
        "command": Command,
        "type": TypeFlag,
    }
    if key in tables and isinstance(value, int):
        return f"{value} {zh_of(tables[key], value)}"
    if key.endswith("_flags") and isinstance(value, list):
        return ", ".join(f"{name}({BIT_ZH.get(name, '?')})" for name in value) or "-"
    return str(value)


def render_table(doc: dict[str, Any]) -> str:
    """A two-column table of one decoded frame, objects indented below it."""
    rows: list[tuple[str, str]] = []
    for key, value in doc.items():
        if key == "objects" or key.endswith("_name"):
            continue
        rows.append((key, _zh_value(key, value)))
    for index, obj in enumerate(doc.get("objects", [])):
        rows.append((f"object {index + 1}", ""))
        rows.extend((f"  {k}", _zh_value(k, v)) for k, v in obj.items() if not k.endswith("_name"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows) + "\n"
