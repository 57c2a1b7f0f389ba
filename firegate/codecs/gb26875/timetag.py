"""The 6-byte time tag (spec §5): second, minute, hour, day, month, year-2000, no time zone.

`TimeTag.value` stays naive, as the bytes say; firegate reads it in the device time zone
(`firegate.devicetime`) wherever it becomes an event's time, and `TimeTag.now()` is now in
that zone, whatever the host's zone is.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass
from datetime import datetime, tzinfo

from firegate.devicetime import device_zone


@dataclass(frozen=True, slots=True)
class TimeTag:
    """A device time tag. `value` is None when the bytes are not a valid date (e.g. all zero):
    such tags are kept raw and flagged, never rejected (devices send them)."""

    raw: bytes
    value: datetime | None

    @classmethod
    def from_bytes(cls, raw: bytes) -> TimeTag:
        hit = _CACHE.get(raw)
        if hit is not None:
            return hit
        s, mi, h, d, mo, y = raw
        try:
            value: datetime | None = datetime(2000 + y, mo, d, h, mi, s)
        except ValueError:
            value = None
        tag = TimeTag(bytes(raw), value) if cls is TimeTag else cls(bytes(raw), value)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[tag.raw] = tag
        return tag

    @classmethod
    def from_datetime(cls, when: datetime) -> TimeTag:
        if not 2000 <= when.year <= 2255:
            raise ValueError(f"year {when.year} cannot be sent in a GB/T 26875.3 time tag")
        raw = bytes((when.second, when.minute, when.hour, when.day, when.month, when.year - 2000))
        return cls.from_bytes(raw)

    @classmethod
    def now(cls) -> TimeTag:
        # Devices and centers use the device time zone (China Standard Time in practice), no zone
        # on the wire; never the host's zone. Every answer carries one: the tag is made once per
        # wall-clock second (and zone).
        global _now_second, _now_tag, _now_zone
        second = int(_time.time())
        zone = device_zone()
        if second == _now_second and zone is _now_zone and _now_tag is not None:
            return _now_tag
        tag = cls.from_datetime(datetime.fromtimestamp(second, zone))
        _now_second, _now_tag, _now_zone = second, tag, zone
        return tag

    @property
    def valid(self) -> bool:
        return self.value is not None

    def isoformat(self) -> str | None:
        return self.value.isoformat() if self.value is not None else None

    def json_fields(self, key: str) -> dict[str, object]:
        if self.value is not None:
            return {key: self.value.isoformat()}
        return {key: None, f"{key}_valid": False, f"{key}_raw": self.raw.hex()}


# Tags repeat (every frame of one second shares one); a small cache spares a datetime per object.
_CACHE: dict[bytes, TimeTag] = {}
_CACHE_MAX = 2048
_now_second = -1  # the epoch second `_now_tag` stands for
_now_tag: TimeTag | None = None
_now_zone: tzinfo | None = None  # the zone `_now_tag` was made in
