from __future__ import annotations

from pathlib import Path

import pytest

from firegate.config import config_check
from firegate.errors import ConfigError
from firegate.sites import SiteRegistry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "sites.example.yaml"


def test_example_registry_lookups() -> None:
    reg = SiteRegistry.load(EXAMPLE)
    site = reg.site_for_device("74565")
    assert site is not None and site.id == "SH-XH-0001"
    assert site.unit and site.address and site.phone and site.building
    assert site.lat is not None and site.lon is not None
    assert reg.site_for_device("12885033473") is site  # a second UITD of the same site
    assert reg.location("74565", 1, 1, 65559) == "1F 大厅 光电感烟探测器 (23 区 1 号)"
    assert reg.location("74565", 1, 1, 1) is None  # not in the point table
    assert reg.location("999", 1, 1, 65559) is None  # unregistered device
    assert reg.site_for_device("999") is None
    school = reg.site_for_device(str(0x0000000303E9))  # written as hex in the file
    assert school is not None and school.id == "SH-XH-0002"
    assert reg.site_for_device("panel-xh-0002") is school


def test_location_keys_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text("sites:\n  A:\n    unit: u\n    uitds: [7]\n    locations: {' 01/1/0023 ': lobby}\n")
    assert SiteRegistry.load(path).location("7", 1, 1, 23) == "lobby"


def test_empty_registry() -> None:
    assert SiteRegistry().site_for_device("74565") is None


BAD_REGISTRIES = [
    ("sites:\n  A: {unit: a, uitds: [1]}\n  B: {unit: b, uitds: [1]}\n", "sites.B.uitds"),
    ("sites:\n  A: {unit: a, devices: [p1]}\n  B: {unit: b, devices: [p1]}\n", "sites.B.devices"),
    ("sites:\n  A: {unit: a, lat: 31.2}\n", "sites.A.lon"),
    ("sites:\n  A: {unit: a, lat: 91, lon: 0}\n", "sites.A.lat"),
    ("sites:\n  A: {unit: a, locations: {'1/1': x}}\n", "sites.A.locations.1/1"),
    ("sites:\n  A: {unit: a, locations: {'1/256/3': x}}\n", "sites.A.locations.1/256/3"),
    ("sites:\n  A: {unit: a, locations: {'1/1/3': x, '1/1/03': y}}\n", "sites.A.locations.1/1/03"),
    ("sites:\n  A: {unit: a, uitds: [-1]}\n", "sites.A.uitds.0"),
    ("sites:\n  A: {unit: a, uitds: [nope]}\n", "sites.A.uitds.0"),
    ("sites:\n  A: {unit: a, phnoe: '110'}\n", "sites.A.phnoe"),
    ("sites:\n  A: {address: somewhere}\n", "sites.A.unit"),
    ("sites:\n  A: {id: B, unit: a}\n", "sites.A.id"),
    ("sites:\n  'bad id': {unit: a}\n", "sites.bad id"),
    ("sites:\n  A: {unit: a, devices: ['a.b']}\n", "sites.A.devices.0"),
    ("units: {}\n", "units"),
    ("sites: [a, b]\n", "sites"),
]


@pytest.mark.parametrize(("text", "key"), BAD_REGISTRIES)
def test_bad_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        SiteRegistry.load(path)
    assert key in [p.key for p in info.value.problems], str(info.value)
    # and through `config check` of a configuration that names it
    config = tmp_path / "firegate.yaml"
    config.write_text("sites: sites.yaml\n")
    assert config_check(config) == 1
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err


def test_bad_registry_message(tmp_path: Path) -> None:
    path = tmp_path / "sites.yaml"
    path.write_text("sites:\n  A:\n    unit: a\n    uitds: [74565]\n  B:\n    unit: b\n    uitds: [74565]\n")
    with pytest.raises(ConfigError) as info:
        SiteRegistry.load(path)
    assert str(info.value) == f"sites.B.uitds: device 74565 also belongs to site 'A' [{path}:7]"


def test_registry_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        SiteRegistry.load(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        SiteRegistry.load(tmp_path / "list.yaml")
