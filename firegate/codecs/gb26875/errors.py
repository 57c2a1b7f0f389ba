"""Typed codec errors. Each carries the offending bytes, where they start, and a metric `reason`."""

from __future__ import annotations

from dataclasses import dataclass

from firegate.codecs.errors import CodecError
from firegate.errors import FiregateError


@dataclass(frozen=True, slots=True)
class HeaderInfo:
    """What could be read of a rejected frame's control unit: enough to address a deny (cmd 6)."""

    serial: int
    version: tuple[int, int]
    source_raw: bytes
    destination_raw: bytes
    length: int
    command: int

    @property
    def source(self) -> int:
        return int.from_bytes(self.source_raw, "little")


class FrameError(CodecError):
    """A frame that cannot be accepted. `reason` is the metric label."""

    reason = "frame"

    def __init__(
        self, message: str, *, data: bytes = b"", offset: int = 0, header: HeaderInfo | None = None
    ) -> None:
        super().__init__(message, data=data)
        self.offset = offset
        self.header = header

    @property
    def serial(self) -> int | None:
        return self.header.serial if self.header else None

    @property
    def source(self) -> int | None:
        return self.header.source if self.header else None

    @property
    def deniable(self) -> bool:
        """The standard's check errors (§6.5.3) are answered with a deny when the header is
        readable, except on a confirm, reply or deny: those the initiator times out on and resends."""
        return self.header is not None and self.header.command not in (3, 5, 6)


class ChecksumError(FrameError):
    reason = "checksum"

    def __init__(
        self,
        message: str,
        *,
        expected: int,
        actual: int,
        data: bytes = b"",
        offset: int = 0,
        header: HeaderInfo | None = None,
    ) -> None:
        super().__init__(message, data=data, offset=offset, header=header)
        self.expected = expected
        self.actual = actual


class LengthError(FrameError):
    reason = "length"


class DelimiterError(FrameError):
    reason = "delimiter"


class CommandError(FrameError):
    reason = "command"


class DataUnitError(FrameError):
    """The data unit does not match its type's layout. Not a check error: the frame itself is sound."""

    reason = "data_unit"

    @property
    def deniable(self) -> bool:
        return False


class EncodeError(FiregateError, ValueError):
    """A value that cannot be encoded (text too long for its field, a field out of range)."""

    reason = "encode"

    def __init__(self, message: str, *, value: object) -> None:
        super().__init__(message)
        self.value = value
