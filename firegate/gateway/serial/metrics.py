"""Serial line metrics (docs/metrics.md, "Serial lines").

``panel`` is a line's configured device id (its port for a gb26875 line): a gateway has a few
panels, so it is a low-cardinality label, never a UITD id. Frame error reasons are the codecs'
own (`CodecError.reason`), at most ``MAX_REASONS`` of them, then ``other``.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge

FRAME_RESULTS: Final = ("stored", "stored_raw", "keepalive", "not_stored", "error")
# reasons of the line itself, next to the codecs' own (checksum, length, delimiter...)
LINE_REASONS: Final = ("overflow", "codec_bug", "other")
MAX_REASONS: Final = 32

LINK_UP: Final = Gauge("firegate_serial_link_up", "1 while a serial line's panel link is up", ["panel"])
REOPENS: Final = Counter(
    "firegate_serial_reopens_total", "Serial lines (re)opened after the port failed or vanished", ["panel"]
)
BYTES_IN: Final = Counter("firegate_serial_received_bytes_total", "Bytes read from serial lines", ["panel"])
POLLS_MISSED: Final = Counter(
    "firegate_serial_polls_missed_total", "Polls a panel did not answer within reply_timeout", ["panel"]
)
FRAMES: Final = Counter(
    "firegate_serial_frames_total",
    "Frames from panel dialect lines, by panel and result",
    ["panel", "result"],
)
FRAME_ERRORS: Final = Counter(
    "firegate_serial_frame_errors_total",
    "Bytes a panel dialect could not frame or decode (garbage, a wrong baud rate), by panel and reason",
    ["panel", "reason"],
)

# every series here has a `panel` label (configured, not declared): no pre-bound label values
LABEL_VALUES: Final[dict[str, dict[str, tuple[str, ...]]]] = {}


_reasons: set[str] = set()


class LineCounters:
    """One panel's frame counters, its children bound once."""

    def __init__(self, panel: str) -> None:
        self.panel = panel
        self.frames = {r: FRAMES.labels(panel, r) for r in FRAME_RESULTS}
        self._errors: dict[str, Counter] = {}

    def frame_error(self, reason: str) -> Counter:
        """Counts the frame as an error and returns the child of its reason: a codec's own, as
        long as codecs have said few distinct ones, then `other`."""
        self.frames["error"].inc()
        child = self._errors.get(reason)
        if child is None:
            if reason not in _reasons and len(_reasons) >= MAX_REASONS:
                reason = "other"
            _reasons.add(reason)
            child = self._errors.setdefault(reason, FRAME_ERRORS.labels(self.panel, reason))
        return child
