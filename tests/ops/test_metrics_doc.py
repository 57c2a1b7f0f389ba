"""docs/metrics.md and the metrics the code registers agree, and follow the naming rules."""

from __future__ import annotations

import importlib
import itertools
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


LabelValues = dict[str, dict[str, tuple[str, ...]]]


def doc_rows(text: str) -> dict[str, str]:
    """Metric name -> its whole table row, where its label values are listed."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*`(firegate_[a-z0-9_]+)`\s*\|", line)
        if m:
            rows[m.group(1)] = line
    return rows


def declared_label_values() -> LabelValues:
    """Each metrics module's LABEL_VALUES: metric -> label -> every value its code may emit."""
    declared: LabelValues = {}
    for module in metric_modules():
        declared.update(getattr(importlib.import_module(module), "LABEL_VALUES", {}))
    return declared


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


def test_gateway_declares_its_label_values() -> None:
    declared = declared_label_values()
    assert declared["firegate_gateway_decode_errors_total"]["reason"]  # the module is found
    assert "firegate_gateway_denies_total" in declared


def test_declared_labels_are_the_metrics_labels(registered: dict[str, MetricInfo]) -> None:
    for name, labels in declared_label_values().items():
        assert name in registered, f"LABEL_VALUES names {name}, which no module registers"
        assert tuple(sorted(labels)) == registered[name][1], f"{name}: declared labels differ"


def test_every_declared_label_value_is_documented() -> None:
    rows = doc_rows(DOC.read_text(encoding="utf-8"))
    missing = [
        f'{name}{{{label}="{value}"}}'
        for name, labels in declared_label_values().items()
        for label, values in labels.items()
        for value in values
        if f"`{value}`" not in rows.get(name, "")
    ]
    assert not missing, f"list these label values (back-quoted) in their docs/metrics.md row: {missing}"


def test_declared_label_values_are_pre_bound(registered: dict[str, MetricInfo]) -> None:
    from prometheus_client import REGISTRY

    for name, labels in declared_label_values().items():
        names = list(labels)
        for combo in itertools.product(*(labels[n] for n in names)):
            bound = dict(zip(names, combo, strict=True))
            assert REGISTRY.get_sample_value(name, bound) is not None, f"{name}{bound} is not bound"


def test_no_series_has_an_undeclared_value(registered: dict[str, MetricInfo]) -> None:
    """A ``.labels()`` call with a new value (a new close reason, say) shows up here once the
    code ran it in this process: declare it, and list it in docs/metrics.md."""
    from prometheus_client import REGISTRY

    declared = declared_label_values()
    stray = set()
    for family in REGISTRY.collect():
        name = next((n for n in (family.name, family.name + "_total") if n in declared), None)
        if name is None:
            continue
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label in declared[name] and value not in declared[name][label]:
                    stray.add(f'{name}{{{label}="{value}"}}')
    assert not stray, f"undeclared label values: {sorted(stray)}"
