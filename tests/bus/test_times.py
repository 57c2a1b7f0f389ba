"""Every time an event carries has an offset (no reader has to guess a zone), also read back
from old events."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from firegate.bus.events import IncidentReport, parse_event
from firegate.bus.schema import example_events, example_incidents
from firegate.devicetime import device_zone, set_device_zone

# a fire_alarm as a firegate before the device time zone stored it: no offset on either time
OLD_ALARM = {
    "schema_version": 1,
    "id": "74565.2.3dd7277bfd245f84cf95.alarm",
    "kind": "alarm",
    "type": "fire_alarm",
    "device": "74565",
    "site": "SH-XH-0001",
    "occurred_at": "2024-05-17T08:30:12",
    "received_at": "2024-05-17T00:30:12.418000",
    "source": "component",
    "point": {"system_type": 1, "component_address": 131082},
}


@pytest.fixture
def zone_restored() -> Iterator[None]:
    before = device_zone()
    try:
        yield
    finally:
        set_device_zone(before)


def test_an_old_event_is_read_in_the_device_time_zone(zone_restored: None) -> None:
    event = parse_event(json.dumps(OLD_ALARM))
    wire = json.loads(event.model_dump_json())
    assert wire["occurred_at"] == "2024-05-17T08:30:12+08:00"  # the device's time, in CST
    assert wire["received_at"] == "2024-05-17T00:30:12.418000Z"  # firegate's own clock: UTC
    set_device_zone("+07:00")  # a center whose devices run on another zone
    assert json.loads(parse_event(json.dumps(OLD_ALARM)).model_dump_json())["occurred_at"].endswith("+07:00")


def test_what_firegate_publishes_has_offsets_everywhere() -> None:
    """Every example event and 119 body: each time string ends in an offset or Z."""

    def times(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("_at") or key == "last_seen":
                    if value is not None:
                        yield value
                else:
                    yield from times(value)
        elif isinstance(node, list):
            for value in node:
                yield from times(value)

    docs = [json.loads(e.model_dump_json()) for e in example_events()]
    docs += [json.loads(i.model_dump_json()) for i in example_incidents()]
    found = [t for doc in docs for t in times(doc)]
    assert len(found) > 30
    for text in found:
        assert text.endswith("Z") or text[-6] in "+-", text


def test_an_old_119_body_still_parses() -> None:
    """A body stored before center, counts and new alarm ids (a dead letter replayed a year on)."""
    body = json.loads(example_incidents()[0].model_dump_json())
    for key in ("center", "alarm_count", "alarms_omitted", "new_alarm_ids"):
        del body[key]
    for alarm in body["alarms"]:
        for key in ("location", "location_source", "added_in"):
            del alarm[key]
        alarm["occurred_at"] = alarm["occurred_at"].removesuffix("+08:00")
    old = IncidentReport.model_validate(body)
    assert old.center.name is None and old.alarm_count is None and old.new_alarm_ids == []
    assert old.alarms[0].occurred_at is not None and old.alarms[0].occurred_at.utcoffset() is not None
