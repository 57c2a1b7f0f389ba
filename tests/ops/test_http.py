from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client import REGISTRY

from firegate.ops.http import HealthServer
from firegate.ops.metrics import EVENT_LOOP_LAG, watch_event_loop_lag


async def get(server: HealthServer, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}{path}") as r:
        return r.status, await r.text()


async def test_endpoints() -> None:
    nats_up = False

    def nats() -> tuple[bool, str]:
        return nats_up, "connected" if nats_up else "disconnected"

    async with HealthServer("127.0.0.1", 0) as server:
        assert server.port > 0
        assert (await get(server, "/healthz"))[0] == 200

        server.add_check("nats", nats)
        server.add_check("listeners", lambda: True)
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.port}/readyz") as r:
            assert r.status == 503
            body = await r.json()
        assert body["failing"] == ["nats"]
        assert body["checks"]["nats"] == {"ok": False, "detail": "disconnected"}
        assert body["checks"]["listeners"]["ok"] is True

        nats_up = True
        assert (await get(server, "/readyz"))[0] == 200

        status, text = await get(server, "/metrics")
        assert status == 200
        assert "# TYPE firegate_build_info gauge" in text
        assert 'firegate_build_info{version="' in text


async def test_async_raising_and_slow_checks() -> None:
    async def slow() -> bool:
        await asyncio.sleep(10)
        return True

    async def fine() -> tuple[bool, str]:
        return True, "spool 0 bytes"

    def broken() -> bool:
        raise RuntimeError("boom")

    async with HealthServer("127.0.0.1", 0, check_timeout=0.1) as server:
        server.add_check("fine", fine)
        assert (await get(server, "/readyz"))[0] == 200
        server.add_check("slow", slow)
        server.add_check("broken", broken)
        ready, checks = await server.readiness()
        assert not ready
        assert checks["fine"] == {"ok": True, "detail": "spool 0 bytes"}
        assert checks["broken"] == {"ok": False, "detail": "RuntimeError: boom"}
        assert checks["slow"]["ok"] is False and "no answer" in checks["slow"]["detail"]
        server.remove_check("slow")
        server.remove_check("broken")
        assert (await server.readiness())[0]


async def test_stop_closes_the_port() -> None:
    server = HealthServer("127.0.0.1", 0)
    await server.start()
    port = server.port
    with pytest.raises(RuntimeError):
        await server.start()
    await server.stop()
    await server.stop()  # idempotent
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_port_in_use_is_an_error() -> None:
    async with HealthServer("127.0.0.1", 0) as first:
        with pytest.raises(OSError):
            await HealthServer("127.0.0.1", first.port).start()


async def test_event_loop_lag_is_measured() -> None:
    EVENT_LOOP_LAG.set(-1)
    task = asyncio.create_task(watch_event_loop_lag(interval=0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    lag = REGISTRY.get_sample_value("firegate_event_loop_lag_seconds")
    assert lag is not None and 0 <= lag < 1
