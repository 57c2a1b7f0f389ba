"""Table cells by terminal width: a CJK character takes two cells, so `str.ljust` misaligns
every column after a Chinese location or condition."""

from __future__ import annotations

import unicodedata


def cells(text: str) -> int:
    """How many terminal cells ``text`` takes."""
    return sum(
        2 if unicodedata.east_asian_width(ch) in "WF" else 0 if unicodedata.combining(ch) else 1
        for ch in text
    )


def cell(text: object, width: int) -> str:
    """``text`` cut to ``width`` cells (never half a wide character) and padded to it."""
    out: list[str] = []
    used = 0
    for ch in str(text):
        w = cells(ch)
        if used + w > width:
            break
        out.append(ch)
        used += w
    return "".join(out) + " " * (width - used)
