"""Long-running parts of a service that must outlive their own failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from firegate.aio import stop_if_cancelled

log = logging.getLogger(__name__)


async def restarting(
    what: str, part: Callable[[], Awaitable[None]], on_error: Callable[[], None] | None = None
) -> None:
    """Run ``part`` until cancelled, restarting it a second after it fails: a NATS outage or a bug
    in one part (a consumer, an API, a ticker) must not stop the others or the process."""
    while True:
        stop_if_cancelled()
        try:
            await part()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if on_error is not None:
                on_error()
            log.warning("%s failed, restarting in 1 s: %r", what, e)
        await asyncio.sleep(1.0)
