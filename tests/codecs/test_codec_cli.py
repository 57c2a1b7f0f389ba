"""`firegate codec list|test|new`: as the integrator runs them (subprocesses of the real command)
for list, test and new; the other cases through the same `firegate.cli.main` in this process,
which keeps the file quick."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from firegate.cli import main

DATA = Path(__file__).parent.parent / "data"
FIREGATE = [sys.executable, "-m", "firegate.cli"]
AT = "2026-01-01T08:00:00"  # the clock the golden files were made at (replay.FIXED_TIME)


def firegate(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FIREGATE, *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        encoding="utf-8" if stdin is None else None,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def incli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`firegate ARGS` in this process: (exit status, stdout, stderr)."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_list_json_names_every_builtin_codec_with_its_kind() -> None:
    run = firegate("codec", "list", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    kinds = {c["name"]: c["kind"] for c in doc["codecs"]}
    assert {k: kinds.get(k) for k in ("gb26875", "printer", "gst-jbqb", "forsafe")} == {
        "gb26875": "line",
        "printer": "line",
        "gst-jbqb": "line",
        "forsafe": "line",
    }
    assert doc["broken"] == []


def test_list_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = incli(capsys, "codec", "list")
    assert code == 0
    assert any(line.startswith("gst-jbqb") and "海湾" in line for line in out.splitlines())


def test_test_prints_the_same_events_as_the_golden_file() -> None:
    run = firegate("codec", "test", "--codec", "forsafe", str(DATA / "dialects" / "forsafe.hex"), "--at", AT)
    assert run.returncode == 0, run.stderr  # errors in the capture, but --strict not asked
    golden = json.loads((DATA / "dialects" / "forsafe.golden.json").read_text(encoding="utf-8"))
    assert lines(run.stdout) == golden
    assert "6 events; 1 checksum, 2 delimiter, 1 length" in run.stderr
    checksum = next(i for i in golden if i.get("error") == "checksum")
    assert checksum["offset"] == 30  # the damaged frame starts after three frames of 10 bytes


def test_strict_exits_1_on_framing_errors(capsys: pytest.CaptureFixture[str]) -> None:
    capture = str(DATA / "dialects" / "forsafe.hex")
    assert incli(capsys, "codec", "test", "--codec", "forsafe", capture, "--strict")[0] == 1
    clean = str(DATA / "printer" / "lida-ld128en.hex")
    assert incli(capsys, "codec", "test", "--codec", "printer", clean, "--strict")[0] == 0


def test_raw_bytes_on_stdin(tmp_path: Path) -> None:
    hex_text = (DATA / "dialects" / "gst-jbqb.hex").read_text(encoding="utf-8")
    raw = bytes.fromhex("".join(line for line in hex_text.splitlines() if not line.startswith("#")))
    run = subprocess.run(
        [*FIREGATE, "codec", "test", "--codec", "gst-jbqb", "--raw", "-", "--at", AT],
        input=raw,
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    golden = json.loads((DATA / "dialects" / "gst-jbqb.golden.json").read_text(encoding="utf-8"))
    assert lines(run.stdout.decode()) == golden


def test_points_file_device_and_a_dialect_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    points = tmp_path / "points.csv"
    points.write_text(
        "controller,loop,point,system_type,system_address,component_type,component_address,description\n"
        "1,2,34,1,5,42,7,一层大厅烟感\n",
        encoding="utf-8",
    )
    dialect = tmp_path / "site.yaml"
    shipped = Path(__file__).parent.parent.parent / "firegate" / "codecs" / "dialects" / "forsafe.yaml"
    dialect.write_text(shipped.read_text(encoding="utf-8").replace("name: forsafe", "name: site-panel"))
    code, out, err = incli(
        capsys, "codec", "test", "--codec", str(dialect), str(DATA / "dialects" / "forsafe.hex"),
        "--points", str(points), "--device", "bldg-7",
    )  # fmt: skip
    assert code == 0, err
    fire = next(e for e in lines(out) if e.get("type") == "fire_alarm")
    assert fire["device"] == "bldg-7" and fire["origin"] == "serial:site-panel"
    point = fire["point"]
    assert isinstance(point, dict)
    assert (point["system_address"], point["component_type"], point["component_address"]) == (5, 42, 7)
    assert point["description"] == "一层大厅烟感"


def test_options_reach_the_codec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "en.txt"
    capture.write_bytes(b"\x1b6ALARM L02 P003 LOBBY\n\n")
    options = {
        "patterns": [r"(?P<event>[A-Z]+) L(?P<loop>\d+) P(?P<point>\d+) (?P<zone>\S+)"],
        "events": {"ALARM": "fire"},
    }
    code, out, err = incli(
        capsys, "codec", "test", "--codec", "printer", "--raw", str(capture), "--options", json.dumps(options)
    )
    assert code == 0, err
    [fire] = lines(out)
    assert fire["type"] == "fire_alarm"
    code, out, err = incli(capsys, "codec", "test", "--codec", "printer", "--raw", str(capture))
    assert [e["error"] for e in lines(out)] == ["unparsed_line"]


def test_unknown_codec_and_bad_input_exit_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = firegate("codec", "test", "--codec", "nope", str(DATA / "dialects" / "forsafe.hex"))
    assert run.returncode == 2
    assert "no line codec named 'nope'" in run.stderr and "gst-jbqb" in run.stderr
    assert "Traceback" not in run.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nframing: {head: AA}\n")
    code, _, err = incli(capsys, "codec", "test", "--codec", str(bad), str(DATA / "dialects" / "forsafe.hex"))
    assert code == 2 and "framing" in err
    code, _, err = incli(capsys, "codec", "test", "--codec", "forsafe", "--hex", str(tmp_path / "nothing"))
    assert code == 2 and "nothing" in err
    (tmp_path / "text.txt").write_text("not hex at all")
    code, _, err = incli(capsys, "codec", "test", "--codec", "forsafe", "--hex", str(tmp_path / "text.txt"))
    assert code == 2 and "not a hex capture" in err
    code, _, err = incli(capsys, "codec", "test", "--codec", "printer", "-", "--options", "[1]")
    assert code == 2 and "--options" in err
    assert incli(capsys, "codec", "new", "Bad Name", "--dir", str(tmp_path))[0] == 2


def test_new_makes_a_package_whose_own_tests_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = firegate("codec", "new", "acme-panel", "--dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    root = tmp_path / "firegate-codec-acme-panel"
    pyproject = (root / "pyproject.toml").read_text()
    assert 'acme-panel = "firegate_codec_acme_panel.codec:AcmePanelCodec"' in pyproject
    assert (root / "tests" / "data" / "capture.golden.json").exists() and (root / ".gitignore").exists()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout
    code, _, err = incli(capsys, "codec", "new", "acme-panel", "--dir", str(tmp_path))
    assert code == 2 and "exists already" in err


def test_a_message_codec_capture_prints_its_samples_and_unreadable_payloads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An MQTT payload codec is tried the same way: one message a line, `topic payload`."""
    meokon = json.loads((Path(__file__).parents[1] / "data" / "sensors_meokon.json").read_text("utf-8"))
    documented = next(f for f in meokon["frames"] if f["name"] == "documented")
    capture = tmp_path / "messages.txt"
    capture.write_text(
        "# a hydrant sensor, then a cut-off payload\n"
        f"GIOT-GW/UL/SHMK19060013 {documented['hex']}\n"
        "GIOT-GW/UL/SHMK19060013 a55a00\n",
        encoding="utf-8",
    )
    code, out, err = incli(capsys, "codec", "test", "--codec", "meokon", str(capture))
    items = lines(out)
    samples = [i for i in items if "error" not in i]
    assert code == 0 and samples and all(s["device"] == "SHMK19060013" for s in samples)
    assert samples[0]["time"] == documented["first"]["time"] and samples[0]["line"] == 2
    (bad,) = [i for i in items if "error" in i]
    assert (bad["line"], bad["error"]) == (3, "length")
    assert "2 messages" in err and "1 unreadable" in err
    code, _, _ = incli(capsys, "codec", "test", "--codec", "meokon", "--strict", str(capture))
    assert code == 1
    options = json.dumps({"points": {"level": {"value": "lvl", "unit": "m"}}})
    json_capture = tmp_path / "json.txt"
    json_capture.write_text('tanks/T1 {"lvl": 2.5}\n', encoding="utf-8")
    code, out, _ = incli(capsys, "codec", "test", "--codec", "json", "--options", options, str(json_capture))
    ((sample,),) = [lines(out)]
    assert (sample["point"], sample["value"], sample["unit"]) == ("level", 2.5, "m")
