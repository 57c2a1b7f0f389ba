"""Fixtures of the process-level integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.process import Firegate


@pytest.fixture
def firegate(tmp_path: Path) -> Iterator[Firegate]:
    fg = Firegate(tmp_path)
    try:
        yield fg
    finally:
        fg.kill_all()
