"""docs/configuration.md and config/firegate.example.yaml list every key there is."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from firegate.config import load_settings
from tests.ops.keys import settings_keys

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "firegate.example.yaml"


def yaml_keys(data: dict[str, object], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        if isinstance(value, dict) and not prefix:
            keys |= yaml_keys(value, f"{key}.")
        else:
            keys.add(prefix + key)
    return keys


def test_configuration_md_documents_every_key() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9_.]+)` \| `(FIREGATE_[A-Z0-9_]+)` \|", text, re.M)
    documented = {key for key, _ in rows}
    assert documented == settings_keys()
    for key, env in rows:
        assert env == "FIREGATE_" + key.upper().replace(".", "__")


def test_example_has_every_key_and_the_defaults() -> None:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert yaml_keys(data) == settings_keys()
    example, defaults = load_settings(EXAMPLE), load_settings(None)
    paths = {"data_dir", "sites"}  # resolved next to the file, and the example names its sample registry
    assert example.model_dump(exclude=paths) == defaults.model_dump(exclude=paths)
    assert example.sites == ROOT / "config" / "sites.example.yaml"
