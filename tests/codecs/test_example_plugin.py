"""The worked example plugin (examples/firegate-codec-notifier3030), installed with pip into a
temporary directory: found through its entry point, listed, used by `firegate codec test`; and a
broken plugin named with its reason without hiding the others."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import distributions
from pathlib import Path

import pytest

from firegate.codecs.registry import GROUP, discover
from firegate.codecs.testing import check_golden

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "firegate-codec-notifier3030"
CAPTURE = EXAMPLE / "tests" / "data" / "capture.hex"
GOLDEN = EXAMPLE / "tests" / "data" / "capture.golden.json"
CLI = [sys.executable, "-m", "firegate.cli"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example, pip-installed (built from its pyproject) into a directory of its own."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / EXAMPLE.name  # a copy: setuptools builds in the source tree (build/, egg-info)
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=build,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return target


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plugin whose module raises on import, as an installed distribution would look."""
    site = tmp_path_factory.mktemp("broken")
    (site / "firegate_codec_oops.py").write_text('raise RuntimeError("the vendor SDK is missing")\n')
    info = site / "firegate_codec_oops-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: firegate-codec-oops\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\noops = firegate_codec_oops:OopsCodec\n")
    return site


@pytest.fixture
def on_path(installed: Path, broken: Path) -> Iterator[None]:
    sys.path[:0] = [str(installed), str(broken)]
    try:
        yield
    finally:
        for p in (str(installed), str(broken)):
            sys.path.remove(p)
        for name in [
            m for m in sys.modules if m.startswith(("firegate_codec_notifier3030", "firegate_codec_oops"))
        ]:
            del sys.modules[name]


def test_discovered_through_its_entry_point_and_replays_its_golden_capture(
    on_path: None, installed: Path, broken: Path
) -> None:
    eps = [
        ep
        for dist in distributions(path=[str(installed), str(broken)])
        for ep in dist.entry_points
        if ep.group == GROUP
    ]
    registry = discover(eps)
    found = registry.codecs["notifier3030"]
    assert found.kind == "line"
    assert found.source.startswith("firegate-codec-notifier3030 0.1.0: firegate_codec_notifier3030.codec:")
    assert registry.broken["oops"].reason == "RuntimeError: the vendor SDK is missing"
    codec = registry.line_codec("notifier3030")
    items = check_golden(codec, CAPTURE, GOLDEN)
    assert items[0]["type"] == "fire_alarm" and items[0]["origin"] == "serial:notifier3030"


def test_the_command_lists_it_names_the_broken_one_and_uses_it(installed: Path, broken: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(broken)])}
    listing = subprocess.run(
        [*CLI, "codec", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert listing.returncode == 0, listing.stderr
    doc = json.loads(listing.stdout)
    names = {c["name"] for c in doc["codecs"]}
    assert {"notifier3030", "gst-jbqb", "forsafe", "printer", "gb26875"} <= names  # the broken one hides none
    assert doc["broken"] == [
        {
            "name": "oops",
            "source": "firegate-codec-oops 0.3: firegate_codec_oops:OopsCodec",
            "reason": "RuntimeError: the vendor SDK is missing",
        }
    ]
    test = subprocess.run(
        [*CLI, "codec", "test", "--codec", "notifier3030", str(CAPTURE), "--at", "2026-01-01T08:00:00"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert test.returncode == 0, test.stderr
    events = [json.loads(line) for line in test.stdout.splitlines()]
    assert events == json.loads(GOLDEN.read_text(encoding="utf-8"))


def test_its_own_tests_pass_against_the_installed_package(installed: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=installed,
        env={**os.environ, "PYTHONPATH": str(installed), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "11 passed" in run.stdout
