"""asyncio helpers for cancellation that a library swallowed.

Python 3.11's ``asyncio.wait_for`` can drop a cancellation that arrives as its inner future
completes, and nats-py turns some into its own errors (a stalled publish becomes
``TooManyStalledMsgsError``). A loop that catches ``Exception`` and goes round again would then
never stop. ``Task.cancelling()`` still counts the request, so long-running loops check it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable


def cancel_requested() -> bool:
    """Was the current task asked to stop, even if the CancelledError never reached us?"""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled() -> None:
    """Raise CancelledError when a cancellation of this task was swallowed on the way."""
    if cancel_requested():
        raise asyncio.CancelledError


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[object]], log: logging.Logger, every: float = 1.0
) -> None:
    """Cancel ``tasks`` and wait until all have ended, cancelling again those that went on
    (a swallowed cancellation), each named in a warning."""
    pending = {t for t in tasks if not t.done()}
    for task in pending:
        task.cancel()
    while pending:
        _, pending = await asyncio.wait(pending, timeout=every)
        for task in pending:
            log.warning(
                "task %s still running %g s after it was cancelled; cancelling again", task.get_name(), every
            )
            task.cancel()
