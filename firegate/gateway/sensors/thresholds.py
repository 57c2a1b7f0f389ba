"""Limits on sensor values, judged in the sensor's own time (deterministic: no wall clock).

A value beyond ``low`` or ``high`` for at least ``min_duration`` seconds (the time between the
first sample beyond it and the current one) raises; a value back inside by ``hysteresis``
(at or above ``low + hysteresis``, at or below ``high - hysteresis``) clears at once. A sample
in between keeps the state, so a value hovering at the limit does not flap. A sample older than
the newest one judged (or than the stored state a restart began from) is stale: a
store-and-forward sensor re-sending its buffer must not turn a point back to what it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Limit:
    """In the quantity's base unit (see `units`)."""

    low: float | None
    high: float | None
    hysteresis: float = 0.0
    min_duration: float = 0.0

    def beyond(self, value: float) -> bool:
        return (self.low is not None and value < self.low) or (self.high is not None and value > self.high)

    def back(self, value: float) -> bool:
        return (self.low is None or value >= self.low + self.hysteresis) and (
            self.high is None or value <= self.high - self.hysteresis
        )


@dataclass(slots=True)
class _State:
    raised: bool = False
    breach_since: datetime | None = None
    latest: datetime | None = None  # the newest sample judged, or the stored state's time


class Thresholds:
    """The state of every judged point: raised or not. Feed samples oldest first."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], _State] = {}

    def known(self, key: tuple[str, str]) -> bool:
        return key in self._states

    def seed(self, key: tuple[str, str], raised: bool, since: datetime | None = None) -> None:
        """Start a point from its stored state (after a restart), before its first sample;
        ``since``: when that state began (older samples are stale)."""
        self._states.setdefault(key, _State(raised=raised, latest=since))

    def stale(self, key: tuple[str, str], when: datetime) -> bool:
        """Whether a sample at ``when`` is older than what the point's state already says."""
        state = self._states.get(key)
        return state is not None and state.latest is not None and when < state.latest

    def judge(self, key: tuple[str, str], limit: Limit, value: float, when: datetime) -> bool:
        """Whether the point is beyond its limit after this sample."""
        state = self._states.setdefault(key, _State())
        state.latest = when if state.latest is None else max(state.latest, when)
        if state.raised:
            if limit.back(value):
                state.raised, state.breach_since = False, None
        elif limit.beyond(value):
            if state.breach_since is None:
                state.breach_since = when
            if (when - state.breach_since).total_seconds() >= limit.min_duration:
                state.raised = True
        else:
            state.breach_since = None
        return state.raised
