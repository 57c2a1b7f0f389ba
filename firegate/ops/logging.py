"""Structured logs: one JSON object per line on stdout (or plain text for a terminal).

Fields passed with ``extra=`` (``log.info("confirmed", extra={"device": "74565",
"serial": 7})``) become top-level keys, so a log pipeline can filter by device
without parsing messages. A field set to None (a session's device before its
first frame) is left out. ``FieldsAdapter`` adds a component's fixed fields
(a session's ``device`` and ``peer``) to each of its lines.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any, Literal, TextIO

# Attributes every LogRecord has; anything else on a record came from extra=.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _STANDARD and not k.startswith("_") and v is not None
    }


class FieldsAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds fixed fields to every record. ``fields`` is kept, not copied: its owner updates it
    (a session learns its device from its first frame). A call's own ``extra=`` is merged over
    them, where the stdlib adapter (before 3.13) would drop it."""

    def __init__(self, logger: logging.Logger, fields: dict[str, object]) -> None:
        super().__init__(logger, fields)
        self.fields = fields

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**self.fields, **(kwargs.get("extra") or {})}
        return msg, kwargs


def _jsonable(value: object) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()  # raw frames read best as hex
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _timestamp(record: logging.LogRecord) -> str:
    # local time with its offset: unambiguous, and what the center's staff read (+08:00)
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)  # an extra never overwrites the fixed fields
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=_jsonable)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = " ".join(
            f"{k}={_jsonable(v) if isinstance(v, bytes) else v}" for k, v in _extras(record).items()
        )
        if not extras:
            return text
        head, nl, rest = text.partition("\n")  # keep extras on the message line, before a traceback
        return f"{head} {extras}{nl}{rest}"


class _FiregateHandler(logging.StreamHandler[TextIO]):
    """Marks the handler setup_logging installed, so a second call replaces it."""


def setup_logging(
    level: str | int = "INFO", fmt: Literal["json", "text"] = "json", stream: TextIO | None = None
) -> None:
    """Send every logger's records to ``stream`` (stdout) as JSON lines or text. Idempotent."""
    if isinstance(level, str):
        names = logging.getLevelNamesMapping()
        if level.upper() not in names:
            raise ValueError(f"unknown log level {level!r}")
        level = names[level.upper()]
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}: use json or text")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _FiregateHandler)]:
        root.removeHandler(old)
        old.close()
    handler = _FiregateHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)


class Throttle:
    """Aggregates a kind of line that load can repeat thousands of times (a NATS failover, a
    storm): the first of each kind is logged, later ones within ``every`` seconds are counted, and
    the next line of that kind after the window says how many were left out."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger], every: float = 10.0):
        self.logger = logger
        self.every = every
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (when last logged, left out since)

    def log(self, kind: str, level: int, msg: str, *args: object, **kwargs: Any) -> bool:
        """Log or count one line; True if it was logged."""
        now = time.monotonic()
        last, left_out = self._kinds.get(kind, (-self.every, 0))
        if now - last < self.every:
            self._kinds[kind] = (last, left_out + 1)
            return False
        if left_out:
            msg = f"{msg} (and {left_out} more like it in the last {now - last:.0f} s)"
        self._kinds[kind] = (now, 0)
        self.logger.log(level, msg, *args, **kwargs)
        return True

    def left_out(self, kind: str) -> int:
        return self._kinds.get(kind, (0.0, 0))[1]
