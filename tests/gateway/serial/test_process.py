"""`firegate run` with serial lines, as ops run it: a UITD on a pty confirmed through the whole
process, and a dialect that is not installed stopping the start with the key."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from firegate.codecs.gb26875 import Command
from tests.gateway.serial.helpers import Pty
from tests.gateway.serial.test_uitd import SerialUitd
from tests.integration.process import Firegate
from tests.integration.test_pipeline import alarm
from tests.integration.test_startup_errors import failed_start


def test_a_dialect_that_is_not_installed_stops_the_start(tmp_path: Path) -> None:
    panels = [{"port": str(tmp_path / "ttyX"), "dialect": "no-such-dialect", "device": "p1"}]
    error = failed_start(tmp_path, FIREGATE_PANELS=json.dumps(panels))
    assert error["key"] == "panels.0.dialect"
    assert "no line codec named 'no-such-dialect'" in error["msg"]


async def test_a_uitd_on_a_serial_line_through_firegate_run(tmp_path: Path) -> None:
    pty = Pty(tmp_path / "ttyUITD")
    fg = Firegate(tmp_path)
    fg.env["FIREGATE_PANELS"] = json.dumps([{"port": str(pty.path), "dialect": "gb26875", "reopen_min": 0.1}])
    try:
        await asyncio.to_thread(fg.start)
        dev = SerialUitd(pty, 4242)
        dev.pty.write(dev.uitd.frame(2, [alarm(1)]))
        confirm = await dev.next_frame(timeout=10)
        assert confirm.command == Command.CONFIRM
        metrics = await asyncio.to_thread(fg.metrics)
        assert f'firegate_serial_link_up{{panel="{pty.path}"}} 1.0' in metrics
        assert 'firegate_gateway_frames_received_total{command="send_data",protocol="serial"} 1.0' in metrics
        fg.signal(signal.SIGTERM)
        assert fg.proc is not None
        assert await asyncio.to_thread(fg.proc.wait, 20) == 0
    finally:
        fg.kill_all()
        pty.vanish()
