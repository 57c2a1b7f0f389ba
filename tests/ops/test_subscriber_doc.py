"""docs/subscriber-119.md: every JSON example is valid against the schema the page sends readers
to (docs/schemas), and is something firegate's own models accept (no unknown or misspelt field)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from firegate.bus.events import IncidentReport, parse_event
from tests.jsonformats import FORMATS

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "subscriber-119.md"
SCHEMAS = ROOT / "docs" / "schemas"


def json_examples() -> list[tuple[int, str]]:
    """(line number, text) of every ```json block of the page."""
    text = PAGE.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 2, m.group(1))
        for m in re.finditer(r"^```json\n(.*?)^```$", text, re.M | re.S)
    ]


def schema_for(example: dict[str, Any]) -> str:
    """The schema a reader picks: incident.json for the POST body, else by the event's `type`."""
    if "incident_schema" in example:
        return "incident.json"
    return f"{example['type']}.json"


EXAMPLES = json_examples()


def test_the_page_has_its_examples() -> None:
    kinds = sorted(schema_for(json.loads(text)) for _, text in EXAMPLES)
    assert kinds == ["fire_alarm.json", "fire_dismissed.json", "incident.json"]


@pytest.mark.parametrize(("line", "text"), EXAMPLES, ids=[f"line-{line}" for line, _ in EXAMPLES])
def test_example_is_valid_against_its_schema(line: int, text: str) -> None:
    example = json.loads(text)
    schema = json.loads((SCHEMAS / schema_for(example)).read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=FORMATS)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(example)
    ]
    assert not errors, f"subscriber-119.md line {line}: " + "; ".join(errors)


@pytest.mark.parametrize(("line", "text"), EXAMPLES, ids=[f"line-{line}" for line, _ in EXAMPLES])
def test_example_is_what_firegate_accepts(line: int, text: str) -> None:
    # the models forbid unknown fields, which the schemas (open to additions) let through
    if "incident_schema" in json.loads(text):
        IncidentReport.model_validate_json(text)
    else:
        parse_event(text)


def test_the_checks_are_real() -> None:
    """A missing required field and a misspelt one are caught (else the tests above prove little)."""
    text = next(t for _, t in EXAMPLES if "incident_schema" in t)
    example = json.loads(text)
    schema = json.loads((SCHEMAS / "incident.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=FORMATS)
    assert validator.is_valid(example)
    assert not validator.is_valid({k: v for k, v in example.items() if k != "test"})
    assert not validator.is_valid({**example, "confirmed_at": "2024-05-17T00:30:50"})  # no zone
    with pytest.raises(ValueError, match="notes"):
        IncidentReport.model_validate({**example, "notes": "typo"})
