"""Private nats-servers for tests.

Each server runs on a free loopback port chosen by nats-server itself (never
4222, a machine's own NATS, nor 4223, firegate's default), with its data in
the given temporary directory, and is always stopped afterwards:

    from tests.natsserver import nats_client, running_nats_server

    async def test_something(tmp_path):
        async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as nc:
            ...

``server.kill()`` then ``await server.start()`` simulates a crash and a
restart on the same port with the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.client import Client as NATS

from firegate.bus.jetstream import connect
from firegate.bus.server import EmbeddedNatsServer
from tests.ports import RESERVED_PORTS


@contextlib.asynccontextmanager
async def running_nats_server(
    store_dir: str | os.PathLike[str], **kwargs: Any
) -> AsyncIterator[EmbeddedNatsServer]:
    """A started private nats-server with JetStream; stopped (SIGKILL at worst) on exit."""
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "max_mem": 64 * 1024**2,
        "max_file": 1024**3,
        "start_timeout": 10.0,
        "stop_timeout": 5.0,
    }
    options.update(kwargs)
    server = EmbeddedNatsServer(store_dir, **options)
    await server.start()
    try:
        assert server.port not in RESERVED_PORTS, f"test server landed on reserved port {server.port}"
        yield server
    finally:
        await server.stop()


@contextlib.asynccontextmanager
async def nats_client(url: str, name: str = "firegate-test", **kwargs: Any) -> AsyncIterator[NATS]:
    """A connected client that reconnects fast (0.1 s), closed on exit."""
    options: dict[str, Any] = {"connect_timeout": 5.0, "reconnect_time_wait": 0.1}
    options.update(kwargs)
    nc = await connect([url], name, **options)
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await nc.close()


async def wait_until(predicate: Any, within: float = 10.0, interval: float = 0.02) -> None:
    """Poll a (sync or async) predicate until true; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)
