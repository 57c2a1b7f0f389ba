"""SIGTERM under a load balancer: /readyz says `draining` for gb26875.drain_grace while the
gateway still confirms frames, then the drain, then a clean exit."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from firegate.codecs.gb26875 import Command
from tests.gateway.client import Uitd
from tests.integration.process import Firegate


def readyz(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def test_readiness_says_draining_while_the_gateway_still_serves(tmp_path: Path) -> None:
    fg = Firegate(tmp_path)
    fg.env["FIREGATE_GB26875__DRAIN_GRACE"] = "1.5"
    try:
        fg.start()
        assert fg.proc is not None
        dev = await Uitd(4242).connect(fg.gb)
        assert (await dev.exchange(dev.frame())).command == Command.CONFIRM
        signalled = time.monotonic()
        fg.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        status, body = await asyncio.to_thread(readyz, fg.http)
        assert status == 503
        checks = body["checks"]
        assert isinstance(checks, dict) and checks["gb26875_listener"]["detail"] == "draining"
        assert (await dev.exchange(dev.frame())).command == Command.CONFIRM  # still served
        code = await asyncio.to_thread(fg.proc.wait, 20)
        assert code == 0 and time.monotonic() - signalled >= 1.5
        await dev.close()
    finally:
        fg.kill_all()
    log = (tmp_path / "firegate.log").read_text()
    assert "draining in 1.5 s" in log and "stopped in" in log
