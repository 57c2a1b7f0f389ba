from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from firegate.gateway.server import Gateway, GatewayOptions
from tests.gateway.standalone import make_gateway, running


def quick_options(**changes: object) -> GatewayOptions:
    """A loopback gateway on a free port that does not sync clocks unless told to."""
    return GatewayOptions(host="127.0.0.1", port=0, clock_sync_on_connect=False, **changes)  # type: ignore[arg-type]


@pytest.fixture
def options() -> GatewayOptions:
    return GatewayOptions(
        host="127.0.0.1",
        port=0,
        clock_sync_on_connect=False,
        confirm_timeout=1.0,
        retries=1,
        idle_timeout=60,
        first_frame_timeout=30,
        sweep_interval=0.1,
    )


@pytest.fixture
async def gateway(options: GatewayOptions) -> AsyncIterator[Gateway]:
    async with running(make_gateway(options)) as gw:
        yield gw
