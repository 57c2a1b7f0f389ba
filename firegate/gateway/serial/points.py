"""A line's point table: panel addresses (controller/loop/point) to the standard's system and
component addresses, from the config's `points` or its `points_file` CSV; unlisted points fall
back to `DefaultPoints` (controller -> system address, loop and point -> component address)."""

from __future__ import annotations

from collections.abc import Iterable

from firegate.codecs.api import DefaultPoints, PanelAddress, PointRef
from firegate.gateway.serial.config import Panel, PointEntry, read_points_file


class PanelPoints:
    def __init__(self, entries: Iterable[PointEntry], fallback: DefaultPoints | None = None) -> None:
        self.fallback = fallback or DefaultPoints()
        self.table = {
            PanelAddress(e.controller, e.loop, e.point): PointRef(
                system_type=e.system_type,
                system_address=e.system_address if e.system_address is not None else e.controller & 0xFF,
                component_type=e.component_type,
                component_address=e.component_address,
                description=e.description,
            )
            for e in entries
        }

    def lookup(self, address: PanelAddress) -> PointRef:
        ref = self.table.get(address)
        return ref if ref is not None else self.fallback.lookup(address)

    def __len__(self) -> int:
        return len(self.table)


def points_of(panel: Panel) -> PanelPoints:
    """The panel's table (its file read again at start: config validation read it once)."""
    entries = read_points_file(panel.points_file) if panel.points_file is not None else panel.points
    return PanelPoints(entries)
