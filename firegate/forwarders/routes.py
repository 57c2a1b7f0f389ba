"""Which couriers a configuration asks for: 119 endpoints, MQTT brokers, webhooks.

Each destination has its own durable consumer (named from its URL, so it survives restarts
and reordering of the config), so one that is down holds up nobody else.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue
from pydantic import ValidationError

from firegate.bus.events import (
    CenterInfo,
    DeviceOffline,
    Envelope,
    FaultRaised,
    FireConfirmed,
    Point,
    parse_event,
)
from firegate.bus.jetstream import tls_context
from firegate.config import Center, Dispatch119, Settings, WebhookDestination, _Delivery, _FaultFilter
from firegate.forwarders import metrics as m
from firegate.forwarders.courier import Courier, CourierSettings
from firegate.forwarders.delivery import Delivery
from firegate.forwarders.faults import BUCKET as FAULTS_BUCKET
from firegate.forwarders.faults import OpenFault, fault_key, fault_records
from firegate.forwarders.http import HttpPoster
from firegate.forwarders.mqtt import MqttFaultDestination, OpenState
from firegate.forwarders.precedence import Precedence

log = logging.getLogger(__name__)


def durable_name(kind: str, *identity: str) -> str:
    return f"fwd-{kind}-" + hashlib.blake2b("|".join(identity).encode(), digest_size=4).hexdigest()


def _courier_settings(durable: str, subjects: tuple[str, ...], d: _Delivery) -> CourierSettings:
    return CourierSettings(
        durable=durable,
        subjects=subjects,
        max_age=d.max_age,
        ack_wait=d.ack_wait,
        backoff_initial=d.backoff_initial,
        backoff_max=d.backoff_max,
    )


def _poster(url: str, name: str, section: Dispatch119 | WebhookDestination, **extra: Any) -> HttpPoster:
    return HttpPoster(
        url,
        name=name,
        token=section.token.get_secret_value() if section.token else None,
        tls_ca=section.tls_ca,
        tls_cert=section.tls_cert,
        tls_key=section.tls_key,
        timeout=section.timeout,
        **extra,
    )


# -- 119


def incident_body(delivery: Delivery) -> bytes:
    """The POST body: the incident report alone (docs/schemas/incident.json)."""
    event = delivery.event
    assert isinstance(event, FireConfirmed)
    return event.incident.model_dump_json().encode()


def center_info(center: Center) -> CenterInfo:
    """The body's `center` from the config's ``center`` section."""
    return CenterInfo(id=center.id, name=center.name, phone=center.phone)


def incident_body_from(center: CenterInfo) -> Callable[[Delivery], bytes]:
    """The POST body, naming ``center`` when the event does not name one (an event stored before
    the center was configured, or by a lifecycle that was not told): every body says who sends it."""
    if center == CenterInfo():
        return incident_body

    def body(delivery: Delivery) -> bytes:
        event = delivery.event
        assert isinstance(event, FireConfirmed)
        incident = event.incident
        if incident.center == CenterInfo():
            incident = incident.model_copy(update={"center": center})
        return incident.model_dump_json().encode()

    return body


def incident_key(delivery: Delivery) -> str:
    event = delivery.event
    assert isinstance(event, FireConfirmed)
    return event.incident.idempotency_key


def _by_incident(event: Envelope) -> str:
    return event.incident.incident_id if isinstance(event, FireConfirmed) else event.device


class LatestUpdates:
    """The highest update of each incident an endpoint accepted. Every update is a whole
    snapshot, so an older one arriving after a newer (a redelivery after a restart) is skipped."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._accepted: OrderedDict[str, int] = OrderedDict()

    def superseded(self, event: Envelope) -> bool:
        if not isinstance(event, FireConfirmed):
            return False
        return self._accepted.get(event.incident.incident_id, 0) >= event.incident.update

    @staticmethod
    def newer(later: Envelope, earlier: Envelope) -> bool:
        return (
            isinstance(later, FireConfirmed)
            and isinstance(earlier, FireConfirmed)
            and later.incident.incident_id == earlier.incident.incident_id
            and later.incident.update > earlier.incident.update
        )

    def accepted(self, delivery: Delivery) -> None:
        event = delivery.event
        if not isinstance(event, FireConfirmed):
            return
        # the confirmed event's received_at is the moment of the decision (this update's)
        m.confirm_to_119.observe(max(0.0, time.time() - event.received_at.timestamp()))
        key = event.incident.incident_id
        self._accepted[key] = max(self._accepted.get(key, 0), event.incident.update)
        self._accepted.move_to_end(key)
        while len(self._accepted) > self.limit:
            self._accepted.popitem(last=False)


def dispatch_couriers(
    js: JetStreamContext, settings: Settings, precedence: Precedence | None = None
) -> list[Courier]:
    d = settings.dispatch119
    center = center_info(settings.center)
    if d.urls and not (center.name and center.phone):
        log.warning(
            "center.name and center.phone are not set: 119 cannot tell which monitoring "
            "center sent a fire, nor whom to call back"
        )
    body = incident_body_from(center)
    out = []
    for url in d.urls:
        latest = LatestUpdates()
        poster = _poster(url, "119", d, body=body, idempotency_key=incident_key)
        out.append(
            Courier(
                js,
                poster,
                _courier_settings(durable_name("119", url), ("fire.confirmed.>",), d),
                stream=settings.bus.stream,
                key=_by_incident,
                accept=lambda e: isinstance(e, FireConfirmed),
                on_accepted=latest.accepted,
                superseded=latest.superseded,
                newer=latest.newer,
                precedence=precedence,
                fire=True,
            )
        )
    return _initialised(out)


# -- faults


def fault_filter(f: _FaultFilter) -> Callable[[Envelope], bool]:
    kinds = set(f.kinds)
    sites = set(f.sites)
    systems = set(f.system_types)

    def accept(event: Envelope) -> bool:
        # kinds again here: an existing durable consumer keeps the subjects it was created with
        if event.kind not in kinds or (sites and event.site not in sites):
            return False
        point = getattr(event, "point", None)
        system = getattr(point, "system_type", None)
        # events without a facility system (a UITD going offline) pass a system-type filter
        return not systems or system is None or system in systems

    return accept


def _fault_subjects(f: _FaultFilter) -> tuple[str, ...]:
    return tuple(f"fire.{kind}.>" for kind in f.kinds)


class OpenFaults:
    """The faults open now, as the events that opened them, for an MQTT destination to publish
    again when its broker lost its retained messages; only those ``accept`` (its filters) takes.

    The open faults are the fault tracker's records in the KV bucket ``FIRE_FAULTS`` (kept by
    the lifecycle role; none while no process has created it). A record keeps the raise's id,
    device, site, point, condition and time, not the event, so each is looked up as the last
    event on its subject (``fire.fault.<device>``, ``fire.device.<device>``) in the stream:
    when that is a raise of the same fault (or the device's going offline) since the record's
    raise, it is published as the live delivery was. Otherwise (the device has several faults
    open, or the stream is not reachable) the event is rebuilt from the record: ``occurred_at``
    and ``raw`` null, ``origin`` and ``test`` their defaults, and for ``device_offline``
    ``last_seen`` the time it went offline and ``silent_s`` 0.
    """

    def __init__(
        self,
        js: JetStreamContext,
        accept: Callable[[Envelope], bool] = lambda event: True,
        *,
        stream: str = "FIRE",
        bucket: str = FAULTS_BUCKET,
        timeout: float = 2.0,
        parallel: int = 16,
    ) -> None:
        self.js = js
        self.accept = accept
        self.stream = stream
        self.bucket = bucket
        self.timeout = timeout
        self.parallel = parallel
        self._look_up = True

    async def __call__(self) -> list[OpenState]:
        try:
            async with asyncio.timeout(self.timeout):
                kv = await self.js.key_value(self.bucket)
        except nats.js.errors.BucketNotFoundError:
            log.warning("no bucket %s (no fault tracker ran yet): no open faults to publish", self.bucket)
            return []
        wanted = [e for e in map(rebuilt_event, await self._records(kv)) if self.accept(e)]
        self._look_up = True
        out: list[OpenState] = []
        for start in range(0, len(wanted), self.parallel):
            out += await asyncio.gather(*map(self._as_stored, wanted[start : start + self.parallel]))
        return out

    async def _records(self, kv: KeyValue) -> list[OpenFault]:
        """The open records (cleared markers skipped), as FaultTracker.open_faults reads them."""
        return [fault for _, _, fault in await fault_records(kv, self.timeout * 5) if fault.open]

    async def _as_stored(self, rebuilt: Envelope) -> OpenState:
        """The stored event that ``rebuilt`` stands for, if the stream has it at hand."""
        if not self._look_up:
            return rebuilt, True
        try:
            async with asyncio.timeout(self.timeout):
                msg = await self.js.get_last_msg(self.stream, rebuilt.subject)
            stored = parse_event(msg.data or b"")
        except nats.js.errors.NotFoundError:
            return rebuilt, True
        except (TimeoutError, nats.errors.Error) as e:  # NATS is slow or away: rebuild the rest
            log.warning("stream %s: open faults not looked up (%r): rebuilt from records", self.stream, e)
            self._look_up = False
            return rebuilt, True
        except ValidationError:
            return rebuilt, True
        return (stored, False) if _same_fault(stored, rebuilt) else (rebuilt, True)


def rebuilt_event(record: OpenFault) -> Envelope:
    """The event that opened a fault, from what the fault tracker's record keeps of it."""
    common: dict[str, Any] = {
        "id": record.event_id,
        "device": record.device,
        "site": record.site,
        "occurred_at": None,
        "received_at": record.raised_at,
    }
    if record.condition == "offline" and record.point is None:
        return DeviceOffline(last_seen=record.raised_at, silent_s=0.0, **common)
    return FaultRaised(
        condition=record.condition, condition_zh=record.condition_zh, point=record.point or Point(), **common
    )


def _same_fault(stored: Envelope, rebuilt: Envelope) -> bool:
    """``stored`` opened the same fault as ``rebuilt`` (a raise repeated since counts too)."""
    if stored.device != rebuilt.device or stored.received_at < rebuilt.received_at:
        return False
    if isinstance(rebuilt, DeviceOffline):
        return isinstance(stored, DeviceOffline)
    return (
        isinstance(stored, FaultRaised)
        and isinstance(rebuilt, FaultRaised)
        and fault_key(stored.device, stored.point, stored.condition)
        == fault_key(rebuilt.device, rebuilt.point, rebuilt.condition)
    )


def fault_couriers(
    js: JetStreamContext, settings: Settings, precedence: Precedence | None = None
) -> list[Courier]:
    out = []
    for mq in settings.faults.mqtt:
        destination = MqttFaultDestination(
            mq.url,
            topic_prefix=mq.topic_prefix,
            username=mq.username,
            password=mq.password.get_secret_value() if mq.password else None,
            tls_context=tls_context(mq.tls_ca, mq.tls_cert, mq.tls_key),
            timeout=mq.timeout,
            open_faults=OpenFaults(js, fault_filter(mq), stream=settings.bus.stream),
        )
        out.append(
            Courier(
                js,
                destination,
                _courier_settings(durable_name("mqtt", mq.url, mq.topic_prefix), _fault_subjects(mq), mq),
                stream=settings.bus.stream,
                accept=fault_filter(mq),
                precedence=precedence,
            )
        )
    for wh in settings.faults.webhooks:
        poster = _poster(wh.url, "webhook", wh)
        out.append(
            Courier(
                js,
                poster,
                _courier_settings(durable_name("webhook", wh.url), _fault_subjects(wh), wh),
                stream=settings.bus.stream,
                accept=fault_filter(wh),
                precedence=precedence,
            )
        )
    return _initialised(out)


def _initialised(couriers: list[Courier]) -> list[Courier]:
    """Their metric series exist (at 0) from now on, before any event or failure."""
    for courier in couriers:
        m.init_destination(courier.label)
    return couriers
