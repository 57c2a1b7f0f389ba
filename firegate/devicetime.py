"""The device time zone: the zone GB/T 26875.3 time tags are read in, and written in.

A time tag carries no zone (spec §5). firegate reads every tag in one configured zone
(``gb26875.device_timezone``, default Asia/Shanghai, whatever the host's own zone is) and writes
every time with an explicit offset. The center's "now" that device times are compared with (clock
skew, device-to-bus latency) and that it sends to devices (clock sync, the time tags of its own
frames) is now in that zone too, never the host's local time: a center on a UTC host would
otherwise set every device's clock 8 hours back.

The zone is process-wide: `firegate run` sets it from its configuration at start
(`set_device_zone`); a process that reads no configuration (`firegate sim`) takes it from
``FIREGATE_GB26875__DEVICE_TIMEZONE``, else the default.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_ZONE = "Asia/Shanghai"
ENV_VAR = "FIREGATE_GB26875__DEVICE_TIMEZONE"
_OFFSET = re.compile(r"(?:UTC)?([+-])(\d{1,2})(?::?(\d{2}))?")
# China Standard Time has had no daylight saving since 1991: exact without a tz database
_SHANGHAI_FIXED = timezone(timedelta(hours=8), DEFAULT_ZONE)


def zone_named(name: str) -> tzinfo:
    """An IANA zone name (``Asia/Shanghai``) or a fixed offset (``+08:00``, ``UTC+8``, ``UTC``).
    ValueError, saying why, for anything else."""
    text = name.strip()
    if text.upper() in ("UTC", "Z"):
        return UTC
    fixed = _OFFSET.fullmatch(text)
    if fixed:
        sign, hours, minutes = fixed.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta >= timedelta(hours=24):
            raise ValueError(f"offset {text!r} is out of range")
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        if text == DEFAULT_ZONE:
            return _SHANGHAI_FIXED  # no tz database on this host (a slim image): the same offset
        raise ValueError(
            f"unknown time zone {text!r}: use an IANA name such as Asia/Shanghai, or an offset such as +08:00"
        ) from None


def _initial() -> tzinfo:
    try:
        return zone_named(os.environ.get(ENV_VAR) or DEFAULT_ZONE)
    except ValueError:
        return zone_named(DEFAULT_ZONE)  # `firegate run` reports the bad value; others keep the default


_zone: tzinfo = _initial()


def set_device_zone(zone: tzinfo | str) -> None:
    """Make ``zone`` the process's device time zone (at start, before any device is served)."""
    global _zone
    _zone = zone_named(zone) if isinstance(zone, str) else zone


def device_zone() -> tzinfo:
    return _zone


def device_now() -> datetime:
    """Now, in the device time zone (aware)."""
    return datetime.now(_zone)


def device_time(value: datetime | None) -> datetime | None:
    """A device's time as firegate writes it: a naive time tag read in the device time zone; an
    aware time unchanged."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=_zone)


def device_local(value: datetime) -> datetime:
    """A time to write into a time tag (which carries no zone): an aware time converted to the
    device time zone, a naive one taken as already in it."""
    return value if value.tzinfo is None else value.astimezone(_zone).replace(tzinfo=None)


def as_utc(value: datetime) -> datetime:
    """A time firegate took itself (always UTC): a naive one is UTC, never the host's zone."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
