"""JSON sensor payloads through a configurable field mapping (`codec_options`).

Paths are dotted (``params.pressure``, ``services.0.event_time``); a number indexes a list. ::

    records: services          # optional: a list in the payload, one set of samples per entry;
                               # the paths below are then read in each entry
    device: deviceId           # optional: the device id (else the source's topic rule)
    time: event_time           # the sensor's own time
    time_format: "%Y%m%dT%H%M%SZ"  # epoch_s (default), epoch_ms, iso, or a strptime format
    points:                    # the measured values: point name -> where its value is
      pressure: {value: properties.pressure, unit: MPa}   # unit: fixed, or unit_path: a field
    flags:                     # the sensor's own alarms: flag -> a field that is truthy when set
      fire: properties.smoke_alarm            # true, non-zero, "1", "true", "alarm", "on"
      fault: {path: properties.state, equals: 3}
    flag_point: smoke          # the point the flags belong to when no value comes with them

A time without a zone (``iso`` or a format without ``%z``/``Z``) is read as UTC for ``epoch``
forms and in the device time zone otherwise. A point whose field is absent is skipped; a payload
with neither values nor flags, a bad time or a non-number where a value is expected is a bad
payload (reasons ``json``, ``time``, ``value``, ``empty``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from firegate.codecs.api import MessageCodec, Sample
from firegate.codecs.errors import CodecError
from firegate.devicetime import device_time

_MISSING = object()
_TRUE_TEXT = frozenset({"1", "true", "yes", "on", "alarm", "fire"})


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path, or _MISSING."""
    node = data
    for part in path.split(".") if path else []:
        if isinstance(node, Mapping):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in _TRUE_TEXT


def parse_time(value: Any, fmt: str) -> datetime:
    """ValueError/TypeError/OverflowError for a value that is not a time in ``fmt``."""
    if fmt in ("epoch_s", "epoch_ms"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError(f"expected a number, got {value!r}")
        seconds = float(value) / (1000 if fmt == "epoch_ms" else 1)
        return datetime.fromtimestamp(seconds, UTC)
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    if fmt == "iso":
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        parsed = datetime.strptime(value, fmt)
        if fmt.endswith("Z") and parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
    aware = device_time(parsed)
    assert aware is not None
    return aware


def _number(value: Any, path: str, payload: bytes) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CodecError(f"{path}: {value!r} is not a number", reason="value", data=payload)
    try:
        return float(value)
    except ValueError:
        raise CodecError(f"{path}: {value!r} is not a number", reason="value", data=payload) from None


class JsonMapCodec(MessageCodec):
    name: ClassVar[str] = "json"
    summary: ClassVar[str] = "JSON payloads (platform property reports, generic shapes) by field mapping"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        self.records: str | None = o.get("records")
        self.device: str | None = o.get("device")
        self.time: str | None = o.get("time")
        self.time_format: str = str(o.get("time_format", "epoch_s"))
        self.points: dict[str, dict[str, Any]] = {}
        for point, spec in (o.get("points") or {}).items():
            entry = {"value": spec} if isinstance(spec, str) else dict(spec)
            if "value" not in entry:
                raise ValueError(f"points.{point}: needs value (the path of its field)")
            self.points[str(point)] = entry
        self.flags: dict[str, dict[str, Any]] = {
            str(flag): {"path": spec} if isinstance(spec, str) else dict(spec)
            for flag, spec in (o.get("flags") or {}).items()
        }
        if not self.points and not self.flags:
            raise ValueError("give points (values) or flags, or both")
        self.flag_point: str = str(o.get("flag_point") or next(iter(self.points), "alarm"))

    def decode(self, payload: bytes, topic: str) -> list[Sample]:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CodecError(f"not JSON: {e}", reason="json", data=payload) from None
        entries = [data]
        if self.records:
            found = lookup(data, self.records)
            entries = found if isinstance(found, list) else []
        samples: list[Sample] = []
        for entry in entries:
            samples += self._samples(data, entry, payload)
        if not samples:
            raise CodecError("no mapped value or flag in the payload", reason="empty", data=payload)
        return samples

    def _read(self, data: Any, entry: Any, path: str) -> Any:
        """A path in the record first, then in the whole payload (a device id beside the list)."""
        found = lookup(entry, path)
        return lookup(data, path) if found is _MISSING and entry is not data else found

    def _samples(self, data: Any, entry: Any, payload: bytes) -> list[Sample]:
        device = None
        if self.device:
            found = self._read(data, entry, self.device)
            device = None if found is _MISSING or found is None else str(found)
        when = None
        if self.time:
            raw_time = self._read(data, entry, self.time)
            if raw_time is not _MISSING:
                try:
                    when = parse_time(raw_time, self.time_format)
                except (ValueError, TypeError, OverflowError, OSError) as e:
                    raise CodecError(f"{self.time}: {raw_time!r}: {e}", reason="time", data=payload) from None
        flags = set()
        for flag, spec in self.flags.items():
            value = lookup(entry, spec["path"])
            if value is _MISSING:
                continue
            if "equals" in spec:
                if value == spec["equals"] or str(value) == str(spec["equals"]):
                    flags.add(flag)
            elif truthy(value):
                flags.add(flag)
        out: list[Sample] = []
        for point, spec in self.points.items():
            value = lookup(entry, spec["value"])
            if value is _MISSING or value is None:
                continue
            unit = spec.get("unit")
            if "unit_path" in spec:
                found = lookup(entry, spec["unit_path"])
                unit = None if found is _MISSING else str(found)
            number = _number(value, spec["value"], payload)
            own = frozenset(flags) if point == self.flag_point else frozenset()
            out.append(Sample(device, point, when, number, unit, own))
        if flags and not any(s.point == self.flag_point for s in out):
            out.append(Sample(device, self.flag_point, when, flags=frozenset(flags)))
        elif not flags and self.flags and not any(s.point == self.flag_point for s in out):
            # the flags were read and none is set: that is news too (an alarm that ended)
            present = any(lookup(entry, spec["path"]) is not _MISSING for spec in self.flags.values())
            if present:
                out.append(Sample(device, self.flag_point, when))
        return out
