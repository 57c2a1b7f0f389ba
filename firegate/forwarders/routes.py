"""Which couriers a configuration asks for: 119 endpoints, MQTT brokers, webhooks.

Each destination has its own durable consumer (named from its URL, so it survives restarts
and reordering of the config), so one that is down holds up nobody else.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from nats.js.client import JetStreamContext

from firegate.bus.events import Envelope, FireConfirmed
from firegate.bus.jetstream import tls_context
from firegate.config import Dispatch119, Settings, WebhookDestination, _Delivery, _FaultFilter
from firegate.forwarders import metrics as m
from firegate.forwarders.courier import Courier, CourierSettings
from firegate.forwarders.delivery import Delivery
from firegate.forwarders.http import HttpPoster
from firegate.forwarders.mqtt import MqttFaultDestination


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


def dispatch_couriers(js: JetStreamContext, settings: Settings) -> list[Courier]:
    d = settings.dispatch119
    out = []
    for url in d.urls:
        latest = LatestUpdates()
        poster = _poster(url, "119", d, body=incident_body, idempotency_key=incident_key)
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
            )
        )
    return out


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


def fault_couriers(js: JetStreamContext, settings: Settings) -> list[Courier]:
    out = []
    for mq in settings.faults.mqtt:
        destination = MqttFaultDestination(
            mq.url,
            topic_prefix=mq.topic_prefix,
            username=mq.username,
            password=mq.password.get_secret_value() if mq.password else None,
            tls_context=tls_context(mq.tls_ca, mq.tls_cert, mq.tls_key),
            timeout=mq.timeout,
        )
        out.append(
            Courier(
                js,
                destination,
                _courier_settings(durable_name("mqtt", mq.url, mq.topic_prefix), _fault_subjects(mq), mq),
                stream=settings.bus.stream,
                accept=fault_filter(mq),
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
            )
        )
    return out
