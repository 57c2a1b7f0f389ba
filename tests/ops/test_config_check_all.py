"""`firegate config check` without FILE checks what `run` would use; a registry reports every
problem it has; `uitds` takes ranges."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from firegate.cli import main
from firegate.config import config_check
from firegate.errors import ConfigError
from firegate.sites import RANGE_MAX, SiteRegistry

ROOT = Path(__file__).resolve().parents[2]


def registry(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sites.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        SiteRegistry.load(path)
    return [p.key for p in info.value.problems]


# -- config check without FILE


def test_check_without_a_file_is_the_defaults_and_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out == "ok\n"
    monkeypatch.setenv("FIREGATE_HTTP__LISTEN", "not-a-host-port")
    monkeypatch.setenv("FIREGATE_NATS_URL", "nats://n1:4222")
    assert main(["config", "check"]) == 1
    err = capsys.readouterr().err
    assert "http.listen: expected host:port" in err and "[env FIREGATE_HTTP__LISTEN]" in err
    assert "FIREGATE_NATS_URL: unknown environment variable" in err and "Traceback" not in err


def test_check_without_a_file_reads_the_registry_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FIREGATE_SITES", str(registry(tmp_path, "sites:\n  A: {unit: a, lat: 91, lon: 0}\n")))
    assert config_check() == 1
    assert "sites.A.lat" in capsys.readouterr().err


def test_check_without_a_file_in_a_fresh_process(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FIREGATE_")}
    env["FIREGATE_GB26875__LISTEN"] = "0.0.0.0:70000"
    cmd = [sys.executable, "-m", "firegate.cli", "config", "check"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert p.returncode == 1, p.stderr
    assert "gb26875.listen" in p.stderr and "Traceback" not in p.stderr


# -- every problem of a registry


TWO_PROBLEMS = [
    # a bad value in one site hid a device listed in two sites
    (
        "sites:\n  A: {unit: a, uitds: [1, 2]}\n  B: {unit: b, lat: 200, lon: 1, uitds: [2]}\n",
        ["sites.B.lat", "sites.B.uitds"],
    ),
    # a site id that differs from its key hid every other problem
    ("sites:\n  A: {id: Z, unit: a}\n  B: {unit: ''}\n", ["sites.A.id", "sites.B.unit"]),
    ("units: {}\nsites:\n  A: {id: Z, unit: a}\n", ["units", "sites.A.id"]),
    ("sites:\n  A: {id: Z, unit: a}\n  'b c': {unit: b}\n", ["sites.A.id", "sites.b c"]),
    # a rule of one site (lat without lon) hid a duplicate between two others
    (
        "sites:\n  A: {unit: a, lat: 1}\n  B: {unit: b, uitds: [1]}\n  C: {unit: c, uitds: [1]}\n",
        ["sites.A.lon", "sites.C.uitds"],
    ),
    # two duplicates in two fields
    (
        "sites:\n  A: {unit: a, uitds: [1], devices: [p]}\n  B: {unit: b, uitds: [1], devices: [p]}\n",
        ["sites.B.uitds", "sites.B.devices"],
    ),
]


@pytest.mark.parametrize(("text", "keys"), TWO_PROBLEMS)
def test_a_registry_reports_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, keys: list[str]
) -> None:
    path = registry(tmp_path, text)
    assert sorted(problems(path)) == sorted(keys)
    config = tmp_path / "firegate.yaml"
    config.write_text("sites: sites.yaml\n")
    assert config_check(config) == 1
    err = capsys.readouterr().err
    assert all(key + ":" in err for key in keys) and "Traceback" not in err
    assert len(err.splitlines()) == len(keys)  # each once


# -- ranges


def test_uitds_take_inclusive_ranges(tmp_path: Path) -> None:
    path = registry(
        tmp_path, "sites:\n  A:\n    unit: a\n    uitds: [100000-101999, '0x30000 - 0x30001', 7]\n"
    )
    reg = SiteRegistry.load(path)
    site = reg.sites["A"]
    assert len(site.uitds) == 2000 + 2 + 1
    for device in ("100000", "101999", str(0x30001), "7"):
        found = reg.site_for_device(device)
        assert found is not None and found.id == "A"
    assert reg.site_for_device("99999") is None and reg.site_for_device("102000") is None


def test_the_sample_registry_has_a_range() -> None:
    reg = SiteRegistry.load(ROOT / "config" / "sites.example.yaml")
    site = reg.site_for_device("311999")
    assert site is not None and site.id == "SH-XH-0003"


BAD_RANGES = [
    ("[7-3]", "sites.A.uitds.0", "0 <= FIRST <= LAST"),
    ("[1, 1-x]", "sites.A.uitds.1", "expected an address or a range FIRST-LAST"),
    (f"['0-{RANGE_MAX}']", "sites.A.uitds.0", f"at most {RANGE_MAX:,} addresses"),
    ("['1-281474976710656']", "sites.A.uitds.0", "0 <= FIRST <= LAST < 2^48"),
    ("[1-3, -1]", "sites.A.uitds.1", "greater than or equal to 0"),
]


@pytest.mark.parametrize(("uitds", "key", "reason"), BAD_RANGES)
def test_bad_ranges(tmp_path: Path, uitds: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        SiteRegistry.load(registry(tmp_path, f"sites:\n  A:\n    unit: a\n    uitds: {uitds}\n"))
    (problem,) = info.value.problems
    assert problem.key == key and reason in problem.reason


def test_overlapping_ranges_are_one_problem_naming_the_devices(tmp_path: Path) -> None:
    text = "sites:\n  A: {unit: a, uitds: [100-199]}\n  B: {unit: b, uitds: [150-250]}\n"
    with pytest.raises(ConfigError) as info:
        SiteRegistry.load(registry(tmp_path, text))
    (problem,) = info.value.problems
    assert problem.key == "sites.B.uitds"
    assert problem.reason == "50 devices also belong to site 'A': 150, 151, 152, 153, 154, ..."
