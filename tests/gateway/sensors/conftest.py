"""A sensor source against a private Mosquitto, with its own ingest, as `firegate run` wires them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from firegate.bus.events import Envelope
from firegate.bus.jetstream import tls_context
from firegate.bus.kvmemory import MemoryStatusMemory, StatusMemory
from firegate.config import SensorSource as SourceConfig
from firegate.config import SensorThreshold
from firegate.gateway.sensors.seen import SeenStore
from firegate.gateway.sensors.source import SensorSites, SensorSource
from firegate.ingest import Ingest
from firegate.ingest.normalize import Normalizer
from firegate.ingest.sink import MemorySink
from tests.mqttbroker import MosquittoBroker, running_mosquitto
from tests.natsserver import wait_until


class KeepAllSink(MemorySink):
    """A store whose duplicate window has passed: every event is kept, ids repeated or not."""

    async def publish(self, events: Sequence[Envelope], *, fire: bool) -> None:
        if self.fail:
            raise ConnectionError("sink told to fail")
        self.events.extend(events)


@dataclass
class Running:
    source: SensorSource
    sink: MemorySink
    memory: StatusMemory

    def of(self, kind: str) -> list[Envelope]:
        return [e for e in self.sink.events if e.type == kind]

    async def wait_for(self, kind: str, n: int = 1, within: float = 5.0) -> list[Envelope]:
        await wait_until(lambda: len(self.of(kind)) >= n, within)
        return self.of(kind)


def config(broker: MosquittoBroker, **fields: Any) -> SourceConfig:
    values: dict[str, Any] = {
        "name": "test",
        "url": broker.url,
        "topics": ["sensors/#"],
        "codec": "meokon",
        "timeout": 2,
        "backoff_initial": 0.1,
        "backoff_max": 0.5,
    }
    values.update(fields)
    return SourceConfig.model_validate(values)


@contextlib.asynccontextmanager
async def running(
    cfg: SourceConfig,
    *,
    sink: MemorySink | None = None,
    memory: StatusMemory | None = None,
    thresholds: dict[str, SensorThreshold] | None = None,
    wait_connected: bool = True,
    seen: SeenStore | None = None,
) -> AsyncIterator[Running]:
    """A source and its ingest running for the block; cancelled after it (a stop, or a crash:
    nothing is acknowledged that was not stored)."""
    sink = sink if sink is not None else MemorySink()
    memory = memory or MemoryStatusMemory()
    sites = SensorSites(lambda device: device)
    ingest = Ingest(sink, Normalizer(memory, site_of=sites.site_of))
    tls = tls_context(cfg.tls_ca, cfg.tls_cert, cfg.tls_key)  # as `firegate run` makes it
    source = SensorSource(cfg, ingest, thresholds=thresholds, sites=sites, tls_context=tls, seen=seen)
    tasks = [asyncio.create_task(ingest.run()), asyncio.create_task(source.run())]
    try:
        if wait_connected:
            await asyncio.wait_for(source.connected.wait(), 5)
        yield Running(source, sink, memory)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def publish(broker: MosquittoBroker, topic: str, *payloads: bytes | str) -> None:
    """QoS 1, each PUBACKed by the broker before this returns."""
    async with aiomqtt.Client(broker.host, broker.port, timeout=5) as client:
        for payload in payloads:
            await client.publish(topic, payload, qos=1)


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[MosquittoBroker]:
    async with running_mosquitto(tmp_path / "mqtt") as b:
        yield b
