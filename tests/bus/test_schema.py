"""The published event schemas (docs/schemas): up to date, valid, and true to what firegate publishes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from firegate.bus import schema
from firegate.bus.events import (
    EVENT_MODELS,
    SCHEMA_VERSION,
    Envelope,
    FireConfirmed,
    IncidentReport,
    parse_event,
)
from firegate.bus.jetstream import MSG_ID_HEADER, StreamSettings
from firegate.bus.kvmemory import MemoryStatusMemory
from firegate.bus.retention import RECORD_KINDS, RECORD_SUBJECTS
from firegate.codecs.gb26875 import DataUnitError, parse_frame
from firegate.ingest.normalize import Normalizer
from tests.jsonformats import FORMATS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "schemas"
GOLDEN = json.loads((ROOT / "tests" / "data" / "gb26875_golden.json").read_text(encoding="utf-8"))
SCHEMAS = schema.build_schemas()
ASYNCAPI = schema.build_asyncapi()
EXAMPLES = {e.type: e for e in schema.example_events()}


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[name], format_checker=FORMATS)


def type_of(model: type[Envelope]) -> str:
    return str(model.model_fields["type"].default)


def wire(event: Envelope) -> dict[str, Any]:
    """The event as firegate publishes it (the sink's `model_dump_json`)."""
    data: dict[str, Any] = json.loads(event.model_dump_json())
    return data


# -- the checked-in files ---------------------------------------------------------------


def test_checked_in_schemas_are_up_to_date() -> None:
    stale = schema.check_schemas(DOCS)
    assert not stale, (
        f"docs/schemas is stale ({', '.join(stale)}): the event models changed. Run `firegate schema` "
        "(or `python -m firegate.bus.schema`) and commit docs/schemas; a breaking change also bumps "
        "SCHEMA_VERSION (docs/schemas/README.md)."
    )


def test_write_is_deterministic_and_check_sees_every_kind_of_drift(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    assert set(schema.check_schemas(out)) == set(SCHEMAS) | {schema.ASYNCAPI_FILE}  # all missing
    paths = schema.write_schemas(out)
    assert sorted(p.name for p in paths) == sorted([*SCHEMAS, schema.ASYNCAPI_FILE])
    first = {p.name: p.read_bytes() for p in paths}
    schema.write_schemas(out)
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == first
    assert schema.check_schemas(out) == []
    text = first["fire_alarm.json"].decode()
    assert text.endswith("}\n") and text.startswith('{\n  "$comment"')  # pretty, keys sorted
    assert json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n" == text

    (out / "fault_raised.json").write_text("{}\n")
    (out / "operation.json").unlink()
    leftover = dict(SCHEMAS["operation.json"], **{"$id": f"{schema.BASE_URL}removed_type.json"})
    (out / "removed_type.json").write_text(json.dumps(leftover))  # a type since removed
    (out / "foreign.json").write_text('{"$id": "https://example.com/x.json"}')  # not ours
    assert schema.check_schemas(out) == ["fault_raised.json", "operation.json", "removed_type.json"]
    schema.write_schemas(out)
    assert schema.check_schemas(out) == []
    assert not (out / "removed_type.json").exists() and (out / "foreign.json").exists()


def test_main_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert schema.main(["--out", str(out), "--check"]) == 1
    err = capsys.readouterr().err
    assert "fire_alarm.json" in err and "asyncapi.json" in err and "firegate schema" in err
    assert not out.exists()  # --check writes nothing
    assert schema.main(["--out", str(out)]) == 0
    assert schema.main(["--out", str(out), "--check"]) == 0
    (out / "event.json").write_text("{}")
    assert schema.main(["--out", str(out), "--check"]) == 1
    assert "event.json" in capsys.readouterr().err


# -- the schemas ------------------------------------------------------------------------


def test_one_schema_per_model_plus_the_union() -> None:
    extra = {"event.json", "envelope.json", "incident.json"}
    assert set(SCHEMAS) == {f"{type_of(m)}.json" for m in EVENT_MODELS} | extra


def test_incident_schema_is_the_119_body() -> None:
    """incident.json describes the POST body: its examples, and every fire_confirmed's incident."""
    doc = SCHEMAS["incident.json"]
    assert "firegate.incident/1" in doc["title"]
    assert doc["properties"]["incident_schema"]["const"] == "firegate.incident/1"
    assert "format" not in json.dumps(doc["$defs"]["IncidentAlarm"]["properties"]["occurred_at"])
    incidents = schema.example_incidents()
    assert [i.update for i in incidents] == [1, 2]
    assert doc["examples"] == [json.loads(i.model_dump_json()) for i in incidents]
    confirmed = EXAMPLES["fire_confirmed"]
    assert isinstance(confirmed, FireConfirmed) and confirmed.incident == incidents[0]
    for body in [*doc["examples"], wire(confirmed)["incident"]]:
        validator("incident.json").validate(body)
        assert IncidentReport.model_validate_json(json.dumps(body)).model_dump(mode="json") == body
    bad = dict(doc["examples"][0], update=0)
    assert not validator("incident.json").is_valid(bad)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_is_valid_draft_2020_12_and_versioned(name: str) -> None:
    doc = SCHEMAS[name]
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == f"https://firegate.dev/schemas/v{SCHEMA_VERSION}/{name}"
    assert f"v{SCHEMA_VERSION}" in doc["title"]
    assert "discriminator" not in json.dumps(doc)  # OpenAPI's keyword: strict validators reject it


def test_examples_cover_every_model() -> None:
    assert set(EXAMPLES) == {type_of(m) for m in EVENT_MODELS}
    for model in EVENT_MODELS:
        assert SCHEMAS[f"{type_of(model)}.json"]["examples"] == [wire(EXAMPLES[type_of(model)])]


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_example_validates_and_round_trips(model: type[Envelope]) -> None:
    event = EXAMPLES[type_of(model)]
    assert type(event) is model
    data = wire(event)
    validator(f"{type_of(model)}.json").validate(data)
    validator("event.json").validate(data)
    validator("envelope.json").validate(data)
    assert data["schema_version"] == SCHEMA_VERSION
    parsed = parse_event(json.dumps(data, ensure_ascii=False))
    assert type(parsed) is model and parsed == event
    assert parse_event(event.model_dump_json()) == event


async def test_what_the_normalizer_makes_of_golden_frames_validates() -> None:
    """Not only hand-picked examples: every event the normalizer makes of the golden frames."""
    normalizer = Normalizer(
        MemoryStatusMemory(), site_of=lambda d: "SH-XH-0001", location_of=lambda d, st, sa, ca: f"{ca} 号点"
    )
    received = datetime(2024, 5, 17, 0, 30, 15, 250000, tzinfo=UTC)
    seen: set[str] = set()
    for case in GOLDEN:
        if case["direction"] != "up":
            continue
        frame = parse_frame(bytes.fromhex(case["hex"]))
        try:
            unit = frame.data_unit
        except DataUnitError:
            continue
        if unit is None:
            continue
        out = await normalizer.normalize(
            str(frame.source), unit, frame_time=frame.time.value, raw=frame.raw, received_at=received
        )
        for event in out.events:
            data = wire(event)
            for name in (f"{event.type}.json", "event.json"):
                errors = [e.message for e in validator(name).iter_errors(data)]
                assert not errors, f"{case['name']}: {event.type} against {name}: {errors}"
            seen.add(event.type)
    assert seen >= {
        "fire_alarm",
        "fault_raised",
        "status_changed",
        "analog_value",
        "operation",
        "device_info",
    }


def test_the_date_time_check_is_real() -> None:
    """The format checker above does reject a zone-less time (else the tests prove nothing)."""
    checker = Draft202012Validator({"type": "string", "format": "date-time"}, format_checker=FORMATS)
    checker.validate("2024-05-17T00:30:12.418Z")
    with pytest.raises(ValidationError):
        checker.validate("2024-05-17T08:30:12")


def test_schemas_reject_what_firegate_never_sends() -> None:
    alarm = wire(EXAMPLES["fire_alarm"])
    fire_alarm, any_event = validator("fire_alarm.json"), validator("event.json")
    bad: list[dict[str, Any]] = [
        {k: v for k, v in alarm.items() if k != "id"},
        {k: v for k, v in alarm.items() if k != "type"},
        {**alarm, "kind": "fault"},
        {**alarm, "schema_version": SCHEMA_VERSION + 1},
        {**alarm, "occurred_at": "17/05/2024 08:30"},
        {**alarm, "received_at": 1715905812},
        {**alarm, "source": "rumour"},
        {**alarm, "point": {"component_address": "131082"}},
    ]
    for doc in bad:
        assert not fire_alarm.is_valid(doc), doc
        assert not any_event.is_valid(doc), doc
    assert not any_event.is_valid({**alarm, "type": "fire_drill"})  # unknown types: skip, not parse


def test_unknown_properties_are_allowed() -> None:
    """Adding an optional field is a compatible change (README): old schemas must accept it."""
    alarm = wire(EXAMPLES["fire_alarm"])
    doc = {**alarm, "building": "A 座", "point": {**alarm["point"], "floor": 2}}
    validator("fire_alarm.json").validate(doc)
    validator("event.json").validate(doc)


def test_occurred_at_is_local_time_and_received_at_is_utc() -> None:
    props = SCHEMAS["fire_alarm.json"]["properties"]
    assert "format" not in json.dumps(props["occurred_at"])  # not RFC 3339: no offset
    assert props["received_at"]["format"] == "date-time"
    v = validator("fire_alarm.json")
    alarm = wire(EXAMPLES["fire_alarm"])
    for ok in ("2024-05-17T08:30:12", "2024-05-17T08:30:12.5", "2024-05-17T08:30:12+08:00", None):
        v.validate({**alarm, "occurred_at": ok})


# -- the AsyncAPI document ----------------------------------------------------------------


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = ASYNCAPI
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_asyncapi_has_a_channel_per_kind() -> None:
    assert ASYNCAPI["asyncapi"] == "3.0.0"
    assert ASYNCAPI["info"]["version"].startswith(f"{SCHEMA_VERSION}.")
    channels = ASYNCAPI["channels"]
    kinds = ("alarm", "fault", "status", "telemetry", "operation", "device", "confirmed", "dismissed")
    assert kinds == schema.KINDS
    for kind in kinds:
        channel = channels[kind]
        # an incident's events are on its site (every alarm of it says which), the rest on a device
        key = "site" if kind in ("confirmed", "dismissed") else "device"
        assert channel["address"] == f"fire.{kind}.{{{key}}}"
        assert set(channel["parameters"]) == {key}
        resolve(channel["parameters"][key]["$ref"])
        assert channel["x-jetstream"] == {"stream": "FIRE_TELEMETRY" if kind == "telemetry" else "FIRE"}
        assert "Nats-Msg-Id" in channel["description"]
        assert "2-minute duplicate window" in channel["description"]
        for ref in channel["messages"].values():
            message = resolve(ref["$ref"])
            assert resolve(message["headers"]["$ref"])["required"] == [MSG_ID_HEADER]
            target = message["payload"]["schema"]["$ref"].removeprefix("./")
            assert message["payload"]["schemaFormat"] == "application/schema+json;version=draft-2020-12"
            assert target in SCHEMAS
            kind_prop = SCHEMAS[target]["properties"]["kind"]
            assert kind_prop.get("const", kind) == kind or kind in kind_prop.get("enum", [])
        op = ASYNCAPI["operations"][f"publish_{kind}"]
        assert op["action"] == "send" and resolve(op["channel"]["$ref"]) is channel
        assert [resolve(m["$ref"]) for m in op["messages"]] == list(channel["messages"].values())


def test_asyncapi_messages_cover_every_model_on_its_kind() -> None:
    for model in EVENT_MODELS:
        kind, type_ = str(model.model_fields["kind"].default), type_of(model)
        ref = ASYNCAPI["channels"][kind]["messages"][type_]["$ref"]
        message = resolve(ref)
        assert message["payload"]["schema"]["$ref"] == f"./{type_}.json"
        (example,) = message["examples"]
        assert example["headers"] == {MSG_ID_HEADER: example["payload"]["id"]}
        validator(f"{type_}.json").validate(example["payload"])
        assert parse_event(json.dumps(example["payload"])) == EXAMPLES[type_]


def test_asyncapi_stream_and_duplicate_window() -> None:
    stream = StreamSettings()
    assert ASYNCAPI["x-jetstream"] == {
        "stream": "FIRE",
        "subjects": list(RECORD_SUBJECTS),
        "telemetry_stream": "FIRE_TELEMETRY",
        "telemetry_subjects": ["fire.telemetry.>"],
        "storage": "file",
        "duplicate_window_s": stream.duplicate_window,
        "msg_id_header": "Nats-Msg-Id",
    }
    assert stream.duplicate_window == 120.0
    channels = ASYNCAPI["channels"]
    assert channels["telemetry"]["x-jetstream"] == {"stream": "FIRE_TELEMETRY"}
    assert {channels[k]["x-jetstream"]["stream"] for k in RECORD_KINDS} == {"FIRE"}


def test_asyncapi_device_commands_are_request_reply() -> None:
    from firegate.gateway.remote import ACTIONS, PREFIX

    channel = ASYNCAPI["channels"]["device_command"]
    assert channel["address"] == f"{PREFIX}.{{device}}.{{action}}" == "firegate.cmd.{device}.{action}"
    action = resolve(channel["parameters"]["action"]["$ref"])
    assert tuple(action["enum"]) == ACTIONS == schema.COMMAND_ACTIONS
    op = ASYNCAPI["operations"]["handle_device_command"]
    assert op["action"] == "receive" and resolve(op["channel"]["$ref"]) is channel
    reply_channel = resolve(op["reply"]["channel"]["$ref"])
    assert reply_channel["address"] is None  # the request's reply subject (an inbox)
    for ref in (*op["messages"], *op["reply"]["messages"]):
        payload = resolve(resolve(ref["$ref"])["$ref"])["payload"]
        assert resolve(payload["$ref"])["type"] == "object"


def test_asyncapi_alarm_api_is_request_reply() -> None:
    from firegate.forwarders.api import ACTIONS, PREFIX, QUEUE

    channel = ASYNCAPI["channels"]["alarm_api"]
    assert channel["address"] == f"{PREFIX}.{{action}}" == "firegate.alarm.{action}"
    assert QUEUE in channel["description"]
    action = resolve(channel["parameters"]["action"]["$ref"])
    assert tuple(action["enum"]) == ACTIONS == schema.ALARM_ACTIONS
    op = ASYNCAPI["operations"]["handle_alarm_api"]
    assert op["action"] == "receive" and resolve(op["channel"]["$ref"]) is channel
    assert resolve(op["reply"]["channel"]["$ref"])["address"] is None
    for ref in (*op["messages"], *op["reply"]["messages"]):
        payload = resolve(resolve(ref["$ref"])["$ref"])["payload"]
        Draft202012Validator.check_schema(resolve(payload["$ref"]))


def test_alarm_api_schemas_match_the_lifecycle() -> None:
    """A decision's reply (rows from `listing`) validates against the AsyncAPI schemas."""
    from firegate.bus.events import FireAlarm, SiteInfo
    from firegate.forwarders.incident import listing, open_incident

    schemas = ASYNCAPI["components"]["schemas"]
    reply = Draft202012Validator(
        {**schemas["alarm_reply"], "components": ASYNCAPI["components"]}, format_checker=FORMATS
    )
    row = Draft202012Validator(schemas["alarm_row"], format_checker=FORMATS)
    alarm = EXAMPLES["fire_alarm"]
    assert isinstance(alarm, FireAlarm)
    incident = open_incident(alarm)
    site = SiteInfo(id=alarm.site, registered=False)
    incident.add(alarm, alarm.received_at, site)
    rows = [listing(incident, a) for a in incident.alarms]
    assert set(rows[0]) == set(schemas["alarm_row"]["required"])
    incident.dismiss("false", "li.na", datetime(2024, 5, 17, 0, 31, tzinfo=UTC))
    rows += [listing(incident, a) for a in incident.alarms]
    for r in rows:
        row.validate(json.loads(json.dumps(r)))
    answer = {
        "ok": True,
        "incident": incident.id,
        "state": incident.state,
        "already": False,
        "decided_by": incident.decided_by,
        "alarms": rows,
    }
    reply.validate(json.loads(json.dumps(answer)))
    requests = {
        "alarm_list_request": {"state": "pending", "site": None, "limit": 500},
        "alarm_confirm_request": {"id": alarm.id, "operator": "zhang.wei", "note": None},
        "alarm_dismiss_request": {"id": alarm.id, "operator": "li.na", "note": None, "reason": "test"},
    }
    for name, body in requests.items():  # what `firegate alarm` sends
        Draft202012Validator(schemas[name]).validate(body)


def test_fault_api_schemas_match_the_tracker() -> None:
    from firegate.bus.events import FaultRaised
    from firegate.forwarders.faults import LIST_SUBJECT, OpenFault

    assert ASYNCAPI["channels"]["fault_api"]["address"] == LIST_SUBJECT == schema.FAULT_LIST_SUBJECT
    schemas = ASYNCAPI["components"]["schemas"]
    reply = Draft202012Validator(
        {**schemas["fault_reply"], "components": ASYNCAPI["components"]}, format_checker=FORMATS
    )
    raised = EXAMPLES["fault_raised"]
    assert isinstance(raised, FaultRaised)
    fault = OpenFault(
        device=raised.device,
        site=raised.site,
        condition=raised.condition,
        condition_zh=raised.condition_zh,
        point=raised.point,
        raised_at=raised.received_at,
        event_id=raised.id,
    )
    row = fault.row(datetime(2024, 5, 18, tzinfo=UTC))
    reply.validate(json.loads(json.dumps({"ok": True, "faults": [row]})))
    Draft202012Validator(schemas["fault_list_request"]).validate({"site": None})


def test_every_internal_reference_resolves() -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if ref.startswith("#/"):
                    resolve(ref)
                else:
                    assert ref.removeprefix("./") in SCHEMAS, ref
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(ASYNCAPI)
