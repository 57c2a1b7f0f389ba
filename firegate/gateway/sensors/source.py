"""One MQTT source of sensor messages: subscribe, decode, map, hand to ingest, acknowledge.

Delivery: MQTT 3.1.1, QoS 1, a fixed client id and a persistent session (clean session off), so
the broker keeps the subscription and queues what is published while firegate is away (within
its own limits: Mosquitto's ``max_queued_messages``, 1000 by default, and ``persistence true``
to survive its own restart). PUBACK is sent by hand (paho's manual ack, which aiomqtt 2 does not
expose) only once every event of the message is stored, in the order the messages came
(MQTT 4.6.0-2). A message whose events could not be stored is never acknowledged: the
connection is dropped, and the broker sends every unacknowledged message again on reconnect.
A crash between receipt and storage therefore loses nothing; what is stored twice gets the
same event ids.

aiomqtt 2 never reconnects by itself: `run` connects again after any MQTT error, with backoff
(``backoff_initial`` doubling to ``backoff_max``). A payload no codec can read is counted with
its reason, logged with its topic, acknowledged (sending it again cannot help) and skipped.

Liveness: a sensor that has reported and then stays silent past ``report_interval`` goes
offline (a `DeviceOffline` event, a link fault like a silent UITD's); a message on a
``will_topics`` filter (the sensor's MQTT last will) takes it offline at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from firegate.bus.events import DeviceOffline, Envelope
from firegate.codecs.api import MessageCodec, Reading, Sample, unit_of
from firegate.codecs.errors import CodecError
from firegate.codecs.gb26875 import ComponentStatus, InfoObject
from firegate.codecs.registry import Registry, discover
from firegate.config import SensorPoint, SensorThreshold
from firegate.config import SensorSource as SourceConfig
from firegate.devicetime import device_local, device_time
from firegate.gateway.liveness import DeviceTracker
from firegate.gateway.sensors import metrics
from firegate.gateway.sensors.mapping import Mapper
from firegate.gateway.sensors.seen import MemorySeen, Seen, SeenStore
from firegate.ingest import Ingest, Lane, Outcome, Report, carries_fire
from firegate.ingest.normalize import point_key
from firegate.ops.logging import Throttle

log = logging.getLogger("firegate.sensors")

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_DEVICE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_OBJECTS = {2: 22, 3: 63}  # per data unit (spec: type 2 n <= 22, type 3 n <= 63)
_SWEEP_MAX = 5.0  # seconds between liveness sweeps at most
_TAG_YEARS = (2000, 2255)  # what a GB/T 26875.3 time tag can carry


class SensorSites:
    """Sites the sensor topics or config name, for devices the site registry does not know."""

    def __init__(self, registry_site_of: Callable[[str], str]) -> None:
        self._registry = registry_site_of
        self.sites: dict[str, str] = {}

    def site_of(self, device: str) -> str:
        site = self._registry(device)
        return self.sites.get(device, site) if site == device else site


@dataclass(slots=True, eq=False)
class _Pending:
    """A received message waiting for its reports to be stored, in arrival order."""

    mid: int
    qos: int
    waiting: int = 0
    stored: bool = True
    done: bool = False
    devices: set[str] = field(default_factory=set)
    newest: dict[tuple[str, str], datetime] = field(default_factory=dict)  # taken once it is stored


class SensorSource:
    def __init__(
        self,
        config: SourceConfig,
        ingest: Ingest,
        *,
        thresholds: dict[str, SensorThreshold] | None = None,
        sites: SensorSites | None = None,
        registry: Registry | None = None,
        tls_context: ssl.SSLContext | None = None,
        seen: SeenStore | None = None,
    ) -> None:
        self.config = config
        self.seen = seen or MemorySeen()
        self._unsaved: dict[str, Seen] = {}  # last-seen changes not written to `seen` yet
        self.name = config.name
        self.ingest = ingest
        self.sites = sites or SensorSites(lambda device: device)
        self.codec: MessageCodec = (registry or discover()).message_codec(config.codec, config.codec_options)
        self.mapper = Mapper(config.points, thresholds or {})
        self.tracker = DeviceTracker(config.report_interval)
        parts = urlsplit(config.url)
        scheme = parts.scheme.lower()
        self.host = parts.hostname or ""
        self.port = parts.port or _DEFAULT_PORTS[scheme]
        self.client_id = config.client_id or f"firegate-sensors-{config.name}"
        self.origin = f"mqtt:{config.codec}"  # of the events (the envelope's origin protocol)
        if scheme == "mqtts" and tls_context is None:
            tls_context = ssl.create_default_context()
        self._tls = tls_context
        self._newest: dict[tuple[str, str], datetime] = {}  # (device, point) -> newest sample time
        self._throttle = Throttle(log)
        self._client: aiomqtt.Client | None = None
        self._pending: deque[_Pending] = deque()
        self._since = time.monotonic()
        self._error: str | None = None
        self.connected = asyncio.Event()  # set while subscribed
        self._sweep_soon = asyncio.Event()  # a last will came: sweep now
        self._wills: list[DeviceOffline] = []  # offline by their last will, to store
        self._subscribed = False  # in the current connection attempt
        self._up = metrics.BROKER_UP.labels(source=self.name)
        self._lag = metrics.LAG.labels(source=self.name)
        self.counters = metrics.SourceCounters(self.name)
        self._up.set(0)

    @property
    def where(self) -> str:
        return f"{'mqtts' if self._tls else 'mqtt'}://{self.host}:{self.port}"

    def readiness(self) -> tuple[bool, str]:
        if self.connected.is_set():
            return True, f"{self.where} connected"
        if self._error is None:
            return False, f"{self.where} connecting"
        return False, f"{self.where} down for {time.monotonic() - self._since:.0f} s: {self._error}"

    # -- the connection loop ----------------------------------------------------------

    async def run(self) -> None:
        """Until cancelled: stay subscribed, reconnecting with backoff; sweep liveness."""
        await self._restore()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._sweeper(), name=f"sensor liveness {self.name}")
            await self._connect_loop()

    async def _connect_loop(self) -> None:
        c = self.config
        delay = c.backoff_initial
        while True:
            self._subscribed = False
            try:
                await self._session()
            except (aiomqtt.MqttError, OSError) as e:
                self._went_down(e)
            except Exception as e:  # our bug: logged in full, and the source goes on
                self._went_down(e)
                log.exception("sensor source %s: unexpected error; reconnecting", self.name)
            else:
                self._went_down(ConnectionError("the message stream ended"))
            if self._subscribed:  # it worked until now: the next try comes soon
                delay = c.backoff_initial
            self._throttle.log(
                f"down.{self.name}",
                logging.WARNING,
                "sensor source %s: broker %s: %s; reconnecting in %g s",
                self.name,
                self.where,
                self._error,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, c.backoff_max)

    def _went_down(self, error: BaseException) -> None:
        if self._error is None or self.connected.is_set():
            self._since = time.monotonic()
        self._error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        self.connected.clear()
        self._up.set(0)

    async def _session(self) -> None:
        c = self.config
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=c.username,
            password=c.password.get_secret_value() if c.password else None,
            identifier=self.client_id,
            clean_session=False,  # the broker keeps our subscription and queues while we are away
            tls_context=self._tls,
            timeout=c.timeout,
            keepalive=c.keepalive,
        )
        paho = _paho(client)
        paho.manual_ack_set(True)  # PUBACK once stored, not on receipt
        paho.connect_timeout = c.timeout
        self._pending.clear()  # the broker sends the unacknowledged again on this connection
        async with client:
            await client.subscribe([(topic, 1) for topic in (*c.topics, *c.will_topics)])
            self._client = client
            self._subscribed = True
            self._since, self._error = time.monotonic(), None
            self.connected.set()
            self._up.set(1)
            log.info("sensor source %s: subscribed at %s as %s", self.name, self.where, self.client_id)
            try:
                async for message in client.messages:
                    await self.take(
                        message.topic.value, bytes(message.payload or b""), message.mid, message.qos
                    )
            finally:
                self._client = None
                self.connected.clear()
                self._up.set(0)

    # -- one message ------------------------------------------------------------------

    async def take(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        """Decode, map and submit one message; it is acknowledged once all its reports are stored."""
        pending = _Pending(mid, qos)
        self._pending.append(pending)
        try:
            await self._take(topic, payload, pending)
        except Exception:
            # a codec's (or our) bug on this payload: sending it again would only repeat it, so it
            # is counted and acknowledged like a bad payload; it must never stop the source
            self.counters.bad_payloads["other"].inc()
            self.counters.messages["bad_payload"].inc()
            log.exception("sensor source %s: the payload on %s failed: %s", self.name, topic, payload[:200])
        if pending.waiting == 0:
            pending.done = True
            self._acknowledge()

    async def _take(self, topic: str, payload: bytes, pending: _Pending) -> None:
        if any(aiomqtt.Topic(topic).matches(w) for w in self.config.will_topics):
            self._will(topic)
            return
        try:
            samples = self.codec.decode(payload, topic)
            by_device = self._by_device(topic, samples, payload)
        except CodecError as e:
            reason = e.reason if e.reason in metrics.BAD_PAYLOAD_REASONS else "other"
            self.counters.bad_payloads[reason].inc()
            self.counters.messages["bad_payload"].inc()
            self._throttle.log(
                f"bad.{self.name}.{reason}",
                logging.WARNING,
                "sensor source %s: bad payload on %s (%s): %s [%s]",
                self.name,
                topic,
                reason,
                e,
                payload[:200].hex() if reason != "json" else payload[:200].decode("utf-8", "replace"),
            )
            return
        received = datetime.now(UTC)
        results: set[str] = set()
        newest: datetime | None = None
        for device, device_samples in by_device.items():
            fresh = self._fresh(device, device_samples, pending)
            if len(fresh) < len(device_samples):
                self.counters.samples["duplicate"].inc(len(device_samples) - len(fresh))
            if not fresh:
                results.add("duplicate")
                continue
            await self._seed(device, fresh)
            mapped = self.mapper.map(device, fresh, received)
            self.counters.samples["unmapped"].inc(mapped.unmapped)
            self.counters.samples["clamped"].inc(mapped.clamped)
            self.counters.samples["stale"].inc(mapped.stale)
            if mapped.unmapped:
                self._throttle.log(
                    f"unmapped.{self.name}",
                    logging.INFO,
                    "sensor source %s: %d sample(s) of %s on %s match no point or unit",
                    self.name,
                    mapped.unmapped,
                    device,
                    topic,
                )
            objects = mapped.analog + mapped.status
            if not objects:
                results.add("unmapped")
                continue
            self.counters.samples["mapped"].inc(len(fresh) - mapped.unmapped - mapped.stale)
            results.add("mapped")
            times = [s.time for s in fresh if s.time is not None]
            if times:
                newest = max(times) if newest is None else max(newest, *times)
            self._site(topic, device)
            self._submit(device, mapped.status, 2, payload, pending)
            self._submit(device, mapped.analog, 3, payload, pending)
        if newest is not None:
            self._lag.set((received - newest).total_seconds())
        result = next((r for r in ("mapped", "unmapped", "duplicate") if r in results), "unmapped")
        self.counters.messages[result].inc()

    async def _seed(self, device: str, samples: list[Sample]) -> None:
        """A threshold's state after a restart is the point's stored status (the KV every gateway
        shares), so a value inside the hysteresis band neither clears a stored fault nor misses one."""
        todo = self.mapper.unseeded(device, samples)
        if not todo:
            return
        keys = {point_key(device, 2, _status_of(entry)): (name, bit) for name, (entry, bit) in todo.items()}
        try:
            known = await self.ingest.normalizer.memory.get_many(list(keys))
        except Exception as e:  # bounded by the memory itself; judged afresh without it
            log.warning("sensor source %s: stored states of %s not read: %r", self.name, device, e)
            known = {}
        for key, (name, bit) in keys.items():
            state = known.get(key)
            raised = state is not None and bool(state.status & bit)
            since = device_time(state.since) if state is not None else None
            self.mapper.thresholds.seed((device, name), raised, since)

    def _by_device(self, topic: str, samples: Sequence[Sample], payload: bytes) -> dict[str, list[Sample]]:
        level = self.config.device_topic_level
        from_topic = _level(topic, level) if level is not None else None
        out: dict[str, list[Sample]] = {}
        for sample in samples:
            device = from_topic or sample.device
            if not device or not _DEVICE.fullmatch(device):
                raise CodecError(f"no usable device id ({device!r})", reason="device", data=payload)
            if sample.time is not None:
                if not _TAG_YEARS[0] <= device_local(sample.time).year <= _TAG_YEARS[1]:
                    # a sensor whose clock was never set (1970): no time tag can carry it
                    why = f"sample time {sample.time} out of range"
                    raise CodecError(why, reason="time", data=payload)
                # a plugin's naive time is in the device time zone, as a time tag's
                sample = replace(sample, time=device_time(sample.time))
            out.setdefault(device, []).append(sample)
        return out

    def _fresh(self, device: str, samples: list[Sample], pending: _Pending) -> list[Sample]:
        """Samples newer than any stored of their point (a resent buffer repeats the old ones).
        The newest times count once the message is stored: one not stored comes again, and is
        new then."""
        fresh: list[Sample] = []
        for sample in sorted(samples, key=lambda s: s.time or datetime.max.replace(tzinfo=UTC)):
            if sample.time is None:
                fresh.append(sample)
                continue
            key = (device, sample.point)
            seen = pending.newest.get(key) or self._newest.get(key)
            if seen is not None and sample.time <= seen:
                continue
            pending.newest[key] = sample.time
            fresh.append(sample)
        return fresh

    def _site(self, topic: str, device: str) -> None:
        level = self.config.site_topic_level
        site = _level(topic, level) if level is not None else self.config.site
        if site and _DEVICE.fullmatch(site):
            self.sites.sites[device] = site

    def _submit(
        self,
        device: str,
        objects: list[InfoObject],
        type_flag: int,
        raw: bytes,
        pending: _Pending,
    ) -> None:
        size = _MAX_OBJECTS[type_flag]
        for start in range(0, len(objects), size):
            chunk = tuple(objects[start : start + size])
            events: list[Envelope] = []
            if device not in pending.devices:  # the device's first report of the message
                online = self.tracker.online_event(device, self.sites.site_of(device), self.where)
                if online is not None:
                    events.append(online.model_copy(update={"origin": self.origin}))
            pending.devices.add(device)
            pending.waiting += 1
            self.ingest.submit(
                Report(
                    device=device,
                    lane=Lane.FIRE if carries_fire(chunk) else Lane.NORMAL,
                    unit=unit_of(Reading(type_flag, chunk)),
                    raw=raw,
                    events=events,
                    on_done=self._done_callback(pending, device),
                    context={"source": self.name},
                    origin=self.origin,
                )
            )

    def _done_callback(self, pending: _Pending, device: str) -> Callable[[Outcome], None]:
        def done(outcome: Outcome) -> None:
            pending.waiting -= 1
            if outcome:
                self.tracker.seen(device)
                self._unsaved[device] = Seen(datetime.now(UTC), True)
            else:
                pending.stored = False
            if pending.waiting == 0:
                pending.done = True
                if pending.stored:
                    for key, when in pending.newest.items():
                        self._newest[key] = max(when, self._newest.get(key, when))
                self._acknowledge()

        return done

    def _acknowledge(self) -> None:
        """PUBACK the messages done, in arrival order; at one not stored, drop the connection so
        that the broker sends it (and those after it) again."""
        client = self._client
        while self._pending and self._pending[0].done:
            pending = self._pending.popleft()
            if not pending.stored:
                self.counters.messages["not_stored"].inc()
                self._pending.clear()
                if client is not None:
                    log.warning("sensor source %s: a message was not stored; reconnecting for it", self.name)
                    _paho(client).disconnect()
                return
            if client is not None and pending.qos > 0:
                rc = _paho(client).ack(pending.mid, pending.qos)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    log.debug("sensor source %s: PUBACK %d not sent (%s)", self.name, pending.mid, rc)

    # -- liveness ---------------------------------------------------------------------

    def _will(self, topic: str) -> None:
        """The sensor's last will: offline now, not after report_interval."""
        level = self.config.device_topic_level
        device = _level(topic, level) if level is not None else None
        state = self.tracker.devices.get(device or "")
        if device is None or state is None or not state.online:
            return
        now, wall = time.monotonic(), datetime.now(UTC)
        state.online, state.offline_since = False, state.last_seen
        self._wills.append(
            DeviceOffline(
                id=f"{device}.offline.{int(state.last_seen_at.timestamp() * 1000)}",  # as a sweep's
                device=device,
                site=self.sites.site_of(device),
                occurred_at=None,
                received_at=wall,
                origin=self.origin,
                last_seen=state.last_seen_at,
                silent_s=round(now - state.last_seen, 3),
            )
        )
        self._sweep_soon.set()

    async def _sweeper(self) -> None:
        interval = min(self.config.report_interval / 4, _SWEEP_MAX)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._sweep_soon.wait()
            self._sweep_soon.clear()
            offline, self._wills = self._wills, []
            offline += [
                e.model_copy(update={"origin": self.origin}) for e in self.tracker.sweep(self.sites.site_of)
            ]
            if offline:
                try:
                    await self.ingest.store(offline, lane=Lane.LINK)
                except Exception as e:
                    log.error(
                        "sensor source %s: %d offline event(s) not stored, next sweep retries: %s",
                        self.name,
                        len(offline),
                        e,
                    )
                    self.tracker.unsweep(offline)
                else:
                    self._unsaved.update({e.device: Seen(e.last_seen, False) for e in offline})
            await self._save()

    async def _restore(self) -> None:
        """The sensors a previous process heard from: one silent since goes offline here too."""
        try:
            known = await self.seen.load(self.name)
        except Exception as e:  # without them, only sensors heard from again are watched
            log.warning("sensor source %s: last-seen records not read: %r", self.name, e)
            return
        for device, seen in known.items():
            self.tracker.restore(device, seen.at, seen.online)
        if known:
            log.info("sensor source %s: %d sensors known from before", self.name, len(known))

    async def _save(self) -> None:
        if not self._unsaved:
            return
        batch, self._unsaved = self._unsaved, {}
        try:
            await self.seen.save(self.name, batch)
        except Exception as e:
            why = "sensor source %s: last-seen not saved: %r"
            self._throttle.log(f"seen.{self.name}", logging.WARNING, why, self.name, e)
            self._unsaved = {**batch, **self._unsaved}  # newer changes win


def _status_of(entry: SensorPoint) -> ComponentStatus:
    """A status object of the point, for its key in the status memory."""
    return ComponentStatus.make(
        entry.system_type, entry.system_address, entry.component_type, entry.component_address, 1, "", None
    )


def _level(topic: str, index: int | None) -> str | None:
    if index is None:
        return None
    levels = topic.split("/")
    try:
        return levels[index] or None
    except IndexError:
        return None


def _paho(client: aiomqtt.Client) -> mqtt.Client:
    """aiomqtt 2 exposes neither paho's manual acknowledgement nor its connect timeout."""
    return client._client


async def run_sources(
    configs: Sequence[SourceConfig],
    ingest: Ingest,
    *,
    thresholds: dict[str, SensorThreshold],
    sites: SensorSites,
    tls_context: Callable[[Any, Any, Any], ssl.SSLContext | None],
    ready: Callable[[list[SensorSource]], None] | None = None,
    seen: SeenStore | None = None,
) -> None:
    """Every configured source, until cancelled (what `firegate run` starts under the gateway role)."""
    registry = discover()
    sources = [
        SensorSource(
            c,
            ingest,
            thresholds=thresholds,
            sites=sites,
            registry=registry,
            tls_context=tls_context(c.tls_ca, c.tls_cert, c.tls_key),
            seen=seen,
        )
        for c in configs
    ]
    if ready is not None:
        ready(sources)
    async with asyncio.TaskGroup() as tg:
        for source in sources:
            tg.create_task(source.run(), name=f"sensor source {source.name}")


def readiness(sources: Sequence[SensorSource]) -> tuple[bool, str]:
    """/readyz "sensor_brokers": each source's broker link, named in the detail without failing
    the check (as the forwarders' brokers): a sensor broker down must not take a gateway, and
    with it the UITDs it serves, out of its load balancer. firegate_sensor_broker_up is what to
    alert on."""
    states = [(s.name, *s.readiness()) for s in sources]
    return True, "; ".join(f"{name}: {detail}" for name, _, detail in states) or "no sources"
