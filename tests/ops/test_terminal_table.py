"""`alarm list` and `fault list` tables stay aligned after CJK text (two cells a character)."""

from __future__ import annotations

import pytest

from firegate.cli import _print_alarms, _print_faults
from firegate.ops.terminal import cell, cells


def test_cells_counts_wide_characters_twice() -> None:
    assert cells("三楼走廊") == 8
    assert cells("A3-07") == 5
    assert cell("三楼走廊东侧", 9) == "三楼走廊 "  # never half a wide character
    assert cells(cell("三楼走廊东侧", 9)) == 9


def _column(line: str, start_cells: int) -> str:
    """The text from a given terminal cell on."""
    used = 0
    for i, ch in enumerate(line):
        if used >= start_cells:
            return line[i:]
        used += cells(ch)
    return ""


def test_alarm_list_columns_line_up_after_a_chinese_location(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {
            "received_at": "2026-12-03T10:00:00Z",
            "state": "pending",
            "site": "园区",
            "device": "100",
            "location": "三号楼三层东侧走廊烟感",
            "id": "a1",
        },
        {
            "received_at": "2026-12-03T10:00:01Z",
            "state": "confirmed",
            "site": "s2",
            "device": "200",
            "location": "B2",
            "id": "a2",
        },
    ]
    _print_alarms(rows)
    lines = capsys.readouterr().out.splitlines()
    id_at = cells(lines[0][: lines[0].index(" ID") + 1])
    assert [_column(line, id_at) for line in lines] == ["ID", "a1", "a2"]


def test_fault_list_columns_line_up_after_a_chinese_condition(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {
            "raised_at": "2026-12-03T10:00:00Z",
            "open_s": 3600,
            "site": "园区一号楼",
            "device": "100",
            "condition_zh": "主电故障",
            "location": "L1",
        },
        {
            "raised_at": "2026-12-03T10:00:00Z",
            "open_s": 60,
            "site": "s2",
            "device": "200",
            "condition": "fault",
            "location": "L2",
        },
    ]
    _print_faults(rows)
    lines = capsys.readouterr().out.splitlines()
    loc_at = cells(lines[0][: lines[0].index("LOCATION")])
    assert [_column(line, loc_at) for line in lines] == ["LOCATION", "L1", "L2"]
