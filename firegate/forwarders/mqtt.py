"""MQTT destination: every event, plus the current fault state as retained messages.

Topics (``{prefix}`` is ``topic_prefix``, default ``firegate``; every message QoS 1;
payloads are JSON in UTF-8, non-ASCII kept as is):

``{prefix}/events/{site}/{device}/{type}``
    Every event, not retained; the payload is the event as stored. QoS 1 is
    at-least-once and the courier redelivers after a crash: dedupe on ``id``.

``{prefix}/faults/{site}/{device}/{component}/{condition}``
    Retained: one topic per open fault. ``fault_raised`` publishes
    ``{"state": "open", "since": <received_at>, "event": <the event>}``;
    ``fault_cleared`` publishes an empty retained payload, which deletes the
    retained message. A new subscriber to ``{prefix}/faults/#`` therefore gets
    exactly the faults open now. ``component`` is
    ``{system_type}-{system_address}-{component_address}`` from the event's point,
    cut before the first missing part (``1-3`` is a system-level fault), and
    ``device`` when the point has no system type (the UITD's own faults).

``{prefix}/faults/{site}/{device}/device/offline``
    Retained the same way: ``device_offline`` opens it, ``device_online`` clears it.

Other events go to the events topic only. In ``site``, ``device`` and the other
topic levels, the characters MQTT reserves (``/ + #`` and NUL) become ``_``.

A delivery returns once the broker acknowledged (PUBACK) both its messages, sent
one after the other. One connection (MQTT 3.1.1, clean session) is kept: `keep_link`
(run by the courier) opens it at start and again as soon as it is lost, retrying
with backoff (1 s doubling to 30 s); a delivery without a connection opens one
itself. Any broker or network error drops it and raises a retryable
``DeliveryError`` (aiomqtt 2 never reconnects by itself). A kept connection
already known to be closed is replaced within the delivery. ``timeout`` bounds
each wait: the TCP connect, the TLS handshake, CONNACK, and the two publishes
together.

Every connection that starts a new broker session (CONNACK without
session-present, which with a clean session is every one) first publishes the
retained state of every fault open now, from ``open_faults`` (the fault
tracker's bucket, filtered as the destination's events are: see
`firegate.forwarders.routes.OpenFaults`): a broker restarted without
persistence has lost them. Only then is the connection used for deliveries, so a
later clear is never overwritten by an older state. A republished fault whose
event the stream no longer holds as the device's latest is rebuilt from the
tracker's record and marked ``"rebuilt": true``.

``link_up`` and ``link_state`` tell whether the broker is connected (the
``forwarders`` readiness detail and ``firegate_forward_link_up``).

The third-party ``mqtt`` logger (aiomqtt and paho) is rate-limited here: the first
record of each kind passes, then at most one every 10 s with the count left out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from firegate.bus.events import DeviceOffline, DeviceOnline, Envelope, FaultCleared, FaultRaised, Point
from firegate.forwarders.delivery import Delivery
from firegate.forwarders.errors import DeliveryError, DeliveryFailed, DeliveryRefused
from firegate.forwarders.metrics import forward_connections, forward_link_up

_LINKS = forward_connections.labels(destination="mqtt")
log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_RESERVED = str.maketrans({"/": "_", "+": "_", "#": "_", "\x00": "_"})
_DISCARD_TIMEOUT = 1.0  # a dropped connection only needs its socket closed, not a goodbye
_RETRY_FIRST = 1.0  # keep_link: the wait after a failed connect, doubling up to _RETRY_MAX
_RETRY_MAX = 30.0
_REPUBLISH_READ_TIMEOUT = 60.0  # reading the open faults (the source bounds its own requests)
_REPUBLISH_PARALLEL = 8  # PUBACKs awaited at once: under aiomqtt's "pending calls" warning (10)

OpenState = tuple[Envelope, bool]
"""An open fault to publish again: the event that opened it, and whether it was rebuilt."""
OpenFaultSource = Callable[[], Awaitable[Sequence[OpenState]]]


class RateLimit(logging.Filter):
    """Pass the first record of each kind (logger, level, message template), then at most one
    every ``every`` seconds, which says how many were left out since the last one passed.

    Records below ``level`` always pass. Installed on the third-party ``mqtt`` logger, whose
    "There are N pending publish calls." came by the thousand under load."""

    def __init__(
        self,
        every: float = 10.0,
        *,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.every = every
        self.level = level
        self.clock = clock
        self._kinds: dict[tuple[str, int, str], list[float]] = {}  # kind -> [last passed, left out]
        self._lock = threading.Lock()  # paho logs from its connect thread too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        with self._lock:
            return self._passes(record)

    def _passes(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._kinds.get(kind)
        if seen is None:
            if len(self._kinds) >= 256:  # kinds are message templates: few; bound them anyway
                self._kinds.clear()
            self._kinds[kind] = [now, 0]
            return True
        if now - seen[0] < self.every:
            seen[1] += 1
            return False
        left_out, since = int(seen[1]), now - seen[0]
        seen[0], seen[1] = now, 0
        if left_out:
            text = record.getMessage()
            record.msg = f"{text} (and {left_out} more like it in the last {since:.0f} s, not logged)"
            record.args = None
        return True


THIRD_PARTY_LOG_LIMIT = RateLimit()
logging.getLogger("mqtt").addFilter(THIRD_PARTY_LOG_LIMIT)


def _level(value: str) -> str:
    """One topic level: a device id or site with a '/' must not add levels, nor a '+' be a wildcard."""
    return value.translate(_RESERVED) or "_"


def _component(point: Point) -> str:
    if point.system_type is None:
        return "device"
    parts: list[int] = []
    for part in (point.system_type, point.system_address, point.component_address):
        if part is None:
            break
        parts.append(part)
    return "-".join(str(p) for p in parts)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class MqttFaultDestination:
    """Publishes events and retained fault state to one MQTT broker (see the module docstring)."""

    name = "mqtt"

    def __init__(
        self,
        url: str,
        *,
        topic_prefix: str = "firegate",
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 5.0,
        open_faults: OpenFaultSource | None = None,
    ) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"MQTT url must be mqtt://host:port or mqtts://host:port, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"MQTT url has no host: {url!r}")
        if tls_context is not None and scheme != "mqtts":
            raise ValueError(f"tls_context given for a plain {url!r}: use mqtts://")
        prefix = topic_prefix.strip("/")
        if not prefix or any(c in prefix for c in "+#\x00"):
            raise ValueError(f"topic_prefix must be non-empty and free of + # NUL, got {topic_prefix!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.host = parts.hostname
        self.port = parts.port or _DEFAULT_PORTS[scheme]  # .port raises ValueError when malformed
        self.topic_prefix = prefix
        self.timeout = timeout
        self.open_faults = open_faults
        self._username = username
        self._password = password
        self._client_id = client_id
        self._tls_context = (
            tls_context if tls_context is not None or scheme == "mqtt" else ssl.create_default_context()
        )
        self._client: aiomqtt.Client | None = None
        self._connect_lock = asyncio.Lock()  # concurrent deliveries share one connection attempt
        self._lost = asyncio.Event()  # set when the kept connection is dropped (keep_link waits on it)
        self._session_present = False  # of the connection being opened (its CONNACK)
        self._closed = False
        self._since = time.monotonic()  # when the link last went up or down
        self._error: str | None = None  # why the last connection attempt failed or the link was lost

    def __repr__(self) -> str:
        return f"MqttFaultDestination({self._where!r}, topic_prefix={self.topic_prefix!r})"

    @property
    def _where(self) -> str:
        scheme = "mqtt" if self._tls_context is None else "mqtts"
        return f"{scheme}://{self.host}:{self.port}"

    # -- link state -------------------------------------------------------------------

    @property
    def link_up(self) -> bool:
        """A connection to the broker is open (and its retained faults restored)."""
        return self._client is not None

    @property
    def link_state(self) -> str:
        """For the readiness detail: ``mqtt://host:port connected``, ``... down for 42 s: why``."""
        if self._client is not None:
            return f"{self._where} connected"
        if self._error is None:
            return f"{self._where} connecting"
        return f"{self._where} down for {time.monotonic() - self._since:.0f} s: {self._error}"

    def _went_down(self, error: BaseException) -> None:
        if self._error is None or self._client is not None:
            self._since = time.monotonic()
        self._error = _describe(error, self.timeout)

    async def keep_link(self) -> None:
        """Until cancelled or closed: connect now, and again as soon as the connection is lost
        (1 s, doubling to 30 s, between failed attempts), so that the link state is always
        known and a restarted broker gets its retained faults back without waiting for an event."""
        _KEPT.add(self)
        forward_link_up.labels(destination=self.name).set_function(_all_links_up)
        delay = _RETRY_FIRST
        try:
            while not self._closed:
                client = self._client
                if client is not None:
                    lost: asyncio.Future[Any] = asyncio.ensure_future(self._lost.wait())
                    gone: asyncio.Future[Any] = client._disconnected  # paho noticed the socket close
                    try:
                        await asyncio.wait([gone, lost], return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        lost.cancel()
                    await self._drop(client)
                    delay = _RETRY_FIRST
                    continue
                try:
                    await self._connected()
                except Exception as e:  # whatever it is, the link must be tried again
                    if delay == _RETRY_FIRST:
                        log.warning("MQTT %s: cannot connect (%s); retrying", self._where, self._error or e)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
                else:
                    delay = _RETRY_FIRST
        finally:
            _KEPT.discard(self)

    # -- Destination ------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> None:
        if self._closed:
            raise DeliveryFailed("closed", f"{self._where}: destination closed")
        messages = self.messages(delivery)
        client: aiomqtt.Client | None = None
        try:
            client = await self._connected()
            try:
                await self._publish(client, messages)
            except aiomqtt.MqttCodeError as e:
                if e.rc != MQTTErrorCode.MQTT_ERR_NO_CONN:
                    raise
                # The broker closed the kept connection while it was idle (restart, idle
                # timeout) and paho noticed: reconnect once now rather than fail this try.
                await self._drop(client)
                client = await self._connected()
                await self._publish(client, messages)
        except DeliveryError:
            raise
        except (aiomqtt.MqttError, OSError, TimeoutError) as e:  # TimeoutError: our publish deadline
            await self._drop(client, e)
            raise DeliveryFailed(
                "broker", f"{self._where}: {_describe(e, self.timeout)}", value=self._where
            ) from e
        except ValueError as e:  # paho refuses the topic or payload itself: retrying cannot help
            detail = f"{self._where}: {e}"
            raise DeliveryRefused("refused", detail, value=delivery.subject) from e

    async def close(self) -> None:
        self._closed = True
        self._lost.set()
        client, self._client = self._client, None
        if client is None:
            return
        _LINKS.dec()
        try:
            async with asyncio.timeout(self.timeout):
                await client.__aexit__(None, None, None)
        except (aiomqtt.MqttError, OSError, TimeoutError) as e:
            log.warning("MQTT %s: no clean disconnect: %s", self._where, e or type(e).__name__)

    # -- topics -----------------------------------------------------------------------

    def messages(self, delivery: Delivery) -> list[tuple[str, bytes, bool]]:
        """(topic, payload, retain) to publish for one delivery, in order."""
        event = delivery.event
        base = f"{_level(event.site)}/{_level(event.device)}"
        out = [(f"{self.topic_prefix}/events/{base}/{_level(event.type)}", delivery.data, False)]
        state = self.state_message(event)
        if state is not None:
            out.append(state)
        return out

    def state_message(self, event: Envelope, *, rebuilt: bool = False) -> tuple[str, bytes, bool] | None:
        """The retained message an event sets or deletes; None for events without fault state."""
        base = f"{_level(event.site)}/{_level(event.device)}"
        if isinstance(event, FaultRaised | FaultCleared):
            where = f"{_component(event.point)}/{_level(event.condition)}"
            return self._state(f"{base}/{where}", event, isinstance(event, FaultRaised), rebuilt)
        if isinstance(event, DeviceOffline | DeviceOnline):
            return self._state(f"{base}/device/offline", event, isinstance(event, DeviceOffline), rebuilt)
        return None

    def _state(self, path: str, event: Envelope, is_open: bool, rebuilt: bool) -> tuple[str, bytes, bool]:
        topic = f"{self.topic_prefix}/faults/{path}"
        if not is_open:
            return topic, b"", True  # an empty retained message deletes the retained one
        dumped = event.model_dump(mode="json")
        state: dict[str, Any] = {"state": "open", "since": dumped["received_at"], "event": dumped}
        if rebuilt:
            state["rebuilt"] = True
        return topic, _json(state), True

    # -- connection -------------------------------------------------------------------

    async def _connected(self) -> aiomqtt.Client:
        """The kept connection, or a new one (with the open faults published again when the
        broker's session is new).

        Bounded by aiomqtt and paho, not by cancelling: the TCP connect and TLS
        handshake (paho, in a thread) by ``connect_timeout``, CONNACK by aiomqtt's
        ``timeout``. Cancelling aiomqtt while it awaits CONNACK leaves it holding a
        cancelled future, after which it can never close that socket.
        """
        async with self._connect_lock:
            if self._client is not None:
                return self._client
            if self._closed:
                raise DeliveryFailed("closed", f"{self._where}: destination closed")
            client = aiomqtt.Client(
                self.host,
                self.port,
                username=self._username,
                password=self._password,
                identifier=self._client_id,
                clean_session=True,
                tls_context=self._tls_context,
                timeout=self.timeout,
            )
            _paho(client).connect_timeout = self.timeout
            self._watch_session(client)
            attempt = asyncio.ensure_future(client.__aenter__())
            try:
                await asyncio.shield(attempt)
                if self._closed:  # close() ran while we connected: do not leave this one open
                    raise DeliveryFailed("closed", f"{self._where}: destination closed")
                if not self._session_present:
                    await self._republish(client)
            except BaseException as e:
                if not attempt.done():  # we were cancelled: let the attempt end by its own timeouts
                    await asyncio.wait([attempt])
                    if not attempt.cancelled():
                        attempt.exception()  # its failure is moot now; mark it retrieved
                await self._discard(client)  # e.g. CONNACK timed out: aiomqtt leaves the socket open
                if isinstance(e, Exception):
                    self._went_down(e)
                raise
            log.info("MQTT connected to %s", self._where)
            self._client = client
            self._lost.clear()
            self._since, self._error = time.monotonic(), None
            _LINKS.inc()
            return client

    def _watch_session(self, client: aiomqtt.Client) -> None:
        """Note CONNACK's session-present flag, which aiomqtt 2 does not pass on."""
        paho = _paho(client)
        answered = paho.on_connect
        self._session_present = False

        def on_connect(*args: Any) -> None:  # (client, userdata, flags, reason_code, properties)
            self._session_present = bool(getattr(args[2], "session_present", False))
            if answered is not None:
                answered(*args)

        paho.on_connect = on_connect

    async def _republish(self, client: aiomqtt.Client) -> None:
        """A new broker session: publish the retained state of every fault open now."""
        if self.open_faults is None:
            return
        try:
            async with asyncio.timeout(_REPUBLISH_READ_TIMEOUT):
                faults = await self.open_faults()
        except Exception as e:
            log.warning("MQTT %s: cannot read the open faults to publish again: %r", self._where, e)
            raise DeliveryFailed("republish", f"{self._where}: open faults not readable: {e!r}") from e
        messages = [m for event, rebuilt in faults if (m := self.state_message(event, rebuilt=rebuilt))]
        for start in range(0, len(messages), _REPUBLISH_PARALLEL):
            batch = messages[start : start + _REPUBLISH_PARALLEL]
            async with asyncio.timeout(self.timeout):
                await asyncio.gather(*(client.publish(t, p, qos=1, retain=r) for t, p, r in batch))
        rebuilt = sum(1 for _, was_rebuilt in faults if was_rebuilt)
        log.info(
            "MQTT %s: new broker session: published the %d open faults again (%d rebuilt from the "
            "fault tracker's records)",
            self._where,
            len(messages),
            rebuilt,
        )

    async def _publish(self, client: aiomqtt.Client, messages: list[tuple[str, bytes, bool]]) -> None:
        # Sequential on purpose: the state message follows its event. aiomqtt's qos=1
        # publish returns only after the broker's PUBACK; a cancelled wait is harmless.
        async with asyncio.timeout(self.timeout):
            for topic, payload, retain in messages:
                await client.publish(topic, payload, qos=1, retain=retain)

    async def _drop(self, client: aiomqtt.Client | None, error: BaseException | None = None) -> None:
        if client is None:
            return
        if self._client is client:
            self._client = None
            self._lost.set()
            _LINKS.dec()
            lost = client._disconnected
            cause = error or (lost.exception() if lost.done() and not lost.cancelled() else None)
            self._went_down(cause or ConnectionError("connection lost"))
            log.warning("MQTT connection to %s lost (%s); reconnecting", self._where, self._error)
        await self._discard(client)

    async def _discard(self, client: aiomqtt.Client) -> None:
        """Close a connection we no longer use; errors are moot, the wait is short."""
        lost = client._disconnected  # the broker went away: that is why we drop it, not news
        if lost.done() and not lost.cancelled():
            lost.exception()
        if _paho(client).socket() is None:
            return  # refused, or paho already closed it: nothing to close (and no aiomqtt warning)
        try:
            async with asyncio.timeout(min(self.timeout, _DISCARD_TIMEOUT)):
                await client.__aexit__(None, None, None)
        except (aiomqtt.MqttError, OSError, TimeoutError):
            pass


_KEPT: set[MqttFaultDestination] = set()  # destinations whose keep_link runs


def _all_links_up() -> float:
    """firegate_forward_link_up{destination="mqtt"}: 1 while every kept broker link is up."""
    return 1.0 if all(d.link_up for d in list(_KEPT)) else 0.0


def _describe(error: BaseException, timeout: float) -> str:
    detail = str(error) or f"no answer within {timeout:g} s"
    return f"{type(error).__name__}: {detail}"


def _paho(client: aiomqtt.Client) -> mqtt.Client:
    """aiomqtt 2 exposes neither paho's connect timeout (default 5 s) nor whether a socket is open."""
    return client._client
