"""The alarm lifecycle as a pure state machine (no I/O): incidents, alarms, policies.

An incident groups the fire alarms of one site that arrive within a window of each
other. It is pending until an operator or a policy decides: confirmed (a real fire:
the 119 side gets it, and later alarms of the site update it) or dismissed (false or
test). An alarm that repeats a point already open in the incident is merged into the
earlier one as a duplicate. Every transition appends the event that records it (who,
when, why, how long it took) to the incident's outbox; the service stores the incident
first and publishes the outbox after, so a crash in between republishes the same
events under the same message ids.

Test-mode alarms (the device reported test mode) form incidents of their own that no
policy ever confirms.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from firegate.bus.events import (
    CenterInfo,
    Confirmation,
    DeviceTime,
    FireAlarm,
    FireConfirmed,
    FireDismissed,
    IncidentAlarm,
    IncidentReport,
    LocationSource,
    Point,
    SiteInfo,
    UtcTime,
)
from firegate.forwarders.errors import AlarmError

AlarmState = Literal["pending", "confirmed", "dismissed", "merged"]
IncidentState = Literal["pending", "confirmed", "dismissed"]
DismissReason = Literal["false", "test"]
DISMISS_REASONS: tuple[DismissReason, ...] = ("false", "test")
MAX_ALARMS = 300  # per incident: about 1 KB each stored plus its 119 snapshot in the outbox, < 1 MB
# The 119 body lists at most the first REPORT_FIRST and the newest REPORT_LAST confirmed alarms
# (where the fire started, where it is spreading), and counts the rest: every update is a whole
# snapshot stored in the stream, so an incident of n alarms would otherwise store O(n^2) bytes
# (70 KB per update at 125 alarms).
REPORT_FIRST = 10
REPORT_LAST = 10


@dataclass(frozen=True, slots=True)
class Policy:
    """When firegate confirms a fire without an operator (config ``alarms.auto_confirm``)."""

    incident_window: float = 600.0
    manual: bool = True  # a manual call point or the UITD's manual alarm key
    detectors: int = 2  # distinct detectors of a site within detector_window; 0 disables
    detector_window: float = 120.0
    escalate_after: float | None = 300.0  # pending this long: confirm; None disables


class StoredPoint(Point):
    """A point as stored in an incident: fields a newer version adds survive our rewrite."""

    model_config = ConfigDict(frozen=True, extra="allow")


class AlarmRecord(BaseModel):
    """One fire alarm inside an incident."""

    model_config = ConfigDict(extra="allow")  # stored: a newer version's fields survive our rewrite
    id: str
    device: str
    site: str
    state: AlarmState = "pending"
    occurred_at: DeviceTime | None
    received_at: UtcTime
    source: str
    manual: bool
    test: bool
    origin: str
    point: StoredPoint
    status_flags: list[str] = []
    decided_at: UtcTime | None = None
    decided_by: str | None = None
    decided_by_user: str | None = None  # the NATS user the server attested (<account>/<user>)
    reason: str | None = None
    merged_into: str | None = None
    added_in: int | None = None  # the 119 update that first carried it

    @classmethod
    def from_event(cls, event: FireAlarm) -> AlarmRecord:
        return cls(
            id=event.id,
            device=event.device,
            site=event.site,
            occurred_at=event.occurred_at,
            received_at=event.received_at,
            source=event.source,
            manual=event.manual,
            test=event.test,
            origin=event.origin,
            point=StoredPoint(**event.point.model_dump()),
            status_flags=list(event.status_flags),
        )

    @property
    def point_key(self) -> tuple[object, ...]:
        """The detector this alarm comes from: a repeat of it is a duplicate."""
        p = self.point
        return (
            self.device,
            self.source,
            p.system_type,
            p.system_address,
            p.component_type,
            p.component_address,
        )

    @property
    def location(self) -> str | None:
        return self.located[0]

    @property
    def located(self) -> tuple[str | None, LocationSource | None]:
        """Where, and from whom. The registry's point table wins over the device's description:
        the center keeps the table and checks it when a site is commissioned, while the text
        in the device (at most 31 bytes, typed into the panel by its installer) is often terse,
        stale after a refit, or missing. Both go to 119 all the same (`point`)."""
        if self.point.location:
            return self.point.location, "registry"
        if self.point.description:
            return self.point.description, "device"
        return None, None

    def for_119(self) -> IncidentAlarm:
        location, source = self.located
        return IncidentAlarm(
            id=self.id,
            device=self.device,
            occurred_at=self.occurred_at,
            received_at=self.received_at,
            source=self.source,
            manual=self.manual,
            point=Point(**self.point.model_dump(include=set(Point.model_fields))),
            location=location,
            location_source=source,
            added_in=self.added_in,
        )


class OutboxItem(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    subject: str
    msg_id: str
    data: str


class Incident(BaseModel):
    """The stored state of one incident (one KV value)."""

    model_config = ConfigDict(extra="allow")
    id: str
    site: str
    test: bool
    state: IncidentState = "pending"
    opened_at: UtcTime
    last_alarm_at: UtcTime
    alarms: list[AlarmRecord]
    extra_alarms: int = Field(0, description="alarms beyond MAX_ALARMS, counted only")
    updates: int = Field(0, description="fire_confirmed events published so far")
    decided_at: UtcTime | None = None
    decided_by: str | None = None  # the operator's name as claimed, or policy:<name>
    decided_by_user: str | None = None  # the NATS user the server attested (<account>/<user>)
    confirmation: Confirmation | None = None
    reason: DismissReason | None = None
    note: str | None = None
    outbox: list[OutboxItem] = []

    # -- queries

    def alarm(self, alarm_id: str) -> AlarmRecord | None:
        return next((a for a in self.alarms if a.id == alarm_id), None)

    @property
    def open(self) -> bool:
        return self.state != "dismissed"

    def accepts(self, alarm: FireAlarm, policy: Policy) -> bool:
        """Does a new alarm of this site belong to this incident? A pending one takes every alarm
        (nobody has looked at it yet); a confirmed one those within the window of its last alarm."""
        if not self.open or alarm.test != self.test:
            return False
        gap = (alarm.received_at - self.last_alarm_at).total_seconds()
        return self.state == "pending" or gap <= policy.incident_window

    def closed_since(self, policy: Policy) -> datetime | None:
        """When this incident stopped taking alarms; None while pending (it takes every alarm)."""
        if self.state == "dismissed":
            return self.decided_at
        if self.state == "confirmed":
            return self.last_alarm_at + timedelta(seconds=policy.incident_window)
        return None

    # -- transitions (each returns nothing and mutates self; the caller stores it by CAS)

    def add(
        self, event: FireAlarm, now: datetime, site: SiteInfo, *, center: CenterInfo | None = None
    ) -> AlarmRecord | None:
        """Take a new alarm; None if it is already here (a redelivery)."""
        if self.alarm(event.id) is not None:
            return None
        record = AlarmRecord.from_event(event)
        self.last_alarm_at = max(self.last_alarm_at, record.received_at)
        if len(self.alarms) >= MAX_ALARMS:
            self.extra_alarms += 1
            return None
        earlier = next(
            (a for a in self.alarms if a.point_key == record.point_key and a.state != "merged"), None
        )
        self.alarms.append(record)
        if earlier is not None:
            record.state, record.merged_into = "merged", earlier.id
            record.decided_at, record.decided_by, record.reason = now, "policy:duplicate", "duplicate"
            self._dismissed_event([record], "duplicate", "policy:duplicate", now, merged_into=earlier.id)
        elif self.state == "confirmed":
            # the fire is already confirmed: a new detector of the site updates the 119 incident
            self._confirm_alarms([record], now, site, center)
        return record

    def confirm(
        self,
        by: str,
        how: Confirmation,
        now: datetime,
        site: SiteInfo,
        note: str | None = None,
        *,
        center: CenterInfo | None = None,
        user: str | None = None,
    ) -> list[AlarmRecord]:
        self._decidable()
        self.state, self.decided_at, self.decided_by = "confirmed", now, by
        self.decided_by_user = user
        self.confirmation, self.note = how, note
        pending = [a for a in self.alarms if a.state == "pending"]
        self._confirm_alarms(pending, now, site, center)
        return pending

    def dismiss(
        self,
        reason: str,
        by: str,
        now: datetime,
        note: str | None = None,
        *,
        seen: str | None = None,
        user: str | None = None,
    ) -> list[AlarmRecord]:
        """Close the incident as false or test. ``seen``: the alarm the operator named; newer
        pending alarms refuse the dismissal, since nobody has looked at them yet (a real fire
        on another floor must not be closed with a faulty detector's false alarm)."""
        if reason not in DISMISS_REASONS:
            raise AlarmError("bad_reason", f"reason must be one of {', '.join(DISMISS_REASONS)}", reason)
        self._decidable()
        if seen is not None:
            # filing order, not time: alarms of one frame share a time, and a spool replay files
            # old ones late; either way the operator has not seen what was filed after
            index = next((i for i, a in enumerate(self.alarms) if a.id == seen), None)
            if index is None:
                raise AlarmError("unknown", f"alarm {seen} is not in incident {self.id}", seen)
            newer = [a for a in self.alarms[index + 1 :] if a.state == "pending"]
            if newer:
                raise AlarmError(
                    "changed",
                    f"{len(newer)} newer alarm(s) of this incident arrived after {seen} (the newest: "
                    f"{newer[-1].id}); review them, then dismiss the newest or the incident {self.id}",
                    [a.id for a in newer],
                )
        self.state, self.decided_at, self.decided_by, self.note = "dismissed", now, by, note
        self.decided_by_user = user
        self.reason = "false" if reason == "false" else "test"
        pending = [a for a in self.alarms if a.state == "pending"]
        for a in pending:
            a.state, a.decided_at, a.decided_by, a.reason = "dismissed", now, by, reason
            a.decided_by_user = user
        self._dismissed_event(pending, self.reason, by, now, note=note, user=user)
        return pending

    def _decidable(self) -> None:
        if self.state != "pending":
            raise AlarmError("already_decided", f"incident {self.id} is already {self.state}", self.state)
        if not self.alarms:
            raise AlarmError("empty", f"incident {self.id} has no alarm to decide on", self.id)

    # -- policies

    def due_policy(self, now: datetime, policy: Policy) -> str | None:
        """The policy that confirms this incident now, if any. Test incidents never auto-confirm."""
        if self.state != "pending" or self.test:
            return None
        live = [a for a in self.alarms if a.state == "pending" and not a.test]
        if not live:
            return None
        if policy.manual and any(a.manual for a in live):
            return "manual_alarm"
        if policy.detectors > 0 and _detectors_within(live, policy.detector_window) >= policy.detectors:
            return "multi_detector"
        deadline = self.next_deadline(policy)
        return "escalation" if deadline is not None and now >= deadline else None

    def next_deadline(self, policy: Policy) -> datetime | None:
        """When escalation would confirm this incident (for the scheduler)."""
        if self.state != "pending" or self.test or policy.escalate_after is None:
            return None
        return self.opened_at + timedelta(seconds=policy.escalate_after)

    # -- events

    def _after(self, now: datetime) -> float:
        return round((now - self.opened_at).total_seconds(), 3)

    def _confirm_alarms(
        self, alarms: list[AlarmRecord], now: datetime, site: SiteInfo, center: CenterInfo | None
    ) -> None:
        """Confirm these alarms of a confirmed incident and record the 119 update."""
        assert self.decided_by is not None and self.confirmation is not None and self.decided_at is not None
        who = self.decided_by
        self.updates += 1
        for a in alarms:
            a.state, a.decided_at, a.decided_by, a.added_in = "confirmed", now, who, self.updates
            a.decided_by_user = self.decided_by_user
        first = self.alarms[0]
        confirmed = [a for a in self.alarms if a.state == "confirmed"]
        listed = confirmed
        if len(confirmed) > REPORT_FIRST + REPORT_LAST:
            listed = confirmed[:REPORT_FIRST] + confirmed[-REPORT_LAST:]
        report = IncidentReport(
            incident_id=self.id,
            update=self.updates,
            center=center or CenterInfo(),
            site=site,
            alarms=[a.for_119() for a in listed],
            alarm_count=len(confirmed),
            alarms_omitted=len(confirmed) - len(listed),
            new_alarm_ids=[a.id for a in alarms],
            first_alarm_at=self.opened_at,
            confirmed_at=self.decided_at,
            confirmed_by=who,
            confirmed_by_user=self.decided_by_user,
            confirmation=self.confirmation,
            note=self.note,
            test=self.test,
        )
        self._emit(
            FireConfirmed(
                id=f"{self.id}.confirmed.{self.updates}",
                incident=report,
                **self._envelope(first, alarms, now),
            )
        )

    def _dismissed_event(
        self,
        alarms: list[AlarmRecord],
        reason: Literal["false", "test", "duplicate"],
        by: str,
        now: datetime,
        *,
        merged_into: str | None = None,
        note: str | None = None,
        user: str | None = None,
    ) -> None:
        first = alarms[0] if alarms else self.alarms[0]
        suffix = f"merged.{first.id}" if reason == "duplicate" else "dismissed"
        self._emit(
            FireDismissed(
                id=f"{self.id}.{suffix}",
                incident_id=self.id,
                reason=reason,
                dismissed_by=by,
                dismissed_by_user=user,
                merged_into=merged_into,
                note=note,
                **self._envelope(first, alarms, now),
            )
        )

    def _envelope(self, first: AlarmRecord, alarms: list[AlarmRecord], now: datetime) -> dict[str, Any]:
        """What a transition event shares; it is published on the incident's site
        (``fire.confirmed.<site>``, ``fire.dismissed.<site>``), whichever device ``first`` is."""
        return {
            "device": first.device,
            "site": self.site,
            "occurred_at": first.occurred_at,
            "received_at": now,
            "origin": first.origin,
            "test": self.test,
            "alarm_ids": [a.id for a in alarms],
            "after_s": self._after(now),
        }

    def _emit(self, event: FireConfirmed | FireDismissed) -> None:
        self.outbox.append(OutboxItem(subject=event.subject, msg_id=event.id, data=event.model_dump_json()))


def _detectors_within(alarms: list[AlarmRecord], window: float) -> int:
    """The most distinct detectors whose alarms fall within ``window`` seconds of each other."""
    ordered = sorted(alarms, key=lambda a: a.received_at)
    best, start = 0, 0
    for end, alarm in enumerate(ordered):
        while (alarm.received_at - ordered[start].received_at).total_seconds() > window:
            start += 1
        best = max(best, len({a.point_key for a in ordered[start : end + 1]}))
    return best


def incident_id(first_alarm_id: str) -> str:
    """Deterministic from the first alarm, so a redelivered alarm recreates the same incident."""
    return "inc-" + hashlib.blake2b(first_alarm_id.encode(), digest_size=8).hexdigest()


def open_incident(event: FireAlarm) -> Incident:
    return Incident(
        id=incident_id(event.id),
        site=event.site,
        test=event.test,
        opened_at=event.received_at,
        last_alarm_at=event.received_at,
        alarms=[],
    )


def listing(incident: Incident, alarm: AlarmRecord) -> dict[str, object]:
    """One row of `firegate alarm list --json` (the CLI contract: id, device, site, kind, state,
    occurred_at, received_at, location, and more)."""
    p = alarm.point
    return {
        "id": alarm.id,
        "device": alarm.device,
        "site": alarm.site,
        "kind": "alarm",
        "state": alarm.state,
        "occurred_at": alarm.occurred_at.isoformat() if alarm.occurred_at else None,
        "received_at": alarm.received_at.isoformat().replace("+00:00", "Z"),
        "location": alarm.location,
        "incident": incident.id,
        "incident_state": incident.state,
        "manual": alarm.manual,
        "test": alarm.test,
        "source": alarm.source,
        "component_type": p.component_type,
        "component_type_zh": p.component_type_zh,
        "description": p.description,
        "decided_at": alarm.decided_at.isoformat().replace("+00:00", "Z") if alarm.decided_at else None,
        "decided_by": alarm.decided_by,
        "decided_by_user": alarm.decided_by_user,
        "reason": alarm.reason,
        "merged_into": alarm.merged_into,
    }
