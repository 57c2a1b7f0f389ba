"""docs/metrics.md and the metrics the code registers agree, and follow the naming rules."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import firegate
from firegate.ops.metrics import FORBIDDEN_LABELS, MetricInfo, all_firegate_metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "metrics.md"
PACKAGE = Path(firegate.__file__).parent


def metric_modules() -> list[str]:
    """Every firegate/**/metrics.py: a layer that has none yet is simply not there."""
    files = sorted(PACKAGE.rglob("metrics.py"))
    return ["firegate." + ".".join(f.relative_to(PACKAGE).with_suffix("").parts) for f in files]


def parse_doc(text: str) -> dict[str, MetricInfo]:
    rows: dict[str, MetricInfo] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`(firegate_[a-z0-9_]+)`", cells[0]) if line.startswith("|") else None
        if not m or m.group(1) == "firegate_example_total":  # the format sample
            continue
        assert len(cells) == 4, f"a metrics.md row needs name | type | labels | meaning: {line}"
        assert m.group(1) not in rows, f"{m.group(1)} is listed twice"
        labels = (
            tuple(sorted(x.strip("` ") for x in cells[2].split(",")))
            if cells[2] not in ("", "—", "-")
            else ()
        )
        rows[m.group(1)] = (cells[1].strip("`"), labels)
    return rows


@pytest.fixture(scope="module")
def registered() -> dict[str, MetricInfo]:
    for module in metric_modules():
        importlib.import_module(module)
    return {name: (kind, tuple(sorted(labels))) for name, (kind, labels) in all_firegate_metrics().items()}


def test_ops_metrics_are_found() -> None:
    assert "firegate.ops.metrics" in metric_modules()


def test_every_metric_is_documented(registered: dict[str, MetricInfo]) -> None:
    documented = parse_doc(DOC.read_text(encoding="utf-8"))
    missing = sorted(set(registered) - set(documented))
    assert not missing, (
        f"add rows to docs/metrics.md for: {', '.join(f'{m} {registered[m]}' for m in missing)}"
    )
    stale = sorted(set(documented) - set(registered))
    assert not stale, f"docs/metrics.md lists metrics no module registers: {', '.join(stale)}"
    wrong = {n: (documented[n], registered[n]) for n in registered if documented[n] != registered[n]}
    assert not wrong, f"type or labels differ (doc, code): {wrong}"


def test_naming_rules(registered: dict[str, MetricInfo]) -> None:
    for name, (kind, labels) in registered.items():
        assert re.fullmatch(r"firegate_[a-z][a-z0-9_]*[a-z0-9]", name), name
        assert (kind == "counter") == name.endswith("_total"), f"{name}: only counters end in _total"
        assert not FORBIDDEN_LABELS & set(labels), (
            f"{name}: per-device labels {FORBIDDEN_LABELS & set(labels)}"
        )


def test_build_info_is_set(registered: dict[str, MetricInfo]) -> None:
    from prometheus_client import REGISTRY

    assert registered["firegate_build_info"] == ("gauge", ("version",))
    assert REGISTRY.get_sample_value("firegate_build_info", {"version": firegate.__version__}) == 1
