"""The `panels` configuration: from the file and from FIREGATE_PANELS (JSON), every bad entry
named by its key; the point table from `points` or a CSV; unknown dialects at start."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from firegate.codecs.api import PanelAddress, PointRef
from firegate.codecs.registry import Registry
from firegate.config import config_check, load_settings
from firegate.errors import ConfigError, StartupError
from firegate.gateway.serial.config import Panel
from firegate.gateway.serial.line import PanelLine
from firegate.gateway.serial.lines import PanelSites, serial_lines
from firegate.gateway.serial.points import points_of
from firegate.gateway.serial.uitd import UitdLine
from firegate.gateway.server import Gateway, GatewayOptions
from tests.gateway.serial.helpers import DemoCodec, make_ingest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("FIREGATE_"):
            monkeypatch.delenv(name)
    yield


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


CSV = """controller,loop,point,system_type,system_address,component_type,component_address,description
1,3,17,1,1,42,317,三楼东走廊
1,3,18,,,,318,
"""


def test_a_panel_from_the_file_with_its_point_table(tmp_path: Path) -> None:
    (tmp_path / "points.csv").write_text(CSV, encoding="utf-8-sig")  # as a spreadsheet saves it
    path = write(
        tmp_path,
        """panels:
  - port: /dev/ttyUSB0
    dialect: demo
    device: panel-1
    site: tower-a
    baudrate: 28800
    parity: even
    stopbits: 2
    mode: poll
    poll_interval: 5
    reply_timeout: 1
    codec_options: {zone_offset: 100}
    points_file: points.csv      # next to this file
""",
    )
    panel = load_settings(path).panels[0]
    assert (panel.baudrate, panel.parity, panel.stopbits, panel.mode) == (28800, "E", 2, "poll")
    assert panel.points_file == tmp_path / "points.csv"
    points = points_of(panel)
    assert points.lookup(PanelAddress(1, 3, 17)) == PointRef(1, 1, 42, 317, "三楼东走廊")
    assert points.lookup(PanelAddress(1, 3, 18)) == PointRef(1, 1, 0, 318, "")  # the controller
    assert points.lookup(PanelAddress(2, 1, 5)).component_address == (5 << 16 | 1)  # not listed: default


def test_panels_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"port": "socket://10.0.0.7:4001", "dialect": "demo", "device": "p7", "baudrate": 22800}
    monkeypatch.setenv("FIREGATE_PANELS", json.dumps([entry]))
    panel = load_settings().panels[0]
    assert panel.port == "socket://10.0.0.7:4001" and panel.baudrate == 22800 and panel.mode == "listen"


BAD = [
    ("- {port: /dev/ttyS0, dialect: demo, device: p, baudrate: 0}", "panels.0.baudrate"),
    ("- {port: /dev/ttyS0, dialect: demo, device: p, bytesize: 9}", "panels.0.bytesize"),
    ("- {port: /dev/ttyS0, dialect: demo, device: p, parity: X}", "panels.0.parity"),
    ("- {port: /dev/ttyS0, dialect: demo, device: p, stopbits: 3}", "panels.0.stopbits"),
    ("- {port: /dev/ttyS0, dialect: demo, device: p, mode: push}", "panels.0.mode"),
    ("- {port: /dev/ttyS0, dialect: demo, device: 'a b'}", "panels.0.device"),
    ("- {port: /dev/ttyS0, dialect: demo}", "panels.0.device"),  # a dialect without addresses needs one
    ("- {port: '', dialect: demo, device: p}", "panels.0.port"),
    ("- {port: /dev/ttyS0, dialect: demo, device: p, bogus: 1}", "panels.0.bogus"),
    ("- {port: /dev/ttyS0, dialect: gb26875, device: p}", "panels.0.device"),
    ("- {port: /dev/ttyS0, dialect: gb26875, mode: poll}", "panels.0.mode"),
    ("- {port: 'socket://10.0.0.9:4001', dialect: demo, device: p, rs485: {}}", "panels.0.rs485"),
    (
        "- {port: /dev/ttyS0, dialect: demo, device: p, rs485: {delay_before_send_ms: -1}}",
        "panels.0.rs485.delay_before_send_ms",
    ),
    (
        "- {port: /dev/ttyS0, dialect: demo, device: p, mode: poll, poll_interval: 1, reply_timeout: 2}",
        "panels.0.reply_timeout",
    ),
    ("- {port: /dev/ttyS0, dialect: demo, device: p, points_file: nowhere.csv}", "panels.0.points_file"),
    (
        "- {port: /dev/ttyS0, dialect: demo, device: p, points: [{loop: 1, point: 2}]}",
        "panels.0.points.0.component_address",
    ),
    (
        "- {port: /dev/ttyS0, dialect: demo, device: p}\n- {port: /dev/ttyS0, dialect: demo, device: q}",
        "panels.1.port",
    ),
    (
        "- {port: /dev/ttyS0, dialect: demo, device: p}\n- {port: /dev/ttyS1, dialect: demo, device: p}",
        "panels.1.device",
    ),
]


@pytest.mark.parametrize(("entries", "key"), BAD)
def test_a_bad_entry_is_named_by_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], entries: str, key: str
) -> None:
    path = write(tmp_path, "panels:\n" + "\n".join("  " + line for line in entries.splitlines()) + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert key in [p.key for p in info.value.problems], str(info.value)
    assert config_check(path) == 1
    out, err = capsys.readouterr()
    assert key in err and "Traceback" not in out + err


def test_a_bad_points_csv_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "points.csv").write_text(
        "controller,loop,point,component_address\n1,2,3,x\n", encoding="utf-8"
    )
    path = write(
        tmp_path, "panels: [{port: /dev/ttyS0, dialect: demo, device: p, points_file: points.csv}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "line 2" in str(info.value) and "panels.0.points_file" in str(info.value)


def test_a_bad_entry_in_the_environment_is_named_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FIREGATE_PANELS", '[{"port": "/dev/ttyS0", "dialect": "demo", "device": "p", "stopbits": 4}]'
    )
    with pytest.raises(ConfigError) as info:
        load_settings()
    problems = {p.key: p.where for p in info.value.problems}
    assert problems.get("panels.0.stopbits") == "env FIREGATE_PANELS"


async def test_an_unknown_dialect_fails_the_start_naming_the_key() -> None:
    registry = Registry()
    registry.add(DemoCodec, "tests")
    gw = Gateway(GatewayOptions(), make_ingest())
    panels = [
        Panel(port="/dev/ttyS0", dialect="gb26875"),
        Panel(port="/dev/ttyS1", dialect="demo", device="p1", mode="poll", reply_timeout=1),
        Panel(port="/dev/ttyS2", dialect="nope", device="p2"),
    ]
    with pytest.raises(StartupError) as info:
        serial_lines(panels, gw, registry)
    assert info.value.key == "panels.2.dialect" and "demo" in info.value.reason  # the installed ones
    uitd, demo = serial_lines(panels[:2], gw, registry)
    assert isinstance(uitd, UitdLine) and uitd.settings.baudrate == 9600  # the gb26875 codec's own
    assert isinstance(demo, PanelLine) and (demo.settings.baudrate, demo.settings.parity) == (19200, "E")


async def test_a_dialect_without_a_poll_frame_cannot_poll() -> None:
    class Quiet(DemoCodec):
        name = "quiet"

        def poll(self) -> bytes | None:
            return None

    registry = Registry()
    registry.add(Quiet, "tests")
    panel = Panel(port="/dev/ttyS1", dialect="quiet", device="p1", mode="poll", reply_timeout=1)
    with pytest.raises(StartupError) as info:
        serial_lines([panel], Gateway(GatewayOptions(), make_ingest()), registry)
    assert info.value.key == "panels.0.mode"


def test_a_panels_site_is_its_events_site() -> None:
    panels = [Panel(port="/dev/ttyS1", dialect="demo", device="p1", site="tower-a")]
    site_of = PanelSites(panels, lambda device: f"registry:{device}").site_of
    assert site_of("p1") == "tower-a" and site_of("74565") == "registry:74565"


def test_config_check_names_a_dialect_that_is_not_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        """panels:
  - {port: /dev/ttyS0, dialect: gb26875}
  - {port: /dev/ttyS1, dialect: no-such-dialect, device: p1}
""",
    )
    load_settings(path)  # valid as configuration: the codecs are looked up at start
    assert config_check(path) == 1
    out, err = capsys.readouterr()
    assert "panels.1.dialect: no line codec named 'no-such-dialect'" in err and "Traceback" not in out + err
    assert "panels.0" not in err


def test_a_dialect_file_is_found_next_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", "panels: [{port: /dev/ttyS0, dialect: acme-crt.yaml, device: p}]\n")
    monkeypatch.chdir(tmp_path)  # started from elsewhere, as a systemd unit's WorkingDirectory
    assert load_settings(path).panels[0].dialect == str(tmp_path / "etc" / "acme-crt.yaml")
