"""Starting the configured serial lines under the gateway role (called from app.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from firegate.codecs.registry import Registry, discover
from firegate.errors import StartupError
from firegate.forwarders.supervise import restarting
from firegate.gateway.liveness import DeviceTracker
from firegate.gateway.serial import metrics
from firegate.gateway.serial.config import Panel
from firegate.gateway.serial.dialects import BROKEN, line_codecs
from firegate.gateway.serial.line import PanelLine
from firegate.gateway.serial.points import points_of
from firegate.gateway.serial.uitd import UitdLine
from firegate.gateway.server import Gateway
from firegate.ingest import Ingest
from firegate.ops.logging import FieldsAdapter, Throttle

log = logging.getLogger("firegate.gateway.serial")


def serial_lines(panels: Sequence[Panel], gateway: Gateway, registry: Registry | None = None) -> list[Line]:
    """One runner per configured line; raises StartupError naming ``panels.N.<key>`` for a
    dialect that is not installed or cannot work as configured."""
    lines: list[Line] = []
    if panels and registry is None:
        registry = discover()
    for i, codec, problem in line_codecs(panels, registry or Registry()):
        panel, key = panels[i], f"panels.{i}"
        if problem is not None and problem.where == BROKEN and panel.device is not None:
            # a plugin that fails to load costs its own panels, never the other inputs
            lines.append(BrokenLine(panel, key, problem.reason, gateway.ingest, gateway.site_of))
            continue
        if problem is not None:
            raise StartupError(problem.key, problem.value, problem.reason)
        if codec is None:
            lines.append(UitdLine(panel, key, gateway))
            continue
        try:
            points = points_of(panel)
        except (OSError, ValueError) as e:  # the file changed since the configuration was read
            raise StartupError(f"{key}.points_file", str(panel.points_file), str(e)) from e
        lines.append(PanelLine(panel, key, codec, gateway.ingest, site_of=gateway.site_of, points=points))
    return lines


class Line(Protocol):
    """What `run_lines` runs: a line that is read, or one that cannot be."""

    name: str
    panel: Panel

    async def run(self) -> None: ...


class BrokenLine:
    """A panel whose dialect's plugin does not load: its port is never opened, its link is down
    (one offline event, a fault the operators see) and the reason is logged, while every other
    input runs."""

    def __init__(
        self, panel: Panel, key: str, reason: str, ingest: Ingest, site_of: Callable[[str], str]
    ) -> None:
        assert panel.device is not None
        self.panel = panel
        self.key = key
        self.name = panel.name
        self.device = panel.device
        self.reason = reason
        self.ingest = ingest
        self.site = panel.site or site_of(panel.device)
        metrics.LINK_UP.labels(self.name).set(0)
        self.log = FieldsAdapter(log, {"panel": self.name})
        self.throttle = Throttle(self.log, every=60.0)

    async def run(self) -> None:
        self.log.error(
            "%s.dialect: the codec plugin %r does not load, this panel is not read: %s",
            self.key,
            self.panel.dialect,
            self.reason,
        )
        tracker = DeviceTracker(idle_timeout=-1.0)
        tracker.seen(self.device)
        offline = tracker.sweep(lambda _device: self.site)
        while True:
            try:
                await self.ingest.store(offline)
                break
            except Exception as e:
                self.throttle.log("link_not_stored", logging.WARNING, "panel link event not stored: %s", e)
                await asyncio.sleep(1.0)
        await asyncio.Event().wait()  # until cancelled: nothing to read


async def run_lines(lines: Sequence[Line]) -> None:
    """Every line until cancelled; each reopens its own port on its own."""
    if not lines:
        return
    log.info("serial lines: %s", ", ".join(f"{line.name} ({line.panel.dialect})" for line in lines))
    async with asyncio.TaskGroup() as tg:
        for line in lines:
            # a bug met on one line costs that line a second, never the others or the gateway
            tg.create_task(restarting(f"serial line {line.name}", line.run), name=f"serial line {line.name}")


class PanelSites:
    """``site_of`` with each panel's configured `site` for its device id."""

    def __init__(self, panels: Sequence[Panel], site_of: Callable[[str], str]) -> None:
        self.sites = {p.device: p.site for p in panels if p.device is not None and p.site is not None}
        self.fallback = site_of

    def site_of(self, device: str) -> str:
        return self.sites.get(device) or self.fallback(device)
