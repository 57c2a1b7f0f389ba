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
one after the other. One connection (MQTT 3.1.1, clean session) is opened on the
first delivery and kept; any broker or network error drops it and raises a
retryable ``DeliveryError``, and the courier's next attempt reconnects (aiomqtt 2
never reconnects by itself). A kept connection already known to be closed is
replaced within the delivery. ``timeout`` bounds each wait: the TCP connect, the
TLS handshake, CONNACK, and the two publishes together.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from firegate.bus.events import DeviceOffline, DeviceOnline, Envelope, FaultCleared, FaultRaised, Point
from firegate.forwarders.delivery import Delivery
from firegate.forwarders.errors import DeliveryError
from firegate.forwarders.metrics import forward_connections

_LINKS = forward_connections.labels(destination="mqtt")
log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_RESERVED = str.maketrans({"/": "_", "+": "_", "#": "_", "\x00": "_"})
_DISCARD_TIMEOUT = 1.0  # a dropped connection only needs its socket closed, not a goodbye


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
        self._username = username
        self._password = password
        self._client_id = client_id
        self._tls_context = (
            tls_context if tls_context is not None or scheme == "mqtt" else ssl.create_default_context()
        )
        self._client: aiomqtt.Client | None = None
        self._connect_lock = asyncio.Lock()  # concurrent deliveries share one connection attempt
        self._closed = False

    def __repr__(self) -> str:
        return f"MqttFaultDestination({self._where!r}, topic_prefix={self.topic_prefix!r})"

    @property
    def _where(self) -> str:
        scheme = "mqtt" if self._tls_context is None else "mqtts"
        return f"{scheme}://{self.host}:{self.port}"

    # -- Destination ------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> None:
        if self._closed:
            raise DeliveryError("closed", f"{self._where}: destination closed", retryable=True)
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
            await self._drop(client)
            detail = str(e) or f"no answer within {self.timeout:g} s"
            raise DeliveryError(
                "broker", f"{self._where}: {type(e).__name__}: {detail}", retryable=True, value=self._where
            ) from e
        except ValueError as e:  # paho refuses the topic or payload itself: retrying cannot help
            detail = f"{self._where}: {e}"
            raise DeliveryError("refused", detail, retryable=False, value=delivery.subject) from e

    async def close(self) -> None:
        self._closed = True
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
        if isinstance(event, FaultRaised | FaultCleared):
            where = f"{_component(event.point)}/{_level(event.condition)}"
            out.append(self._state(f"{base}/{where}", event, isinstance(event, FaultRaised)))
        elif isinstance(event, DeviceOffline | DeviceOnline):
            out.append(self._state(f"{base}/device/offline", event, isinstance(event, DeviceOffline)))
        return out

    def _state(self, path: str, event: Envelope, is_open: bool) -> tuple[str, bytes, bool]:
        topic = f"{self.topic_prefix}/faults/{path}"
        if not is_open:
            return topic, b"", True  # an empty retained message deletes the retained one
        dumped = event.model_dump(mode="json")
        return topic, _json({"state": "open", "since": dumped["received_at"], "event": dumped}), True

    # -- connection -------------------------------------------------------------------

    async def _connected(self) -> aiomqtt.Client:
        """The kept connection, or a new one.

        Bounded by aiomqtt and paho, not by cancelling: the TCP connect and TLS
        handshake (paho, in a thread) by ``connect_timeout``, CONNACK by aiomqtt's
        ``timeout``. Cancelling aiomqtt while it awaits CONNACK leaves it holding a
        cancelled future, after which it can never close that socket.
        """
        async with self._connect_lock:
            if self._client is not None:
                return self._client
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
            attempt = asyncio.ensure_future(client.__aenter__())
            try:
                await asyncio.shield(attempt)
            except BaseException:
                if not attempt.done():  # we were cancelled: let the attempt end by its own timeouts
                    await asyncio.wait([attempt])
                    if not attempt.cancelled():
                        attempt.exception()  # its failure is moot now; mark it retrieved
                await self._discard(client)  # e.g. CONNACK timed out: aiomqtt leaves the socket open
                raise
            if self._closed:  # close() ran while we connected: do not leave this one open
                await self._discard(client)
                raise DeliveryError("closed", f"{self._where}: destination closed", retryable=True)
            log.info("MQTT connected to %s", self._where)
            self._client = client
            _LINKS.inc()
            return client

    async def _publish(self, client: aiomqtt.Client, messages: list[tuple[str, bytes, bool]]) -> None:
        # Sequential on purpose: the state message follows its event. aiomqtt's qos=1
        # publish returns only after the broker's PUBACK; a cancelled wait is harmless.
        async with asyncio.timeout(self.timeout):
            for topic, payload, retain in messages:
                await client.publish(topic, payload, qos=1, retain=retain)

    async def _drop(self, client: aiomqtt.Client | None) -> None:
        if client is None:
            return
        if self._client is client:
            self._client = None
            _LINKS.dec()
            log.warning("MQTT connection to %s dropped; the next delivery reconnects", self._where)
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


def _paho(client: aiomqtt.Client) -> mqtt.Client:
    """aiomqtt 2 exposes neither paho's connect timeout (default 5 s) nor whether a socket is open."""
    return client._client
