"""A gateway with its own ingest, as `firegate run` wires them, for tests that drive one alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from firegate.bus.kvmemory import MemoryStatusMemory, StatusMemory
from firegate.gateway.server import Gateway, GatewayOptions
from firegate.ingest import Ingest, IngestSettings
from firegate.ingest.normalize import Normalizer
from firegate.ingest.sink import EventSink, MemorySink


def make_gateway(
    options: GatewayOptions,
    sink: EventSink | None = None,
    *,
    memory: StatusMemory | None = None,
    site_of: Callable[[str], str] | None = None,
    settings: IngestSettings | None = None,
) -> Gateway:
    normalizer = Normalizer(memory or MemoryStatusMemory(), site_of=site_of)
    return Gateway(options, Ingest(sink or MemorySink(), normalizer, settings), site_of=site_of)


async def serve(gw: Gateway) -> None:
    """``gw.serve()`` with its ingest running until the gateway has drained."""
    async with asyncio.TaskGroup() as tg:
        ingesting = tg.create_task(gw.ingest.run())
        try:
            await gw.serve()
        finally:
            ingesting.cancel()


@contextlib.asynccontextmanager
async def running(gw: Gateway) -> AsyncIterator[Gateway]:
    """The gateway serving (its listener bound) for the block; stopped and drained after it."""
    task = asyncio.create_task(serve(gw))
    await asyncio.wait_for(gw.ready.wait(), 5)
    try:
        yield gw
    finally:
        gw.stop()
        await asyncio.wait_for(task, 10)
