"""The alarm lifecycle state machine (firegate.forwarders.incident): pure, no I/O."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firegate.bus.events import (
    CenterInfo,
    Envelope,
    FireAlarm,
    FireConfirmed,
    FireDismissed,
    IncidentReport,
    Point,
    SiteInfo,
    parse_event,
)
from firegate.forwarders.errors import AlarmError
from firegate.forwarders.incident import (
    AlarmRecord,
    Incident,
    Policy,
    incident_id,
    listing,
    open_incident,
)

T0 = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
LOCAL0 = datetime(2026, 11, 23, 10, 30)  # the device's time tag: local, no zone
SITE_ID = "site-0042"
SITE = SiteInfo(
    id=SITE_ID,
    registered=True,
    unit="Acme Mall",
    address="1 Harbour Road",
    lat=22.5,
    lon=114.1,
    phone="+86 755 0000",
    building="B2",
)
# only the policy a test names is active
NO_AUTO = Policy(manual=False, detectors=0, escalate_after=None)

_serial = itertools.count(1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fire(
    *,
    device: str = "74565",
    site: str = SITE_ID,
    address: int | None = 1,
    ctype: int | None = 1,
    system: int | None = 1,
    source: str = "component",
    manual: bool = False,
    test: bool = False,
    offset: float = 0.0,
    description: str | None = None,
    location: str | None = None,
    n: int | None = None,
) -> FireAlarm:
    """A fire_alarm event from one point, received ``offset`` seconds after T0."""
    n = next(_serial) if n is None else n
    return FireAlarm(
        id=f"{device}.2.{n:020x}.fire",
        device=device,
        site=site,
        occurred_at=LOCAL0 + timedelta(seconds=offset),
        received_at=at(offset),
        source=source,  # type: ignore[arg-type]
        point=Point(
            system_type=system,
            system_address=0 if system is not None else None,
            component_type=ctype,
            component_address=address,
            description=description,
            location=location,
        ),
        status=3,
        status_flags=["fire"],
        manual=manual,
        test=test,
    )


def start(event: FireAlarm) -> Incident:
    """What the service does with the first alarm of a site."""
    inc = open_incident(event)
    assert inc.add(event, event.received_at, SITE) is not None
    return inc


def add(inc: Incident, event: FireAlarm) -> AlarmRecord | None:
    return inc.add(event, event.received_at, SITE)


def outbox_events(inc: Incident) -> list[Envelope]:
    """Every outbox item parsed, checking subject and message id against the event."""
    out = []
    for item in inc.outbox:
        event = parse_event(item.data)
        assert isinstance(event, FireConfirmed | FireDismissed)
        assert item.msg_id == event.id
        # on the incident's site, whichever device the event names: a reader predicts it from the
        # `site` of any alarm of the incident
        assert item.subject == f"fire.{event.kind}.{inc.site}"
        assert event.site == inc.site
        assert event.test == inc.test
        out.append(event)
    return out


def confirmations(inc: Incident) -> list[FireConfirmed]:
    return [e for e in outbox_events(inc) if isinstance(e, FireConfirmed)]


def dismissals(inc: Incident) -> list[FireDismissed]:
    return [e for e in outbox_events(inc) if isinstance(e, FireDismissed)]


# -- opening and adding


def test_first_alarm_is_pending() -> None:
    ev = fire(offset=5)
    inc = open_incident(ev)
    assert inc.alarms == [] and inc.outbox == []
    record = inc.add(ev, at(6), SITE)
    assert record is not None and record.id == ev.id
    assert inc.state == "pending"
    assert inc.site == SITE_ID and inc.test is False
    assert inc.opened_at == inc.last_alarm_at == ev.received_at
    assert [a.state for a in inc.alarms] == ["pending"]
    assert record.point.model_dump() == ev.point.model_dump()
    assert record.manual is False and record.status_flags == ["fire"]
    assert record.decided_at is None and record.merged_into is None
    assert inc.alarm(ev.id) is record and inc.alarm("nope") is None
    assert inc.outbox == []
    assert inc.updates == 0 and inc.extra_alarms == 0


def test_incident_id_is_deterministic_from_the_first_alarm() -> None:
    ev = fire()
    again = ev.model_copy(update={"received_at": at(99)})
    assert open_incident(ev).id == open_incident(again).id == incident_id(ev.id)
    assert incident_id(ev.id).startswith("inc-")
    assert incident_id(ev.id) == incident_id(ev.id)
    assert incident_id(ev.id) != incident_id(fire().id)


def test_test_alarm_opens_a_test_incident() -> None:
    inc = start(fire(test=True))
    assert inc.test is True and inc.state == "pending"


@pytest.mark.parametrize("decide", [None, "confirm", "dismiss"])
def test_adding_the_same_alarm_twice_is_a_no_op(decide: str | None) -> None:
    first = fire(offset=0)
    inc = start(first)
    second = fire(address=2, offset=10)
    add(inc, second)
    if decide == "confirm":
        inc.confirm("alice", "operator", at(20), SITE)
    elif decide == "dismiss":
        inc.dismiss("false", "alice", at(20))
    before = inc.model_dump_json()
    outbox = len(inc.outbox)
    for ev in (first, second):
        assert inc.add(ev, at(30), SITE) is None
        # a redelivery with a later receive time is still the same alarm
        assert inc.add(ev.model_copy(update={"received_at": at(500)}), at(500), SITE) is None
    assert len(inc.outbox) == outbox
    assert inc.model_dump_json() == before


# -- accepts()


def test_a_pending_incident_takes_every_alarm_of_its_site() -> None:
    inc = start(fire(offset=0))
    assert inc.accepts(fire(address=2, offset=100_000), Policy(incident_window=60))


def test_a_confirmed_incident_takes_alarms_within_the_window_of_the_last_one() -> None:
    policy = Policy(incident_window=600)
    inc = start(fire(offset=0))
    inc.confirm("zhang", "operator", at(1), SiteInfo(id=inc.site, registered=False))
    assert inc.accepts(fire(address=2, offset=600), policy)  # inclusive
    assert not inc.accepts(fire(address=2, offset=600.001), policy)
    add(inc, fire(address=2, offset=500))
    # the window runs from the last alarm, not the first
    assert inc.last_alarm_at == at(500)
    assert inc.accepts(fire(address=3, offset=1100), policy)
    assert not inc.accepts(fire(address=3, offset=1101), policy)


def test_accepts_uses_the_policy_window() -> None:
    inc = start(fire(offset=0))
    inc.confirm("zhang", "operator", at(1), SiteInfo(id=inc.site, registered=False))
    late = fire(address=2, offset=61)
    assert inc.accepts(late, Policy())
    assert not inc.accepts(late, Policy(incident_window=60))


def test_an_out_of_order_alarm_does_not_move_last_alarm_at_back() -> None:
    inc = start(fire(offset=100))
    assert inc.accepts(fire(address=2, offset=50), Policy())
    add(inc, fire(address=2, offset=50))
    assert inc.last_alarm_at == at(100)
    assert inc.opened_at == at(100)


def test_rejects_alarms_after_a_dismissal() -> None:
    inc = start(fire(offset=0))
    inc.dismiss("false", "alice", at(10))
    assert not inc.open
    assert not inc.accepts(fire(address=2, offset=11), Policy())


@pytest.mark.parametrize("incident_test", [False, True])
def test_rejects_alarms_of_the_other_test_mode(incident_test: bool) -> None:
    inc = start(fire(test=incident_test))
    assert inc.accepts(fire(address=2, test=incident_test, offset=1), Policy())
    assert not inc.accepts(fire(address=2, test=not incident_test, offset=1), Policy())


def test_a_confirmed_incident_accepts_alarms_within_the_window() -> None:
    inc = start(fire(offset=0))
    inc.confirm("alice", "operator", at(10), SITE)
    assert inc.open
    assert inc.accepts(fire(address=2, offset=300), Policy(incident_window=600))
    assert not inc.accepts(fire(address=2, offset=601), Policy(incident_window=600))


# -- duplicates


def test_a_repeat_of_a_point_is_merged_into_the_first_alarm() -> None:
    first = fire(offset=0)
    inc = start(first)
    dup = fire(offset=40)
    record = add(inc, dup)
    assert record is not None
    assert record.state == "merged" and record.merged_into == first.id
    assert record.reason == "duplicate" and record.decided_by == "policy:duplicate"
    assert record.decided_at == at(40)
    assert inc.alarm(first.id).state == "pending"  # type: ignore[union-attr]
    assert inc.state == "pending"
    assert inc.last_alarm_at == at(40)
    [event] = outbox_events(inc)
    assert isinstance(event, FireDismissed)
    assert event.reason == "duplicate"
    assert event.alarm_ids == [dup.id]
    assert event.merged_into == first.id
    assert event.incident_id == inc.id
    assert event.dismissed_by == "policy:duplicate"
    assert event.id == f"{inc.id}.merged.{dup.id}"
    assert event.after_s == 40.0
    assert event.device == dup.device
    assert inc.outbox[0].subject == f"fire.dismissed.{SITE_ID}"


def test_every_repeat_merges_into_the_first_unmerged_alarm() -> None:
    first = fire(offset=0)
    inc = start(first)
    dups = [fire(offset=10 * k) for k in range(1, 4)]
    for d in dups:
        add(inc, d)
    assert [a.merged_into for a in inc.alarms] == [None, first.id, first.id, first.id]
    events = dismissals(inc)
    assert [e.alarm_ids for e in events] == [[d.id] for d in dups]
    assert len({item.msg_id for item in inc.outbox}) == 3


@pytest.mark.parametrize(
    "other",
    [
        {"address": 2},
        {"ctype": 2},
        {"system": 2},
        {"device": "99999"},
        {"source": "system"},
    ],
    ids=["address", "component_type", "system_type", "device", "source"],
)
def test_a_different_point_stays_pending(other: dict[str, Any]) -> None:
    inc = start(fire(offset=0))
    record = add(inc, fire(offset=10, **other))
    assert record is not None and record.state == "pending" and record.merged_into is None
    assert inc.outbox == []


def test_a_point_with_another_description_is_still_the_same_point() -> None:
    inc = start(fire(offset=0, description="smoke 1F"))
    record = add(inc, fire(offset=5, description="smoke, 1F lobby", location="Lobby"))
    assert record is not None and record.state == "merged"


# -- confirm()


def test_confirm_confirms_pending_alarms_and_emits_fire_confirmed() -> None:
    a = fire(offset=0, description="smoke 1F")
    inc = start(a)
    dup = fire(offset=5)
    b = fire(address=2, offset=10)
    add(inc, dup)
    add(inc, b)
    confirmed = inc.confirm("alice", "operator", at(42.5), SITE, note="seen on CCTV")
    assert [r.id for r in confirmed] == [a.id, b.id]
    assert inc.state == "confirmed"
    assert inc.decided_at == at(42.5) and inc.decided_by == "alice"
    assert inc.confirmation == "operator" and inc.note == "seen on CCTV"
    assert inc.updates == 1
    assert [(x.id, x.state) for x in inc.alarms] == [
        (a.id, "confirmed"),
        (dup.id, "merged"),
        (b.id, "confirmed"),
    ]
    for r in confirmed:
        assert r.decided_at == at(42.5) and r.decided_by == "alice"

    [event] = confirmations(inc)
    assert event.id == f"{inc.id}.confirmed.1" == inc.outbox[-1].msg_id
    assert inc.outbox[-1].subject == f"fire.confirmed.{SITE_ID}"
    assert event.alarm_ids == [a.id, b.id]
    assert event.after_s == 42.5 >= 0
    assert event.received_at == at(42.5)
    report = event.incident
    assert report.update == 1
    assert report.incident_id == inc.id
    assert report.idempotency_key == f"{inc.id}:1"
    assert report.site == SITE
    assert [x.id for x in report.alarms] == [a.id, b.id]  # confirmed only: not the duplicate
    assert report.alarms[0].point == a.point
    assert report.alarms[0].received_at == a.received_at
    assert report.confirmed_by == "alice"
    assert report.confirmation == "operator"
    assert report.confirmed_at == at(42.5)
    assert report.first_alarm_at == at(0)
    assert report.note == "seen on CCTV"


def test_confirm_by_policy() -> None:
    inc = start(fire(manual=True, offset=0))
    assert inc.due_policy(at(0), Policy()) == "manual_alarm"
    inc.confirm("policy:manual_alarm", "policy", at(0), SITE)
    [event] = confirmations(inc)
    assert event.incident.confirmed_by == "policy:manual_alarm"
    assert event.incident.confirmation == "policy"
    assert event.after_s == 0.0


def test_confirm_twice_is_refused() -> None:
    inc = start(fire())
    inc.confirm("alice", "operator", at(10), SITE)
    before = inc.model_dump_json()
    with pytest.raises(AlarmError) as e:
        inc.confirm("bob", "operator", at(20), SITE)
    assert e.value.reason == "already_decided" and e.value.value == "confirmed"
    assert inc.model_dump_json() == before


@pytest.mark.parametrize("reason", ["false", "test"])
def test_dismiss_after_confirm_is_refused(reason: str) -> None:
    inc = start(fire())
    inc.confirm("alice", "operator", at(10), SITE)
    before = inc.model_dump_json()
    with pytest.raises(AlarmError) as e:
        inc.dismiss(reason, "bob", at(20))
    assert e.value.reason == "already_decided"
    assert inc.model_dump_json() == before


def test_confirm_after_dismiss_is_refused() -> None:
    inc = start(fire())
    inc.dismiss("false", "alice", at(10))
    before = inc.model_dump_json()
    with pytest.raises(AlarmError) as e:
        inc.confirm("bob", "operator", at(20), SITE)
    assert e.value.reason == "already_decided" and e.value.value == "dismissed"
    assert inc.model_dump_json() == before


# -- alarms joining a confirmed incident


def test_a_new_point_joining_a_confirmed_incident_is_confirmed_at_once() -> None:
    a = fire(offset=0)
    inc = start(a)
    inc.confirm("alice", "operator", at(10), SITE)
    b = fire(address=2, offset=60)
    record = add(inc, b)
    assert record is not None and record.state == "confirmed"
    assert record.decided_at == at(60)
    assert inc.updates == 2
    assert inc.state == "confirmed" and inc.decided_at == at(10) and inc.decided_by == "alice"
    assert inc.last_alarm_at == at(60)
    first, second = confirmations(inc)
    assert (first.incident.update, second.incident.update) == (1, 2)
    assert second.id == f"{inc.id}.confirmed.2" == inc.outbox[-1].msg_id
    assert second.alarm_ids == [b.id]
    assert [x.id for x in second.incident.alarms] == [a.id, b.id]
    assert second.incident.confirmed_at == at(10)  # the decision, not the update
    assert second.incident.confirmed_by == "alice"
    assert second.incident.confirmation == "operator"
    assert second.after_s == 60.0
    assert second.received_at == at(60)


def test_a_repeat_of_a_confirmed_point_is_merged_without_an_update() -> None:
    a = fire(offset=0)
    inc = start(a)
    inc.confirm("alice", "operator", at(10), SITE)
    dup = fire(offset=60)
    record = add(inc, dup)
    assert record is not None and record.state == "merged" and record.merged_into == a.id
    assert inc.updates == 1
    events = outbox_events(inc)
    assert [type(e) for e in events] == [FireConfirmed, FireDismissed]
    assert isinstance(events[1], FireDismissed)
    assert events[1].reason == "duplicate" and events[1].merged_into == a.id


# -- dismiss()


@pytest.mark.parametrize("reason", ["false", "test"])
def test_dismiss(reason: str) -> None:
    a = fire(offset=0)
    inc = start(a)
    dup = fire(offset=2)
    b = fire(address=2, offset=4)
    add(inc, dup)
    add(inc, b)
    dismissed = inc.dismiss(reason, "alice", at(30), note="drill")
    assert [r.id for r in dismissed] == [a.id, b.id]
    assert inc.state == "dismissed" and inc.reason == reason
    assert inc.decided_at == at(30) and inc.decided_by == "alice" and inc.note == "drill"
    assert [(x.id, x.state) for x in inc.alarms] == [
        (a.id, "dismissed"),
        (dup.id, "merged"),
        (b.id, "dismissed"),
    ]
    for r in dismissed:
        assert r.reason == reason and r.decided_by == "alice" and r.decided_at == at(30)
    assert inc.alarm(dup.id).reason == "duplicate"  # type: ignore[union-attr]
    event = dismissals(inc)[-1]
    assert event.id == f"{inc.id}.dismissed" == inc.outbox[-1].msg_id
    assert inc.outbox[-1].subject == f"fire.dismissed.{SITE_ID}"
    assert event.reason == reason
    assert event.alarm_ids == [a.id, b.id]
    assert event.dismissed_by == "alice"
    assert event.incident_id == inc.id
    assert event.merged_into is None
    assert event.note == "drill"
    assert event.after_s == 30.0
    assert inc.updates == 0
    assert confirmations(inc) == []


@pytest.mark.parametrize("reason", ["", "duplicate", "FALSE", "fire", "confirmed"])
def test_dismiss_refuses_a_bad_reason(reason: str) -> None:
    inc = start(fire())
    before = inc.model_dump_json()
    with pytest.raises(AlarmError) as e:
        inc.dismiss(reason, "alice", at(10))
    assert e.value.reason == "bad_reason" and e.value.value == reason
    assert inc.model_dump_json() == before


def test_dismiss_twice_is_refused() -> None:
    inc = start(fire())
    inc.dismiss("test", "alice", at(10))
    with pytest.raises(AlarmError) as e:
        inc.dismiss("false", "bob", at(20))
    assert e.value.reason == "already_decided"


# -- policies


def test_manual_alarm_policy() -> None:
    inc = start(fire(manual=True, source="uitd", address=None, ctype=None, system=None))
    assert inc.due_policy(at(0), Policy()) == "manual_alarm"
    assert inc.due_policy(at(0), Policy(manual=True, detectors=0, escalate_after=None)) == "manual_alarm"
    assert inc.due_policy(at(0), NO_AUTO) is None


def test_a_later_manual_alarm_triggers_the_policy() -> None:
    inc = start(fire(offset=0))
    policy = Policy(detectors=0, escalate_after=None)
    assert inc.due_policy(at(0), policy) is None
    add(inc, fire(address=9, manual=True, offset=30))
    assert inc.due_policy(at(30), policy) == "manual_alarm"


def test_manual_alarm_wins_over_other_policies() -> None:
    inc = start(fire(address=1, offset=0))
    add(inc, fire(address=2, manual=True, offset=1))
    assert inc.due_policy(at(1000), Policy()) == "manual_alarm"


@pytest.mark.parametrize(
    ("offsets", "detectors", "expected"),
    [
        ((0, 120), 2, "multi_detector"),  # the window is inclusive
        ((0, 120.5), 2, None),
        ((0, 30, 60), 3, "multi_detector"),
        ((0, 30), 3, None),
        ((0, 100, 200), 3, None),  # 3 detectors, but no 120 s holds all of them
        ((0, 100, 200), 2, "multi_detector"),
        ((0, 300, 310), 2, "multi_detector"),  # a later pair counts too
        ((0, 1), 1, "multi_detector"),
        ((0,), 1, "multi_detector"),
        ((0, 1, 2), 0, None),  # 0 disables
    ],
)
def test_multi_detector_policy(offsets: tuple[float, ...], detectors: int, expected: str | None) -> None:
    policy = Policy(manual=True, detectors=detectors, detector_window=120, escalate_after=None)
    inc = start(fire(address=1, offset=offsets[0]))
    for k, off in enumerate(offsets[1:], start=2):
        add(inc, fire(address=k, offset=off))
    assert inc.due_policy(at(offsets[-1]), policy) == expected


def test_repeats_of_one_point_are_not_several_detectors() -> None:
    policy = Policy(detectors=2, detector_window=120, escalate_after=None)
    inc = start(fire(address=1, offset=0))
    for off in (10, 20, 30):
        add(inc, fire(address=1, offset=off))
    assert [a.state for a in inc.alarms] == ["pending", "merged", "merged", "merged"]
    assert inc.due_policy(at(30), policy) is None
    add(inc, fire(address=2, offset=40))
    assert inc.due_policy(at(40), policy) == "multi_detector"


def test_the_same_address_on_two_devices_is_two_detectors() -> None:
    policy = Policy(detectors=2, escalate_after=None)
    inc = start(fire(device="1001", offset=0))
    add(inc, fire(device="1002", offset=5))
    assert inc.due_policy(at(5), policy) == "multi_detector"


def test_escalation_policy() -> None:
    policy = Policy(manual=True, detectors=2, escalate_after=300)
    inc = start(fire(offset=0))
    add(inc, fire(address=2, offset=250))  # two detectors, but 250 s apart
    assert inc.next_deadline(policy) == at(300)
    assert inc.due_policy(at(299.9), policy) is None
    assert inc.due_policy(at(300), policy) == "escalation"
    assert inc.due_policy(at(5000), policy) == "escalation"


def test_escalation_runs_from_the_first_alarm() -> None:
    policy = Policy(detectors=0, escalate_after=60)
    inc = start(fire(offset=0))
    add(inc, fire(address=2, offset=50))
    assert inc.next_deadline(policy) == at(60)
    assert inc.due_policy(at(60), policy) == "escalation"


def test_escalation_disabled() -> None:
    policy = Policy(detectors=0, escalate_after=None)
    inc = start(fire(offset=0))
    assert inc.next_deadline(policy) is None
    assert inc.due_policy(at(10**6), policy) is None


def test_test_incidents_never_get_a_policy() -> None:
    policy = Policy(manual=True, detectors=1, escalate_after=0)
    inc = start(fire(test=True, manual=True, offset=0))
    add(inc, fire(test=True, address=2, offset=1))
    add(inc, fire(test=True, address=3, manual=True, offset=2))
    for now in (at(0), at(2), at(10**6)):
        assert inc.due_policy(now, policy) is None
        assert inc.due_policy(now, Policy()) is None
    assert inc.next_deadline(policy) is None


@pytest.mark.parametrize("decide", ["confirm", "dismiss"])
def test_decided_incidents_get_no_policy(decide: str) -> None:
    policy = Policy(manual=True, detectors=1, escalate_after=0)
    inc = start(fire(manual=True, offset=0))
    if decide == "confirm":
        inc.confirm("alice", "operator", at(1), SITE)
        add(inc, fire(address=2, manual=True, offset=2))
    else:
        inc.dismiss("false", "alice", at(1))
    assert inc.due_policy(at(10**6), policy) is None
    assert inc.next_deadline(policy) is None


# -- closed_since()


def test_closed_since() -> None:
    policy = Policy(incident_window=600)
    pending = start(fire(offset=0))
    assert pending.closed_since(policy) is None

    dismissed = start(fire(offset=0))
    dismissed.dismiss("false", "alice", at(45))
    assert dismissed.closed_since(policy) == at(45)

    confirmed = start(fire(offset=0))
    confirmed.confirm("alice", "operator", at(20), SITE)
    assert confirmed.closed_since(policy) == at(600)
    add(confirmed, fire(address=2, offset=100))
    assert confirmed.closed_since(policy) == at(700)
    assert confirmed.closed_since(Policy(incident_window=60)) == at(160)


# -- listing()

LISTING_KEYS = {"id", "device", "site", "kind", "state", "occurred_at", "received_at", "location"}


def test_listing_row() -> None:
    a = fire(offset=0, description="smoke 1F", location="Lobby, north door")
    inc = start(a)
    row = listing(inc, inc.alarms[0])
    assert row.keys() >= LISTING_KEYS
    assert json.loads(json.dumps(row)) == row
    assert row["id"] == a.id and row["device"] == a.device and row["site"] == SITE_ID
    assert row["kind"] == "alarm" and row["state"] == "pending"
    assert row["location"] == "Lobby, north door"
    assert row["incident"] == inc.id and row["incident_state"] == "pending"
    assert row["occurred_at"] == "2026-11-23T10:30:00+08:00"  # the device's time, with its offset
    assert row["received_at"] == "2026-11-23T02:30:00Z"
    assert row["decided_at"] is None and row["merged_into"] is None
    assert row["description"] == "smoke 1F"


def test_listing_location_falls_back_to_the_description() -> None:
    inc = start(fire(description="smoke detector 3F east"))
    assert listing(inc, inc.alarms[0])["location"] == "smoke detector 3F east"
    bare = start(fire(description=None))
    assert listing(bare, bare.alarms[0])["location"] is None


def test_listing_rows_after_decisions_are_json() -> None:
    a = fire(offset=0, description="smoke 1F")
    inc = start(a)
    dup = fire(offset=5)
    add(inc, dup)
    inc.confirm("alice", "operator", at(10), SITE)
    add(inc, fire(address=2, offset=20))
    inc.alarms[0].occurred_at = None  # some devices send no time tag
    rows = [listing(inc, x) for x in inc.alarms]
    for row in rows:
        assert row.keys() >= LISTING_KEYS
        assert json.loads(json.dumps(row)) == row
        assert row["incident_state"] == "confirmed"
    assert [r["state"] for r in rows] == ["confirmed", "merged", "confirmed"]
    assert rows[0]["occurred_at"] is None
    assert rows[0]["decided_at"] == "2026-11-23T02:30:10Z"
    assert rows[1]["merged_into"] == a.id and rows[1]["reason"] == "duplicate"


# -- outbox and storage


def scenario() -> Incident:
    """An incident with every kind of outbox item."""
    inc = start(fire(offset=0, description="smoke 1F"))
    add(inc, fire(offset=3))
    add(inc, fire(address=2, offset=6, manual=True))
    inc.confirm("policy:manual_alarm", "policy", at(6), SITE)
    add(inc, fire(address=3, device="77777", offset=60))
    add(inc, fire(address=3, device="77777", offset=61))
    return inc


def test_outbox_items_parse_into_their_models() -> None:
    inc = scenario()
    events = outbox_events(inc)
    assert [type(e).__name__ for e in events] == [
        "FireDismissed",
        "FireConfirmed",
        "FireConfirmed",
        "FireDismissed",
    ]
    # every event of the incident on its site: device 77777's alarm and its repeat are no longer
    # published on the subject of device 74565 (which opened the incident) and of 77777 by turns
    assert [item.subject for item in inc.outbox] == [
        f"fire.{kind}.{SITE_ID}" for kind in ("dismissed", "confirmed", "confirmed", "dismissed")
    ]
    assert [e.device for e in events] == ["74565", "74565", "74565", "77777"]
    assert len({item.msg_id for item in inc.outbox}) == len(inc.outbox)


def test_incident_round_trips_through_json() -> None:
    inc = scenario()
    inc.extra_alarms = 3
    data = inc.model_dump_json()
    back = Incident.model_validate_json(data)
    assert back == inc
    assert back.model_dump_json() == data
    # and keeps working after a reload
    add(back, fire(address=4, offset=70))
    assert back.updates == 3


@pytest.mark.parametrize("decide", [None, "dismiss"])
def test_pending_and_dismissed_incidents_round_trip(decide: str | None) -> None:
    inc = start(fire(test=True))
    if decide:
        inc.dismiss("test", "alice", at(5), note="monthly drill")
    assert Incident.model_validate_json(inc.model_dump_json()) == inc


def test_stored_incident_keeps_fields_of_a_newer_version_through_a_rewrite() -> None:
    # a rolling upgrade: an instance of the next version wrote fields this one does not know;
    # they must survive this version's compare-and-set rewrite
    incident = start(fire())
    data = json.loads(incident.model_dump_json())
    data["surprise"] = 1
    data["alarms"][0]["also_new"] = [1, 2]
    data["alarms"][0]["point"]["floor"] = "B2"
    loaded = Incident.model_validate_json(json.dumps(data))
    assert loaded.id == incident.id and loaded.alarms[0].id == incident.alarms[0].id
    rewritten = json.loads(loaded.model_dump_json())
    assert rewritten["surprise"] == 1 and rewritten["alarms"][0]["also_new"] == [1, 2]
    assert rewritten["alarms"][0]["point"]["floor"] == "B2"
    # the 119 report keeps to this version's published schema
    loaded.confirm("alice", "operator", at(1), SITE)
    point = confirmations(loaded)[-1].incident.alarms[0].point
    assert "floor" not in point.model_dump()
    assert point.model_dump() == incident.alarms[0].point.model_dump()


# -- properties

POINTS = [
    {"device": "74565", "address": 1},
    {"device": "74565", "address": 2},
    {"device": "74565", "address": 3, "manual": True},
    {"device": "80001", "address": 1},
]

policies = st.builds(
    Policy,
    incident_window=st.sampled_from([60.0, 300.0, 600.0]),
    manual=st.booleans(),
    detectors=st.integers(0, 3),
    detector_window=st.sampled_from([10.0, 120.0]),
    escalate_after=st.one_of(st.none(), st.sampled_from([0.0, 60.0, 300.0])),
)

ops = st.one_of(
    st.tuples(st.just("alarm"), st.integers(0, len(POINTS) - 1), st.floats(0, 400), st.booleans()),
    st.tuples(st.just("redeliver"), st.integers(0, 50)),
    st.tuples(
        st.just("confirm"), st.sampled_from(["alice", "policy:x"]), st.sampled_from(["operator", "policy"])
    ),
    st.tuples(st.just("dismiss"), st.sampled_from(["false", "test", "bogus"])),
    st.tuples(st.just("policy"), st.floats(0, 400)),
)


def check_invariants(inc: Incident, history: list[str], policy: Policy, now: datetime) -> None:
    history.append(inc.state)
    decided = [s for s in history if s != "pending"]
    assert history[: len(history) - len(decided)] == ["pending"] * (len(history) - len(decided))
    assert len(set(decided)) <= 1  # one decision, never undone or changed

    events = outbox_events(inc)
    assert len({item.msg_id for item in inc.outbox}) == len(inc.outbox)
    confirmed = [e for e in events if isinstance(e, FireConfirmed)]
    dismissed = [e for e in events if isinstance(e, FireDismissed)]
    assert [e.incident.update for e in confirmed] == list(range(1, len(confirmed) + 1))
    assert inc.updates == len(confirmed)
    assert all(e.after_s >= 0 for e in events)
    confirmed_ids = [i for e in confirmed for i in e.alarm_ids]
    dismissed_ids = [i for e in dismissed for i in e.alarm_ids]
    assert len(confirmed_ids) == len(set(confirmed_ids))
    assert len(dismissed_ids) == len(set(dismissed_ids))
    assert not set(confirmed_ids) & set(dismissed_ids)
    for e in confirmed:  # each report lists what was confirmed so far, and what this update added
        listed = [a.id for a in e.incident.alarms]
        assert set(e.alarm_ids) <= set(listed)
        assert all(inc.alarm(i).state == "confirmed" for i in listed)  # type: ignore[union-attr]

    ids = [a.id for a in inc.alarms]
    assert len(ids) == len(set(ids))
    for a in inc.alarms:
        assert a.test == inc.test
        if a.state == "merged":
            target = inc.alarm(a.merged_into or "")
            assert target is not None and target.state != "merged"
            assert target.point_key == a.point_key
            assert a.id in dismissed_ids
        else:
            assert a.state == inc.state
            assert (a.id in confirmed_ids) == (a.state == "confirmed")
            assert (a.id in dismissed_ids) == (a.state == "dismissed")
    assert inc.alarms[0].state != "merged"
    if inc.test or inc.state != "pending":
        for when in (now, now + timedelta(days=1)):
            assert inc.due_policy(when, policy) is None
            assert inc.due_policy(when, Policy(detectors=1, escalate_after=0)) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=policies,
    first=st.integers(0, len(POINTS) - 1),
    test=st.booleans(),
    steps=st.lists(ops, max_size=25),
)
def test_random_operations_keep_the_invariants(
    policy: Policy, first: int, test: bool, steps: list[tuple[Any, ...]]
) -> None:
    clock = 0.0
    seen: list[FireAlarm] = [fire(offset=clock, test=test, **POINTS[first])]
    inc = start(seen[0])
    incidents = [(inc, ["pending"])]
    for step in steps:
        inc, history = incidents[-1]
        before = inc.model_dump_json()
        try:
            match step:
                case ("alarm", point, dt, alarm_test):
                    clock += dt
                    event = fire(offset=clock, test=alarm_test, **POINTS[point])
                    seen.append(event)
                    if inc.accepts(event, policy):
                        outbox = len(inc.outbox)
                        record = inc.add(event, event.received_at, SITE)
                        assert (record is not None and record.state != "pending") or inc.state == "pending"
                        assert len(inc.outbox) in (outbox, outbox + 1)
                    else:
                        inc = start(event)
                        history = ["pending"]
                        incidents.append((inc, history))
                case ("redeliver", k):
                    event = seen[k % len(seen)]
                    if inc.alarm(event.id) is not None:
                        assert inc.add(event, at(clock), SITE) is None
                        assert inc.model_dump_json() == before
                case ("confirm", by, how):
                    inc.confirm(by, how, at(clock), SITE)
                case ("dismiss", reason):
                    inc.dismiss(reason, "alice", at(clock))
                case ("policy", dt):
                    clock += dt
                    name = inc.due_policy(at(clock), policy)
                    if name is not None:
                        assert not inc.test and inc.state == "pending"
                        assert name in ("manual_alarm", "multi_detector", "escalation")
                        inc.confirm(f"policy:{name}", "policy", at(clock), SITE)
                        assert inc.state == "confirmed"
        except AlarmError as e:
            assert e.reason in ("already_decided", "bad_reason")
            assert inc.model_dump_json() == before  # a refused action changes nothing
        check_invariants(inc, history, policy, at(clock))
    for inc, _ in incidents:
        assert Incident.model_validate_json(inc.model_dump_json()) == inc


def test_a_dismissal_by_alarm_goes_by_filing_order_not_time() -> None:
    inc = start(fire(address=1, offset=10))
    add(inc, fire(address=2, offset=10))  # the same frame: the same time, filed after
    with pytest.raises(AlarmError) as refused:
        inc.dismiss("false", "zhang", at(20), seen=inc.alarms[0].id)
    assert refused.value.reason == "changed"
    with pytest.raises(AlarmError) as unknown:
        inc.dismiss("false", "zhang", at(20), seen="not-in-this-incident")
    assert unknown.value.reason == "unknown"
    inc.dismiss("false", "zhang", at(20), seen=inc.alarms[1].id)
    assert inc.state == "dismissed"


# -- the 119 body: center, location, what is new, size (issue 19)


CENTER = CenterInfo(id="SH-XH-FRMC", name="上海市徐汇区城市消防远程监控中心", phone="021-64119119")


def reports(inc: Incident) -> list[IncidentReport]:
    return [e.incident for e in confirmations(inc)]


def test_every_body_names_the_center() -> None:
    """A fire from an unregistered device says "call the monitoring center": which one."""
    unknown = SiteInfo(id="310042", registered=False)
    inc = start(fire(device="310042", site="310042"))
    inc.confirm("alice", "operator", at(10), unknown, center=CENTER)
    add_with = inc.add(
        fire(device="310042", site="310042", address=2, offset=20), at(20), unknown, center=CENTER
    )
    assert add_with is not None
    first, second = reports(inc)
    assert first.center == second.center == CENTER
    assert first.site.registered is False
    body = json.loads(first.model_dump_json())
    assert body["center"] == {
        "id": "SH-XH-FRMC",
        "name": "上海市徐汇区城市消防远程监控中心",
        "phone": "021-64119119",
    }


def test_the_registry_location_wins_and_both_are_carried() -> None:
    inc = start(fire(address=1, description="2F东走廊烟感", location="2F 东侧走廊 感烟探测器 (10 区 2 号)"))
    add(inc, fire(address=2, offset=1, description="机房温感"))  # not in the point table
    add(inc, fire(address=3, offset=2))  # neither
    inc.confirm("alice", "operator", at(5), SITE, center=CENTER)
    (report,) = reports(inc)
    registry, device, neither = report.alarms
    assert (registry.location, registry.location_source) == (
        "2F 东侧走廊 感烟探测器 (10 区 2 号)",
        "registry",
    )
    assert registry.point.description == "2F东走廊烟感"  # the device's own text goes along
    assert registry.point.location == "2F 东侧走廊 感烟探测器 (10 区 2 号)"
    assert (device.location, device.location_source) == ("机房温感", "device")
    assert (neither.location, neither.location_source) == (None, None)
    rows = [listing(inc, a) for a in inc.alarms]  # the operator's list agrees
    assert [r["location"] for r in rows] == [registry.location, device.location, None]


def test_each_update_names_the_alarms_new_since_the_previous_one() -> None:
    a, b = fire(address=1), fire(address=2, offset=3)
    inc = start(a)
    add(inc, b)
    inc.confirm("alice", "operator", at(10), SITE, center=CENTER)
    c = fire(address=3, offset=40)
    add(inc, c)
    add(inc, fire(address=3, offset=41))  # a repeat of c's point: merged, no update
    d = fire(address=4, offset=50)
    add(inc, d)
    first, second, third = reports(inc)
    assert first.new_alarm_ids == [a.id, b.id]
    assert second.new_alarm_ids == [c.id] and third.new_alarm_ids == [d.id]
    assert [(x.id, x.added_in) for x in third.alarms] == [(a.id, 1), (b.id, 1), (c.id, 2), (d.id, 3)]
    assert [r.alarm_count for r in (first, second, third)] == [2, 3, 4]
    assert all(r.alarms_omitted == 0 for r in (first, second, third))


def _big_alarm(i: int) -> FireAlarm:
    """A fire alarm as big as real ones: names in two languages, the device's text, the registry's."""
    return FireAlarm(
        id=f"{100120 + i % 50}.2.{i:020x}.alarm",
        device=str(100120 + i % 50),
        site=SITE_ID,
        occurred_at=LOCAL0 + timedelta(seconds=i),
        received_at=at(i),
        raw="40" * 80,
        source="component",
        point=Point(
            system_type=1,
            system_type_name="fire_alarm_system",
            system_type_zh="火灾报警系统",
            system_address=1,
            component_type=42,
            component_type_name="point_photoelectric_smoke_detector",
            component_type_zh="点型光电感烟火灾探测器",
            component_address=(i + 1) << 16 | 10,
            description=f"{i % 30}F东侧走廊感烟",
            location=f"{i % 30}F 东侧走廊 感烟探测器 (10 区 {i + 1} 号)",
        ),
        status=3,
        status_flags=["normal", "fire"],
    )


def test_a_large_incident_keeps_its_bodies_bounded() -> None:
    """125 detectors of one site: 125 updates, each a whole snapshot. They used to list every
    alarm (70 KB each at the end, 60 % of the stream's bytes); now at most the first and the
    newest ten, with counts, so no body passes 16 KB."""
    inc = start(_big_alarm(0))
    inc.confirm("alice", "operator", at(1), SITE, center=CENTER)
    for i in range(1, 125):
        inc.add(_big_alarm(i), at(i), SITE, center=CENTER)
    bodies = reports(inc)
    assert [r.update for r in bodies] == list(range(1, 126))
    sizes = [len(r.model_dump_json().encode()) for r in bodies]
    assert max(sizes) < 16_000, max(sizes)
    stored = [len(item.data.encode()) for item in inc.outbox]  # the events as the stream keeps them
    assert sum(stored) < 125 * 16_000
    last = bodies[-1]
    assert last.alarm_count == 125 and last.alarms_omitted == 105 and len(last.alarms) == 20
    ids = [a.id for a in last.alarms]
    assert ids[:10] == [_big_alarm(i).id for i in range(10)]  # where it started
    assert ids[10:] == [_big_alarm(i).id for i in range(115, 125)]  # where it is spreading
    assert last.new_alarm_ids == [_big_alarm(124).id] and last.new_alarm_ids[0] in ids
    for report in bodies:  # the new alarm of every update is in its body
        assert set(report.new_alarm_ids) <= {a.id for a in report.alarms}
        assert report.alarm_count == len(report.alarms) + report.alarms_omitted == report.update


def test_a_confirmation_of_many_pending_alarms_is_bounded_too() -> None:
    inc = start(_big_alarm(0))
    for i in range(1, 300):  # MAX_ALARMS of them pending when the operator confirms
        add(inc, _big_alarm(i))
    inc.confirm("alice", "operator", at(400), SITE, center=CENTER)
    (report,) = reports(inc)
    assert report.alarm_count == 300 and len(report.alarms) == 20 and len(report.new_alarm_ids) == 300
    assert len(report.model_dump_json().encode()) < 32_000
