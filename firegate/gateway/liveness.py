"""Which devices are alive. Offline after `idle_timeout` without a frame (GB 26875.1's 100 s
link-fault rule); the return publishes an online event with the outage's length."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from firegate.bus.events import DeviceOffline, DeviceOnline


@dataclass(slots=True)
class DeviceState:
    last_seen: float  # monotonic
    last_seen_at: datetime
    online: bool
    offline_since: float | None = None


class DeviceTracker:
    def __init__(self, idle_timeout: float, forget_after: float = 7 * 86400.0) -> None:
        self.idle_timeout = idle_timeout
        self.forget_after = forget_after  # offline this long: forgotten (its return is a first online)
        self.devices: dict[str, DeviceState] = {}

    @property
    def online(self) -> int:
        return sum(1 for d in self.devices.values() if d.online)

    def online_event(self, device: str, site: str, peer: str | None) -> DeviceOnline | None:
        """The event a frame from `device` causes (None while it is online). Changes nothing:
        call seen() once the event is stored, so a failed publish loses no online event."""
        state = self.devices.get(device)
        if state is not None and state.online:
            return None
        now = time.monotonic()
        wall = datetime.now(UTC)
        outage = None if state is None or state.offline_since is None else now - state.offline_since
        stamp = int(wall.timestamp() * 1000)
        return DeviceOnline(
            id=f"{device}.online.{stamp}",
            device=device,
            site=site,
            occurred_at=None,
            received_at=wall,
            peer=peer,
            outage_s=round(outage, 3) if outage is not None else None,
        )

    def seen(self, device: str) -> None:
        now = time.monotonic()
        wall = datetime.now(UTC)
        state = self.devices.get(device)
        if state is None:
            self.devices[device] = DeviceState(now, wall, True)
        else:
            state.last_seen, state.last_seen_at, state.online, state.offline_since = now, wall, True, None

    def restore(self, device: str, last_seen_at: datetime, online: bool) -> None:
        """A device as a previous process left it (its last sign of life, and whether its offline
        event was stored already), so that one silent since then still goes offline."""
        if device in self.devices:
            return  # heard from in this process already: that is newer
        age = max(0.0, (datetime.now(UTC) - last_seen_at).total_seconds())
        last_seen = time.monotonic() - age
        self.devices[device] = DeviceState(last_seen, last_seen_at, online, None if online else last_seen)

    def is_online(self, device: str) -> bool:
        state = self.devices.get(device)
        return state is not None and state.online

    def forget(self, device: str) -> None:
        """Another gateway serves the device now: its link state is no longer ours to report."""
        self.devices.pop(device, None)

    def unsweep(self, events: list[DeviceOffline]) -> None:
        """Offline events that could not be stored: back to online, so the next sweep retries."""
        for event in events:
            state = self.devices.get(event.device)
            if state is not None and not state.online:
                state.online, state.offline_since = True, None

    def sweep(self, site_of: Callable[[str], str]) -> list[DeviceOffline]:
        now = time.monotonic()
        wall = datetime.now(UTC)
        events: list[DeviceOffline] = []
        stale = [d for d, s in self.devices.items() if not s.online and now - s.last_seen > self.forget_after]
        for device in stale:  # addresses that came once and never again must not pile up
            del self.devices[device]
        for device, state in self.devices.items():
            silent = now - state.last_seen
            if state.online and silent > self.idle_timeout:
                state.online = False
                state.offline_since = state.last_seen
                site = site_of(device)
                events.append(
                    DeviceOffline(
                        id=f"{device}.offline.{int(state.last_seen_at.timestamp() * 1000)}",
                        device=device,
                        site=site,
                        occurred_at=None,
                        received_at=wall,
                        last_seen=state.last_seen_at,
                        silent_s=round(silent, 3),
                    )
                )
        return events
