"""A codec plugin that fails to load costs its own panels only: named with its reason, their
link down (a fault), and the gateway's other inputs run; a dialect not installed at all is a
configuration error that stops the start."""

from __future__ import annotations

import asyncio
import logging

import pytest

from firegate.bus.events import DeviceOffline
from firegate.codecs.registry import Broken, Registry
from firegate.errors import StartupError
from firegate.gateway.serial.config import Panel
from firegate.gateway.serial.lines import BrokenLine, run_lines, serial_lines
from firegate.gateway.server import GatewayOptions
from firegate.ingest.sink import MemorySink
from tests.gateway.standalone import make_gateway, running
from tests.natsserver import wait_until


def _panel(dialect: str) -> Panel:
    return Panel.model_validate({"port": "/dev/ttyS9", "dialect": dialect, "device": "panel-7"})


async def test_a_broken_plugin_takes_down_its_panel_only(caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry(broken={"acme": Broken("acme", "firegate-codec-acme 1.0", "ImportError: no crcmod")})
    sink = MemorySink()
    gw = make_gateway(GatewayOptions(host="127.0.0.1", port=0, clock_sync_on_connect=False), sink)
    (line,) = serial_lines([_panel("acme")], gw, registry)
    assert isinstance(line, BrokenLine)
    async with running(gw):
        with caplog.at_level(logging.ERROR):
            task = asyncio.create_task(run_lines([line]))
            try:
                await wait_until(lambda: any(isinstance(e, DeviceOffline) for e in sink.events), 5)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    (offline,) = [e for e in sink.events if isinstance(e, DeviceOffline)]
    assert offline.device == "panel-7"
    assert "panels.0.dialect" in caplog.text and "acme" in caplog.text and "no crcmod" in caplog.text


def test_a_dialect_not_installed_at_all_stops_the_start() -> None:
    gw = make_gateway(GatewayOptions(host="127.0.0.1", port=0))
    with pytest.raises(StartupError) as info:
        serial_lines([_panel("acme")], gw, Registry())
    assert info.value.key == "panels.0.dialect"
