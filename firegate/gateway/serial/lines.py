"""Starting the configured serial lines under the gateway role (called from app.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from firegate.codecs.registry import Registry, discover
from firegate.errors import StartupError
from firegate.forwarders.supervise import restarting
from firegate.gateway.serial.config import Panel
from firegate.gateway.serial.dialects import line_codecs
from firegate.gateway.serial.line import PanelLine
from firegate.gateway.serial.points import points_of
from firegate.gateway.serial.port import SerialLine
from firegate.gateway.serial.uitd import UitdLine
from firegate.gateway.server import Gateway

log = logging.getLogger("firegate.gateway.serial")


def serial_lines(
    panels: Sequence[Panel], gateway: Gateway, registry: Registry | None = None
) -> list[SerialLine]:
    """One runner per configured line; raises StartupError naming ``panels.N.<key>`` for a
    dialect that is not installed or cannot work as configured."""
    lines: list[SerialLine] = []
    if panels and registry is None:
        registry = discover()
    for i, codec, problem in line_codecs(panels, registry or Registry()):
        if problem is not None:
            raise StartupError(problem.key, problem.value, problem.reason)
        panel, key = panels[i], f"panels.{i}"
        if codec is None:
            lines.append(UitdLine(panel, key, gateway))
            continue
        try:
            points = points_of(panel)
        except (OSError, ValueError) as e:  # the file changed since the configuration was read
            raise StartupError(f"{key}.points_file", str(panel.points_file), str(e)) from e
        lines.append(PanelLine(panel, key, codec, gateway.ingest, site_of=gateway.site_of, points=points))
    return lines


async def run_lines(lines: Sequence[SerialLine]) -> None:
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
