"""The root of every codec error: bytes a codec cannot take, with the metric label why."""

from __future__ import annotations

from firegate.errors import FiregateError


class CodecError(FiregateError, ValueError):
    """Bytes a codec cannot take. ``reason`` is the metric label (checksum, length, delimiter,
    unknown_event, encoding...); ``data`` the offending bytes."""

    reason = "frame"

    def __init__(self, message: str, *, reason: str | None = None, data: bytes = b"") -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.data = data
