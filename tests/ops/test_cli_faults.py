"""`firegate fault list` prints a header row; an unreachable NATS names every setting of its address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import firegate.cli
from firegate.cli import main
from tests.ports import free_port

ROW = {
    "device": "74565",
    "site": "SH-XH-0001",
    "condition": "fault",
    "condition_zh": "故障",
    "location": "B1 消防泵房",
    "raised_at": "2024-05-17T00:30:12.250000Z",
    "open_s": 9000.0,
    "event_id": "74565.2.1.fault",
}


def answer(monkeypatch: pytest.MonkeyPatch, result: dict[str, Any]) -> None:
    monkeypatch.setattr(firegate.cli, "_run_request", lambda config, ask: result)


def test_fault_list_has_a_header_row(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answer(monkeypatch, {"ok": True, "faults": [ROW]})
    assert main(["fault", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["RAISED", "(UTC)", "OPEN", "(h)", "SITE", "DEVICE", "CONDITION", "LOCATION"]
    assert row.split() == ["2024-05-17", "00:30:12", "2.5", "SH-XH-0001", "74565", "故障", "B1", "消防泵房"]
    assert header.index("SITE") == row.index("SH-XH-0001")  # the columns line up
    assert header.index("DEVICE") == row.index("74565")


def test_fault_list_without_faults_and_as_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answer(monkeypatch, {"ok": True, "faults": []})
    assert main(["fault", "list"]) == 0
    assert capsys.readouterr().out == "no open faults\n"
    answer(monkeypatch, {"ok": True, "faults": [ROW]})
    assert main(["fault", "list", "--json"]) == 0
    assert capsys.readouterr().out.startswith('[{"device": "74565"')  # no header in JSON


def test_unreachable_nats_names_the_embedded_port_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nobody listens there
    monkeypatch.setenv("FIREGATE_NATS__EMBEDDED_PORT", str(port))
    assert main(["fault", "list", "--timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert f"nats://127.0.0.1:{port}" in err  # the address tried follows the embedded port
    assert "nats.url" in err and "FIREGATE_NATS__URL" in err
    assert "nats.embedded_port" in err and "FIREGATE_NATS__EMBEDDED_PORT" in err and "4223" in err
    assert "Traceback" not in err
