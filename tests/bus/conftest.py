from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext

from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.bus.server import EmbeddedNatsServer
from firegate.bus.spool import Spool
from tests.natsserver import nats_client, running_nats_server


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNatsServer]:
    async with running_nats_server(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def nc(nats_server: EmbeddedNatsServer) -> AsyncIterator[NATS]:
    async with nats_client(nats_server.url) as client:
        yield client


@pytest.fixture
async def js(nc: NATS) -> JetStreamContext:
    """JetStream with stream FIRE in place."""
    ctx = nc.jetstream(timeout=5.0)
    await ensure_stream(ctx, StreamSettings())
    return ctx


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[Spool]:
    async with Spool(tmp_path / "spool") as s:
        yield s
