"""A pytest helper for codec authors: replay a capture, compare with golden events.

    from firegate.codecs.testing import check_golden

    def test_capture() -> None:
        check_golden(MyCodec(), DATA / "capture.hex", DATA / "capture.golden.json")

The capture is raw bytes or hex text (see `replay.read_capture`); the golden file is the JSON list
of events and errors the capture makes, replayed at a fixed clock so that ids and times are
stable. To write (or rewrite) golden files after a deliberate change, run pytest with
``FIREGATE_REGEN_GOLDEN=1`` and review the diff: a golden file written without a look at it
proves nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from firegate.codecs.api import LineCodec, PointTable
from firegate.codecs.replay import FIXED_TIME, read_capture, replay

REGEN_ENV = "FIREGATE_REGEN_GOLDEN"


def replay_capture(
    codec: LineCodec[Any],
    capture: Path | bytes,
    *,
    device: str = "panel-1",
    options: Mapping[str, Any] | None = None,
    points: PointTable | None = None,
    at: datetime = FIXED_TIME,
    chunk: int | None = None,
) -> list[dict[str, Any]]:
    """Events and errors (JSON-ready) of a capture file or bytes; ``chunk`` feeds it in pieces of
    this size (1: byte by byte) to show the framer does not depend on how reads fall."""
    data = read_capture(capture.read_bytes()) if isinstance(capture, Path) else capture
    step = chunk or max(len(data), 1)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    result = asyncio.run(replay(codec, chunks, device=device, options=options, points=points, at=at))
    return result.items


def check_golden(
    codec: LineCodec[Any],
    capture: Path,
    golden: Path,
    *,
    regenerate: bool | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Assert the capture replays to the golden file's events (whole, then byte by byte).
    With ``regenerate`` (default: the FIREGATE_REGEN_GOLDEN environment variable set) the
    golden file is written instead."""
    items = replay_capture(codec, capture, **kwargs)
    if regenerate if regenerate is not None else bool(os.environ.get(REGEN_ENV)):
        golden.write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        warnings.warn(f"{REGEN_ENV}: rewrote {golden}: review the diff", stacklevel=2)
        return items
    if not golden.exists():
        raise AssertionError(f"no golden file {golden}: run with {REGEN_ENV}=1 once, then review it")
    want = json.loads(golden.read_text(encoding="utf-8"))
    _same(items, want, f"{capture.name} (whole)")
    # fed byte by byte, the events are the same; skipped garbage may be reported in more pieces
    events = [i for i in replay_capture(codec, capture, chunk=1, **kwargs) if "error" not in i]
    _same(events, [i for i in want if "error" not in i], f"{capture.name} (byte by byte)")
    return items


def _same(got: list[dict[str, Any]], want: list[dict[str, Any]], what: str) -> None:
    if got == want:
        return
    for n, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            keys = sorted(k for k in g.keys() | w.keys() if g.get(k) != w.get(k))
            diff = {k: {"got": g.get(k), "golden": w.get(k)} for k in keys}
            raise AssertionError(f"{what}: item {n} differs: {json.dumps(diff, ensure_ascii=False)}")
    raise AssertionError(f"{what}: {len(got)} items, the golden file has {len(want)}")
