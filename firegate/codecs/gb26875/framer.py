"""A sans-I/O stream framer: feed bytes in any chunks, get frames and typed errors back.

Framing is length-driven (spec §1), never cut at the first '##': '@@', '##' and 0x23 occur
inside valid frames. A failed candidate drops one byte and the search goes on at the next '@@'.
The buffer never holds more than one maximal frame: a length over 1024 is refused as soon as
the header is readable.
"""

from __future__ import annotations

from firegate.codecs.gb26875.errors import FrameError
from firegate.codecs.gb26875.frame import (
    END,
    HEADER_SIZE,
    MAX_DATA,
    OVERHEAD,
    START,
    Frame,
    checksum,
    frame_from_bytes,
    sound,
    validate,
)

Item = Frame | FrameError


class Framer:
    """Splits a byte stream into frames. Errors are returned, not raised, in stream order.

    Only the first failure inside one claimed frame span is reported, so a damaged frame
    yields one error (one deny), not one per '@@' inside it.
    """

    __slots__ = ("_buf", "_quiet_until", "errors", "frames", "skipped_bytes")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._quiet_until = 0  # buffer offset before which failures are not reported again
        self.frames = 0
        self.errors = 0
        self.skipped_bytes = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Item]:
        buf = self._buf
        buf += data
        out: list[Item] = []
        pos = framed = 0
        size = len(buf)
        while True:
            at = buf.find(START, pos)
            if at < 0:
                # keep a trailing '@': it may be the first half of the next start
                pos = size - 1 if size and buf[-1] == 0x40 else size
                break
            if size - at < HEADER_SIZE:
                pos = at
                break
            length = buf[at + 24] | buf[at + 25] << 8
            total = OVERHEAD + length
            if length <= MAX_DATA and size - at < total:
                if not self._valid_frame_within(at + 1, size):
                    pos = at
                    break
                # a complete, valid frame starts inside this candidate's claimed span: the
                # candidate was noise; skip it rather than stall the device until its span fills
                pos = at + 1
                continue
            error = None if sound(buf, at, length) else validate(buf, at)
            if error is not None:
                if buf[at + 2] == 0x40 and self._frame_at(at + 1, size):
                    # '@@@': a stray '@' before a real frame; this misaligned candidate is noise
                    pos = at + 1
                    continue
                # a bad length claims no span; a sound length claims its whole frame
                self._fail(out, error, at, at + total if length <= MAX_DATA else at + 2)
                pos = at + 1
                continue
            self.frames += 1
            out.append(frame_from_bytes(bytes(buf[at : at + total])))
            framed += total
            pos = at + total
        if pos:
            self.skipped_bytes += pos - framed
            del buf[:pos]
            self._quiet_until = max(0, self._quiet_until - pos)
        return out

    def _fail(self, out: list[Item], error: FrameError, at: int, span_end: int) -> None:
        self.errors += 1
        if at >= self._quiet_until:
            out.append(error)
        self._quiet_until = max(self._quiet_until, span_end)

    def _frame_at(self, at: int, size: int) -> bool | None:
        """Whether a sound frame starts at `at`; None while too few bytes are buffered to tell."""
        buf = self._buf
        if buf[at : at + 2] != START:
            return False
        if size - at < HEADER_SIZE:
            return None
        length = buf[at + 24] | buf[at + 25] << 8
        if length > MAX_DATA:
            return False
        end = at + OVERHEAD + length
        if end > size:
            return None
        return buf[end - 2 : end] == END and checksum(memoryview(buf)[at + 2 : end - 3]) == buf[end - 3]

    def _valid_frame_within(self, start: int, size: int) -> bool:
        at = self._buf.find(START, start)
        while at >= 0:
            if self._frame_at(at, size):
                return True
            at = self._buf.find(START, at + 1)
        return False
