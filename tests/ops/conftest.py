"""Keep the developer's own FIREGATE_* variables out of these tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_firegate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("FIREGATE_"):
            monkeypatch.delenv(name)
