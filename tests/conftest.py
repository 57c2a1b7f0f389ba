"""Suite-wide checks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if pytest_asyncio.is_async_test(item) and isinstance(item, pytest.Function):
            item.fixturenames.insert(0, "no_task_left_running")  # set up first, torn down last


@pytest_asyncio.fixture
async def no_task_left_running() -> AsyncIterator[None]:
    """Fails a test that leaves tasks running after its own fixtures are torn down: a task
    nobody awaits is a fire-and-forget the code must not have."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    for _ in range(3):  # let cancelled tasks run their cleanup
        await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() if t is not current and t not in before and not t.done()]
    if left:
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        names = ", ".join(sorted(f"{t.get_name()} ({t.get_coro()!r:.80})" for t in left))
        pytest.fail(f"{len(left)} task(s) left running: {names}")
