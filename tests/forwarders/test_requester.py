"""Who decided: the NATS user the server attests, kept beside the operator name the seat claims.

The server side (a seat's request crossing into firegate's account carries a Nats-Request-Info
header the seat cannot forge) is tested against the shipped config in
tests/integration/test_permissions.py; here, what the lifecycle makes of the header.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from firegate.bus.events import FireConfirmed, FireDismissed, SiteInfo, parse_event
from firegate.forwarders.incident import listing, open_incident
from firegate.forwarders.requester import REQUEST_INFO_HEADER, attested_user
from tests.forwarders.test_lifecycle import Bench, alarm, bench, publish, stored  # noqa: F401
from tests.natsserver import wait_until


def _info(**fields: object) -> dict[str, str]:
    return {REQUEST_INFO_HEADER: json.dumps(fields)}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (_info(acc="OPS", user="seat-1", name="seat one", host="10.0.0.5"), "OPS/seat-1"),
        (
            _info(acc="OPS", user="UAOTCODXHM6IJIUY5OOH3C4SKGE3HHZ7MHUTYED7YWDNFBDPL4HS3KF4"),
            "OPS/UAOTCODXHM6IJIUY5OOH3C4SKGE3HHZ7MHUTYED7YWDNFBDPL4HS3KF4",
        ),
        (None, None),
        ({}, None),
        ({REQUEST_INFO_HEADER: ""}, None),
        ({REQUEST_INFO_HEADER: "not json"}, None),
        ({REQUEST_INFO_HEADER: "[1, 2]"}, None),
        (_info(acc="OPS"), None),  # an account without a user attests nobody
        (_info(acc="OPS", user=""), None),
        (_info(acc=7, user="seat-1"), None),
    ],
)
def test_the_attested_user_is_account_and_user_of_the_request_info(
    headers: dict[str, str] | None, expected: str | None
) -> None:
    assert attested_user(headers) == expected


def test_a_decision_carries_the_attested_user_beside_the_claimed_name() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    first = alarm(at=now)
    incident = open_incident(first)
    site = SiteInfo(id=first.site, registered=False)
    incident.add(first, now, site)
    incident.confirm("zhang", "operator", now, site, user="OPS/seat-1")
    (item,) = incident.outbox
    event = parse_event(item.data.encode())
    assert isinstance(event, FireConfirmed)
    assert (event.incident.confirmed_by, event.incident.confirmed_by_user) == ("zhang", "OPS/seat-1")
    row = listing(incident, incident.alarms[0])
    assert (row["decided_by"], row["decided_by_user"]) == ("zhang", "OPS/seat-1")

    other = open_incident(alarm(device="889", at=now))
    other.add(alarm(device="889", at=now), now, site)
    other.dismiss("false", "li", now, user="OPS/seat-2")
    dismissed = parse_event(other.outbox[0].data.encode())
    assert isinstance(dismissed, FireDismissed)
    assert (dismissed.dismissed_by, dismissed.dismissed_by_user) == ("li", "OPS/seat-2")


def test_a_policy_decision_attests_no_user() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    first = alarm(at=now)
    incident = open_incident(first)
    site = SiteInfo(id=first.site, registered=False)
    incident.add(first, now, site)
    incident.confirm("policy:manual_alarm", "policy", now, site)
    event = parse_event(incident.outbox[0].data.encode())
    assert isinstance(event, FireConfirmed) and event.incident.confirmed_by_user is None


async def test_the_lifecycle_records_the_header_only_where_it_is_told_the_server_attests_it(
    bench: Bench,  # noqa: F811
) -> None:
    forged = _info(acc="OPS", user="seat-9")
    for attest, expected in ((False, None), (True, "OPS/seat-9")):
        async with bench.lifecycle(attest=attest):
            a = alarm(device=f"7{int(attest)}", tag=str(attest))
            await publish(bench.js, a)

            async def listed(alarm_id: str = a.id) -> bool:
                return any(r["id"] == alarm_id for r in await bench.rows())

            await wait_until(listed, 5)
            body = json.dumps({"id": a.id, "operator": "zhang"}).encode()
            reply = await bench.nc.request("firegate.alarm.confirm", body, timeout=5, headers=forged)
            answer = json.loads(reply.data)
            assert answer["ok"] and answer["decided_by"] == "zhang", answer
            assert answer["decided_by_user"] == expected
            row = next(r for r in await bench.rows() if r["id"] == a.id)
            assert row["decided_by_user"] == expected
    confirmed = [e for e in await stored(bench.nc, "fire.confirmed.>") if isinstance(e, FireConfirmed)]
    assert sorted(str(e.incident.confirmed_by_user) for e in confirmed) == ["None", "OPS/seat-9"]
