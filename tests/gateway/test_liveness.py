"""Device liveness bookkeeping."""

from __future__ import annotations

import time

from firegate.gateway.liveness import DeviceTracker


def test_offline_then_forgotten() -> None:
    tracker = DeviceTracker(idle_timeout=0.01, forget_after=0.05)
    assert tracker.online_event("1", "1", None) is not None  # first sight
    tracker.seen("1")
    assert tracker.online_event("1", "1", None) is None
    time.sleep(0.02)
    (offline,) = tracker.sweep(lambda d: d)
    assert offline.device == "1" and tracker.devices["1"].online is False
    tracker.unsweep([offline])  # its publish failed: the next sweep tries again
    assert len(tracker.sweep(lambda d: d)) == 1
    time.sleep(0.06)
    tracker.sweep(lambda d: d)
    assert "1" not in tracker.devices
