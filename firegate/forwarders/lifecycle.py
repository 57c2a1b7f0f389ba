"""The alarm lifecycle service: fire alarms in, decisions out.

It consumes ``fire.alarm.>`` through the durable consumer ``lifecycle`` (any number of
instances share it), files each alarm into its site's incident (`AlarmStore`, compare-and-set
in a KV bucket), applies the auto-confirm policies, answers operators on
``firegate.alarm.<action>``, and publishes every transition (``fire.confirmed.<site>``,
``fire.dismissed.<site>``) from the incident's outbox under a deterministic message id.

Order of a change: store the incident (with its outbox), then publish, then clear the outbox.
A crash anywhere leaves either nothing done (the alarm is redelivered) or a stored outbox that
the next tick of any instance republishes; the stream's duplicate window drops the copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from firegate.aio import stop_if_cancelled
from firegate.bus.events import CenterInfo, FireAlarm, SiteInfo, parse_event
from firegate.bus.jetstream import MSG_ID_HEADER
from firegate.bus.permissions import refusals
from firegate.forwarders import api
from firegate.forwarders import metrics as m
from firegate.forwarders.consumer import pull_forever, subscribe
from firegate.forwarders.courier import REPLAY_FOR
from firegate.forwarders.errors import AlarmError
from firegate.forwarders.incident import Incident, Policy, listing, open_incident
from firegate.forwarders.precedence import Precedence
from firegate.forwarders.requester import attested_user
from firegate.forwarders.store import AlarmStore, Conflict
from firegate.forwarders.supervise import restarting

log = logging.getLogger(__name__)
CAS_ATTEMPTS = 50
LIST_LIMIT = 2000  # rows per answer: a NATS message is at most 1 MB by default
API_WORKERS = 8
API_QUEUE = 256


def _now() -> datetime:
    return datetime.now(UTC)


class Lifecycle:
    def __init__(
        self,
        nc: NATS,
        store: AlarmStore,
        site_info: Callable[[str], SiteInfo],
        policy: Policy,
        *,
        stream: str = "FIRE",
        durable: str = "lifecycle",
        ack_wait: float = 30.0,
        retention: float = 7 * 86400.0,
        tick: float = 1.0,
        publish_timeout: float = 5.0,
        resync: float = 30.0,
        catch_up: float = 600.0,
        precedence: Precedence | None = None,
        center: CenterInfo | None = None,
        attest: bool = True,
    ) -> None:
        self.nc = nc
        # record the requester the NATS server attests (Nats-Request-Info); off on the embedded
        # server, where any local client could write that header itself
        self.attest = attest
        self.center = center or CenterInfo()  # in every 119 body: who sends it
        self.precedence = precedence or Precedence()  # shared with the process's other consumers
        self.js = nc.jetstream()
        self.store = store
        self.site_info = site_info
        self.policy = policy
        self.stream = stream
        self.durable = durable
        self.ack_wait = ack_wait
        self.retention = retention
        self.tick = tick
        self.publish_timeout = publish_timeout
        self.resync = resync
        self.catch_up = catch_up
        self.view: dict[str, Incident] = {}  # every retained incident, kept current by a KV watch
        self.view_ready = asyncio.Event()
        self.ready = asyncio.Event()  # consuming alarms
        self.answering = asyncio.Event()  # serving the alarm API

    # -- the service

    async def run(self) -> None:
        """Until cancelled. Every part retries on its own: NATS outages never end the service."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(restarting("alarm lifecycle view", self._watch, self._failed("view")))
            await self.view_ready.wait()
            tg.create_task(restarting("alarm lifecycle API", self._serve_api, self._failed("api")))
            tg.create_task(restarting("alarm lifecycle consumer", self._consume, self._failed("consumer")))
            tg.create_task(restarting("alarm lifecycle ticker", self._ticker, self._failed("ticker")))

    def readiness(self) -> tuple[bool, str]:
        """The alarm_lifecycle check: consuming alarms and answering operators."""
        if self.ready.is_set() and self.answering.is_set():
            return True, "consuming and answering"
        if self.ready.is_set():
            return False, "consuming, but the alarm API is not served (see the log)"
        return False, "starting"

    @staticmethod
    def _failed(what: str) -> Callable[[], None]:
        return m.lifecycle_errors.labels(reason=what).inc

    async def _watch(self) -> None:
        async for incident_id, incident in self.store.watch():
            if not incident_id:
                self.view_ready.set()
                continue
            if incident is None:
                self.view.pop(incident_id, None)
            else:
                self.view[incident_id] = incident
            self._count_states()

    def _count_states(self) -> None:
        counts = dict.fromkeys(m.ALARM_STATES, 0)
        pending = 0
        for incident in self.view.values():
            pending += incident.state == "pending"
            for alarm in incident.alarms:
                counts[alarm.state] += 1
        for state, n in counts.items():
            m.alarm_state[state].set(n)
        m.incidents_open.set(pending)

    async def _consume(self) -> None:
        # a new lifecycle takes the recent alarms only (catch_up): an upgrade must not file, and
        # escalate to 119, months of old alarms
        sub = await subscribe(
            self.js,
            self.stream,
            self.durable,
            ["fire.alarm.>"],
            start_window=self.catch_up,
            ack_wait=self.ack_wait,
        )
        await pull_forever(sub, self._take, self.ready)

    async def _take(self, msg: Msg) -> None:
        with self.precedence.fire_work():
            await self._take_alarm(msg)

    async def _take_alarm(self, msg: Msg) -> None:
        if REPLAY_FOR in (msg.headers or {}):
            await msg.ack()  # a dead letter replayed for a forwarder: not a new report
            return
        try:
            event = parse_event(msg.data)
        except ValidationError as e:
            m.alarms_ingested.labels(result="unreadable").inc()
            log.error("alarm lifecycle: unreadable event on %s, skipped: %s", msg.subject, e)
            await msg.ack()
            return
        if not isinstance(event, FireAlarm):
            await msg.ack()
            return
        try:
            await self.ingest(event)
        except Exception as e:  # one alarm's trouble never holds up the rest of the batch
            m.lifecycle_errors.labels(reason="ingest").inc()
            transient = isinstance(e, TimeoutError | nats.errors.Error | Conflict)
            log.log(
                logging.WARNING if transient else logging.ERROR,
                "alarm lifecycle: %s not filed yet, redelivered: %r",
                event.id,
                e,
                exc_info=not transient,
                extra={"device": event.device, "event_id": event.id},
            )
            with contextlib.suppress(Exception):  # backs off to a minute for a lasting failure
                await msg.nak(delay=min(60.0, 2.0 ** min(msg.metadata.num_delivered, 6)))
            return
        with contextlib.suppress(Exception):  # unacked, it comes back and changes nothing
            await msg.ack()

    # -- alarms in

    async def ingest(self, event: FireAlarm) -> Incident:
        """File one fire alarm (idempotent: a redelivery changes nothing), then apply policies."""
        now = _now()
        site = self.site_info(event.site)
        known = await self.store.incident_of(event.id) or self._resolve_alarm(event.id)
        if known is not None and not await self._holds(known, event.id):
            known = None  # an index left by a withdrawn or forgotten incident
        if known is None:
            # an earlier delivery may have stored it and died before the index
            loaded = await self.store.load(open_incident(event).id)
            if loaded is not None and loaded[0].alarm(event.id) is not None:
                known = loaded[0].id
        if known is not None:
            # stored before: only the index, the policies and the outbox may be left to do
            m.alarms_ingested.labels(result="duplicate_delivery").inc()
            incident_id = known
        else:
            incident_id = (await self._file(event, now, site)).id
        await self.store.remember(event.id, incident_id)
        await self._apply_policies(incident_id, now)
        await self._flush(incident_id)
        incident = await self._current(incident_id)
        if incident is None:
            raise AlarmError("unknown", f"no incident {incident_id}", incident_id)
        return incident

    async def _current(self, incident_id: str) -> Incident | None:
        """The incident as this instance last stored or saw it (every local change updates the
        view); the bucket only when the view has not got it yet. Decisions reread the bucket
        anyway (`_change`), and the ticker and resync pick up what other instances left."""
        incident = self.view.get(incident_id)
        if incident is None:
            loaded = await self.store.load(incident_id)
            incident = loaded[0] if loaded else None
        return incident

    async def _holds(self, incident_id: str, alarm_id: str) -> bool:
        loaded = await self.store.load(incident_id)
        return loaded is not None and loaded[0].alarm(alarm_id) is not None

    async def _file(self, event: FireAlarm, now: datetime, site: SiteInfo) -> Incident:
        """Join the site's open incident, or open one. A new incident is stored before the head
        points at it, so another instance never sees a head without its incident; of two that
        open one at once, the head's compare-and-set picks one and the other withdraws."""
        head_key = f"{event.site}.test" if event.test else event.site
        for _ in range(CAS_ATTEMPTS):
            head_id, head_rev = await self.store.head(head_key)
            loaded = await self.store.load(head_id) if head_id else None
            if loaded is not None and loaded[0].alarm(event.id) is not None:
                return loaded[0]  # filed by an earlier delivery, whatever happened to it since
            if loaded is not None and loaded[0].accepts(event, self.policy):
                incident, revision = loaded
                incident.add(event, now, site, center=self.center)
                try:
                    await self.store.save(incident, revision)
                except Conflict:
                    continue
                m.alarms_ingested.labels(result="joined").inc()
                self._count_merge(incident, event.id)
                self.view[incident.id] = incident
                return incident
            incident = open_incident(event)
            incident.add(event, now, site, center=self.center)
            try:
                created = await self.store.save(incident, None)
            except Conflict:
                continue  # it exists: an earlier delivery of this alarm made it (found above next)
            try:
                await self.store.set_head(head_key, incident.id, head_rev)
            except Conflict:
                # another instance opened one first: join it, unless ours was acted on meanwhile
                # (it was in every view for a moment): then it stays, decided as it is
                if await self.store.withdraw(incident.id, created):
                    continue
                kept = await self.store.load(incident.id)
                if kept is None:
                    continue
                self.view[incident.id] = kept[0]
                return kept[0]
            m.alarms_ingested.labels(result="new").inc()
            self.view[incident.id] = incident
            log.info(
                "incident %s opened at site %s by alarm %s",
                incident.id,
                event.site,
                event.id,
                extra={"device": event.device, "site": event.site, "incident": incident.id},
            )
            return incident
        raise Conflict(f"head.{head_key}")

    def _resolve_alarm(self, alarm_id: str) -> str | None:
        return next((i.id for i in self.view.values() if i.alarm(alarm_id) is not None), None)

    def _count_merge(self, incident: Incident, alarm_id: str) -> None:
        alarm = incident.alarm(alarm_id)
        if alarm is not None and alarm.state in ("merged", "confirmed"):
            how = "policy" if alarm.state == "merged" else "incident"
            m.alarm_transitions.labels(state=alarm.state, how=how).inc()

    async def _change(self, incident_id: str, change: Callable[[Incident], object]) -> Incident:
        """Read, apply a pure transition, write back if unchanged meanwhile; retry on conflicts."""
        for _ in range(CAS_ATTEMPTS):
            loaded = await self.store.load(incident_id)
            if loaded is None:
                raise AlarmError("unknown", f"no incident {incident_id}", incident_id)
            incident, revision = loaded
            before = incident.model_dump_json()
            change(incident)
            if incident.model_dump_json() == before:
                self.view[incident.id] = incident  # what is stored, even if the watch lags
                return incident
            try:
                await self.store.save(incident, revision)
            except Conflict:
                continue
            self.view[incident.id] = incident
            return incident
        raise Conflict(f"incident.{incident_id}")

    # -- decisions

    async def _apply_policies(self, incident_id: str, now: datetime) -> None:
        incident = await self._current(incident_id)
        if incident is None:
            return
        name = incident.due_policy(now, self.policy)
        if name is None:
            return
        with contextlib.suppress(AlarmError):  # decided meanwhile (an operator, another instance)
            await self._decide(incident_id, f"policy:{name}", "confirmed", None, None, now)

    async def _decide(
        self,
        incident_id: str,
        by: str,
        state: str,
        reason: str | None,
        note: str | None,
        now: datetime,
        seen: str | None = None,
        user: str | None = None,
    ) -> tuple[Incident, bool]:
        """Apply a decision; (incident, False) if it was already so decided (idempotent: an
        operator retrying after a lost answer succeeds). The answer comes once the decision is
        stored; publishing it is retried by the ticker if NATS is slow right now."""
        how: Literal["operator", "policy"] = "policy" if by.startswith("policy:") else "operator"

        def change(incident: Incident) -> None:
            if state == "confirmed":
                incident.confirm(
                    by, how, now, self.site_info(incident.site), note, center=self.center, user=user
                )
            else:
                incident.dismiss(reason or "", by, now, note, seen=seen, user=user)

        try:
            incident = await self._change(incident_id, change)
        except AlarmError as e:
            if e.reason == "already_decided" and e.value == state:
                loaded = await self.store.load(incident_id)
                current = loaded[0] if loaded else None
                if current is not None and (state == "confirmed" or current.reason == reason):
                    return current, False
            raise
        m.alarm_transitions.labels(state=incident.state, how=how).inc()
        m.alarm_decision_seconds.labels(how=how).observe((now - incident.opened_at).total_seconds())
        level = logging.WARNING if incident.state == "confirmed" else logging.INFO
        log.log(
            level,
            "incident %s %s by %s%s%s",
            incident.id,
            incident.state,
            by,
            f" (NATS user {user})" if user else "",
            f" as {reason}" if reason else "",
        )
        try:
            await self._flush(incident.id)
        except (TimeoutError, nats.errors.Error, Conflict) as e:
            log.warning(
                "incident %s: decision stored, its event not yet published (retried): %r", incident.id, e
            )
        return incident, True

    def _resolve(self, some_id: str) -> str | None:
        """An incident id, or the incident of an alarm id (from the view)."""
        return some_id if some_id in self.view else self._resolve_alarm(some_id)

    async def _incident_for(self, some_id: str) -> str:
        incident_id = self._resolve(some_id) or await self.store.incident_of(some_id)
        if incident_id is None:
            raise AlarmError("unknown", f"no alarm or incident {some_id}", some_id)
        return incident_id

    async def confirm(
        self, some_id: str, operator: str, note: str | None = None, *, user: str | None = None
    ) -> tuple[Incident, bool]:
        """Confirm the incident of an alarm (or an incident by id): a real fire, to 119.
        ``operator`` is the name the requester claims, ``user`` the NATS user the server attests."""
        incident_id = await self._incident_for(some_id)
        return await self._decide(incident_id, operator, "confirmed", None, note, _now(), user=user)

    async def dismiss(
        self, some_id: str, reason: str, operator: str, note: str | None = None, *, user: str | None = None
    ) -> tuple[Incident, bool]:
        """Dismiss the incident of an alarm, refused if newer alarms arrived since that alarm;
        by incident id, the whole incident."""
        incident_id = await self._incident_for(some_id)
        seen = None if some_id == incident_id else some_id
        return await self._decide(incident_id, operator, "dismissed", reason, note, _now(), seen, user)

    def rows(self, state: str | None = None, site: str | None = None) -> list[dict[str, object]]:
        out = [
            listing(incident, alarm)
            for incident in self.view.values()
            for alarm in incident.alarms
            if (state is None or alarm.state == state) and (site is None or alarm.site == site)
        ]
        out.sort(key=lambda r: str(r["received_at"]), reverse=True)
        return out

    # -- outbox

    async def _flush(self, incident_id: str) -> None:
        """Publish the incident's stored events, then remove them from the outbox."""
        incident = await self._current(incident_id)
        if incident is None or not incident.outbox:
            return
        sent: set[str] = set()
        for item in incident.outbox:
            await self.js.publish(
                item.subject,
                item.data.encode(),
                timeout=self.publish_timeout,
                stream=self.stream,
                headers={MSG_ID_HEADER: item.msg_id},
            )
            sent.add(item.msg_id)

        def drop(i: Incident) -> None:
            i.outbox = [o for o in i.outbox if o.msg_id not in sent]

        await self._change(incident_id, drop)

    async def _resync(self) -> None:
        """Reconcile the view with the bucket: a watch that silently stalled (a NATS restart)
        must not hide a pending incident from escalation for long."""
        stored = await self.store.incident_ids()
        for gone in set(self.view) - stored:
            self.view.pop(gone, None)
        for incident_id in stored:
            known = self.view.get(incident_id)
            if known is None or known.state == "pending" or known.outbox:
                loaded = await self.store.load(incident_id)
                if loaded is not None:
                    self.view[incident_id] = loaded[0]
        self._count_states()

    async def _ticker(self) -> None:
        """Escalation deadlines, outboxes left by a crash, retention, and a periodic resync."""
        next_resync = asyncio.get_running_loop().time() + self.resync
        while True:
            stop_if_cancelled()
            await asyncio.sleep(self.tick)
            if asyncio.get_running_loop().time() >= next_resync:
                next_resync += self.resync
                try:
                    await self._resync()
                except (TimeoutError, nats.errors.Error) as e:
                    m.lifecycle_errors.labels(reason="resync").inc()
                    log.warning("alarm lifecycle: resync failed (retried): %r", e)
            now = _now()
            for incident in list(self.view.values()):
                try:
                    if incident.outbox:
                        await self._flush(incident.id)
                    if incident.due_policy(now, self.policy) is not None:
                        await self._apply_policies(incident.id, now)
                    closed = incident.closed_since(self.policy)
                    if closed is not None and closed + timedelta(seconds=self.retention) < now:
                        await self.store.forget(incident)
                        self.view.pop(incident.id, None)
                except (TimeoutError, nats.errors.Error, Conflict, AlarmError) as e:
                    m.lifecycle_errors.labels(reason="tick").inc()
                    log.warning("alarm lifecycle: incident %s: %r (retried next tick)", incident.id, e)

    # -- the API

    async def _serve_api(self) -> None:
        """Requests are queued to a few workers: nats-py runs one subscription's callbacks one at
        a time, and a confirm waiting on a slow KV must not hold up the next operator."""
        requests: asyncio.Queue[Msg] = asyncio.Queue(API_QUEUE)

        async def enqueue(msg: Msg) -> None:
            try:
                requests.put_nowait(msg)
            except asyncio.QueueFull:
                busy = {"ok": False, "error": "busy", "detail": "too many requests queued; try again"}
                with contextlib.suppress(Exception):
                    await msg.respond(json.dumps(busy).encode())

        async def worker() -> None:
            while True:
                stop_if_cancelled()
                await self._answer(await requests.get())

        subs = []
        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(API_WORKERS):
                    tg.create_task(worker())
                subjects = [f"{api.PREFIX}.{action}" for action in api.ACTIONS]
                for subject in subjects:
                    subs.append(await self.nc.subscribe(subject, queue=api.QUEUE, cb=enqueue))
                # a subscription the server refused (permissions) would receive nothing, silently
                await refusals.subscribed(self.nc, subjects)
                self.answering.set()
                # the body stays in the group: on 3.11 a child failing after the body has ended
                # leaves this task cancelled for good, and `restarting` could never run it again
                while True:
                    await asyncio.sleep(1.0)
                    refusals.check(subjects)  # refused after all (late, or on a reconnect)
        finally:
            self.answering.clear()
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _answer(self, msg: Msg) -> None:
        action = msg.subject.rsplit(".", 1)[-1]
        try:
            body = json.loads(msg.data or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the request body must be a JSON object")
            user = attested_user(msg.headers) if self.attest else None
            answer = await self._handle(action, body, user)
        except AlarmError as e:
            answer = {"ok": False, "error": e.reason, "detail": e.detail}
        except (ValueError, TypeError) as e:
            answer = {"ok": False, "error": "bad_request", "detail": str(e)}
        except (TimeoutError, nats.errors.Error, Conflict) as e:
            answer = {"ok": False, "error": "unavailable", "detail": f"try again: {e!r}"}
        except Exception as e:  # an operator always gets an answer, even from a bug
            log.exception("alarm lifecycle: %s request failed", action)
            answer = {"ok": False, "error": "internal", "detail": repr(e)}
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps(answer, ensure_ascii=False).encode())

    async def _handle(self, action: str, body: dict[str, Any], user: str | None = None) -> dict[str, Any]:
        if action == "list":
            rows = self.rows(body.get("state"), body.get("site"))
            limit = min(max(1, int(body.get("limit") or LIST_LIMIT)), LIST_LIMIT)
            return {"ok": True, "alarms": rows[:limit], "total": len(rows)}
        some_id = body.get("id")
        if not isinstance(some_id, str) or not some_id:
            raise ValueError("'id' (an alarm or incident id) is required")
        operator = str(body.get("operator") or "operator")
        note = body.get("note")
        note = str(note) if note else None
        if action == "confirm":
            incident, changed = await self.confirm(some_id, operator, note, user=user)
        elif action == "dismiss":
            reason = str(body.get("reason") or "")
            incident, changed = await self.dismiss(some_id, reason, operator, note, user=user)
        else:
            raise ValueError(f"unknown action {action!r}")
        return {
            "ok": True,
            "incident": incident.id,
            "state": incident.state,
            "already": not changed,
            "decided_by": incident.decided_by,
            "decided_by_user": incident.decided_by_user,
            "alarms": [listing(incident, a) for a in incident.alarms],
        }


def site_info_lookup(registry_sites: Callable[[str], Any]) -> Callable[[str], SiteInfo]:
    """SiteInfo from the site registry (a callable site id -> Site | None)."""

    def lookup(site_id: str) -> SiteInfo:
        site = registry_sites(site_id)
        if site is None:
            return SiteInfo(id=site_id, registered=False)
        return SiteInfo(
            id=site.id,
            registered=True,
            unit=site.unit,
            address=site.address or None,
            lat=site.lat,
            lon=site.lon,
            phone=site.phone or None,
            building=site.building or None,
        )

    return lookup
