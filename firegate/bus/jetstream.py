"""NATS connection, stream and KV set-up, and pipelined JetStream publishing.

`AckMux` is firegate's publish path rather than nats-py's ``publish_async``:
that one leaks a pending slot (and can then stall forever) when the
underlying publish raises, and its futures have no deadline. Here every
pending ack has a timer, so awaiting it is always bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import DEFAULT_PENDING_SIZE
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DiscardPolicy, KeyValueConfig, StorageType, StreamConfig, StreamInfo
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from firegate import subjects
from firegate.bus import metrics
from firegate.bus.errors import NatsConnectError, PublishError, StreamConfigError
from firegate.bus.permissions import Identity, PermissionViolation, identity, refusals

if TYPE_CHECKING:
    from firegate.config import Nats

log = logging.getLogger(__name__)

MSG_ID_HEADER: Final = subjects.MSG_ID_HEADER
# JetStream atomic batch publishing (ADR-50): stored all or nothing, and on a single-node file
# stream the whole batch costs one fsync instead of one per message (group commit).
BATCH_ID_HEADER: Final = "Nats-Batch-Id"
BATCH_SEQUENCE_HEADER: Final = "Nats-Batch-Sequence"
BATCH_COMMIT_HEADER: Final = "Nats-Batch-Commit"
MAX_BATCH: Final = 1000  # the server's default limit of messages per atomic batch
_ERR_BATCH_DUPLICATE: Final = 10201  # a msg id in the batch is already stored: nothing was stored
PENDING_SIZE: Final = DEFAULT_PENDING_SIZE  # nats-py's outgoing buffer, as connect() sets it
# nats-py's publish only awaits something (a forced flush) once that buffer is
# past its size; well below it, it appends and returns, so the timeout each
# send would otherwise need (a quarter of the publish cost) can be skipped.
_PUBLISH_NEVER_WAITS_BELOW: Final = PENDING_SIZE // 2
_STATUS_HEADER: Final = "Status"
_ERR_STREAM_NAME_IN_USE: Final = 10058


# -- connection -----------------------------------------------------------------------


class _ConnectionLog:
    """Connection callbacks that log one line per change, not one traceback per retry."""

    def __init__(self, name: str, who: Identity | None = None) -> None:
        self.name = name
        self.who = who or Identity("nats.user", "")  # the user and its setting, for permission errors
        self.nc: NATS | None = None
        self._refused: set[tuple[str, str]] = set()  # each refused subject is logged once
        self._last_error = ""
        self.last_exception: Exception | None = None  # why the first connect keeps failing

    async def error(self, e: Exception) -> None:
        violation = PermissionViolation.parse(e)
        if violation is not None:
            metrics.nats_permission_errors[violation.operation].inc()
            refusals.record(violation, self.who)
            key = (violation.operation, violation.subject)
            if key not in self._refused:
                self._refused.add(key)
                log.error(
                    "NATS (%s): %s; what needs it is retried, and not ready meanwhile",
                    self.name,
                    violation.explain(str(self.who)),
                    extra={"subject": violation.subject, "operation": violation.operation},
                )
            return
        # A reset or timeout after a refusal (auth, TLS) must not hide the refusal.
        plain = isinstance(e, (ConnectionError, TimeoutError, EOFError)) and not isinstance(e, ssl.SSLError)
        if not plain or self.last_exception is None:
            self.last_exception = e
        text = f"{type(e).__name__}: {e}".rstrip(": ")
        if text != self._last_error:  # repeated reconnect failures log once
            log.warning("NATS (%s) error: %s", self.name, text)
            self._last_error = text

    async def disconnected(self) -> None:
        metrics.nats_connected.set(0)
        if self.nc is None or not self.nc.is_closed:  # closing says so in closed()
            log.warning("NATS (%s) disconnected; reconnecting", self.name)

    async def reconnected(self) -> None:
        metrics.nats_connected.set(1)
        self._last_error = ""
        url = self.nc.connected_url if self.nc is not None else None
        log.info("NATS (%s) reconnected to %s", self.name, url.netloc if url else "?")

    async def closed(self) -> None:
        metrics.nats_connected.set(0)
        log.info("NATS (%s) connection closed", self.name)


def split_urls(urls: Sequence[str] | str) -> list[str]:
    """Flatten URLs as an operator writes them (``nats://a:4222,nats://b:4222``)."""
    items = [urls] if isinstance(urls, str) else list(urls)
    return [u.strip() for item in items for u in item.split(",") if u.strip()]


async def connect(
    urls: Sequence[str] | str,
    name: str = "firegate",
    *,
    creds: str | os.PathLike[str] | None = None,
    nkey: str | os.PathLike[str] | None = None,
    tls: ssl.SSLContext | None = None,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    inbox_prefix: str | None = None,
    connect_timeout: float = 10.0,
    attempt_timeout: int = 2,
    reconnect_time_wait: float = 1.0,
    ping_interval: int = 10,
    max_outstanding_pings: int = 3,
) -> NATS:
    """Connect to NATS, reconnecting forever afterwards.

    The first connection must succeed within ``connect_timeout`` seconds (with
    ``max_reconnect_attempts=-1`` nats-py would otherwise retry the first
    connect forever) or NatsConnectError is raised. A dead peer is noticed
    after about ``ping_interval * max_outstanding_pings`` seconds.
    """
    servers = split_urls(urls)
    if not servers:
        raise NatsConnectError([], connect_timeout, ValueError("no NATS URL given"))
    state = _ConnectionLog(name, identity(user, creds, token is not None, nkey))
    nc = NATS()
    state.nc = nc
    options: dict[str, Any] = {}
    if creds is not None:
        options["user_credentials"] = os.fspath(creds)
    if nkey is not None:
        options["nkeys_seed"] = os.fspath(nkey)
    if tls is not None:
        options["tls"] = tls
    if user is not None:
        options["user"] = user
    if password is not None:
        options["password"] = password
    if token is not None:
        options["token"] = token
    if inbox_prefix is not None:
        options["inbox_prefix"] = inbox_prefix
    try:
        async with asyncio.timeout(connect_timeout):
            await nc.connect(
                servers=servers,
                name=name,
                error_cb=state.error,
                disconnected_cb=state.disconnected,
                reconnected_cb=state.reconnected,
                closed_cb=state.closed,
                connect_timeout=attempt_timeout,
                reconnect_time_wait=reconnect_time_wait,  # type: ignore[arg-type]  # a float works
                max_reconnect_attempts=-1,
                ping_interval=ping_interval,
                max_outstanding_pings=max_outstanding_pings,
                flush_timeout=float(attempt_timeout),
                pending_size=PENDING_SIZE,
                **options,
            )
    except (TimeoutError, OSError, nats.errors.Error) as e:
        await _close_quietly(nc)
        # A timeout says little; the error behind the retries (auth, TLS) says why.
        cause = state.last_exception if isinstance(e, TimeoutError) and state.last_exception else e
        raise NatsConnectError(servers, connect_timeout, cause) from e
    except BaseException:
        await _close_quietly(nc)
        raise
    metrics.nats_connected.set(1)
    url = nc.connected_url
    log.info("NATS (%s) connected to %s", name, url.netloc if url else servers)
    return nc


def tls_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A client TLS context: verify the server with ``ca`` (else the system CAs), present ``cert``+``key``.

    None when nothing is set (then a ``tls://`` URL alone still makes nats-py
    use TLS with the system CAs). ``cert`` and ``key`` go together.
    """
    if ca is None and cert is None and key is None:
        return None
    if (cert is None) != (key is None):
        raise ValueError("tls_cert and tls_key go together: set both or neither")
    cafile = os.fspath(ca) if ca is not None else None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if cert is not None and key is not None:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    return ctx


def connect_options(nats_settings: Nats) -> dict[str, Any]:
    """The ``[nats]`` settings as keyword arguments for `connect` (creds, nkey, tls, user,
    password, token)."""
    s = nats_settings
    return {
        "creds": s.creds_file,
        "nkey": s.nkey_file,
        "tls": tls_context(s.tls_ca, s.tls_cert, s.tls_key),
        "user": s.user,
        "password": s.password.get_secret_value() if s.password is not None else None,
        "token": s.token.get_secret_value() if s.token is not None else None,
    }


async def _close_quietly(nc: NATS) -> None:
    try:
        async with asyncio.timeout(2.0):
            await nc.close()
    except (TimeoutError, OSError, nats.errors.Error) as e:
        log.debug("closing a half-open NATS client: %r", e)


# -- stream and KV --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What firegate asks of one stream; other settings are left as found. The defaults are one
    stream over every event, as before separate retention (tests, benches): firegate itself
    stores records and telemetry apart (`firegate.bus.retention.StreamLayout`)."""

    name: str = "FIRE"
    subjects: tuple[str, ...] = ("fire.>",)
    duplicate_window: float = 120.0  # covers a UITD's 3 x 10 s retransmissions and a restart
    max_age: float = 400 * 86400.0  # the standard asks for a year of records
    max_bytes: int = -1  # -1: bounded by the server's max_file (discard old when reached)
    num_replicas: int = 1
    allow_atomic: bool = True  # batches are firegate's group commit (AckMux.send_batch)

    def __post_init__(self) -> None:
        if not self.subjects:
            raise StreamConfigError(self.name, "no subjects")
        if self.duplicate_window <= 0:
            raise StreamConfigError(self.name, f"duplicate_window must be > 0, got {self.duplicate_window}")
        if self.max_age <= 0 or self.max_age < self.duplicate_window:
            raise StreamConfigError(
                self.name, f"max_age must be > 0 and >= duplicate_window, got {self.max_age}"
            )
        if self.max_bytes == 0 or self.max_bytes < -1:
            raise StreamConfigError(self.name, f"max_bytes must be -1 or > 0, got {self.max_bytes}")
        if not 1 <= self.num_replicas <= 5:
            raise StreamConfigError(self.name, f"num_replicas must be 1..5, got {self.num_replicas}")


def _differs(a: float | None, b: float) -> bool:
    return a is None or abs(a - b) > 1e-3


async def ensure_stream(js: JetStreamContext, settings: StreamSettings = StreamSettings()) -> StreamInfo:
    """Create the stream, or update an existing one to ``settings`` (replicas included)."""
    try:
        info = await js.stream_info(settings.name)
    except nats.js.errors.NotFoundError:
        config = StreamConfig(
            name=settings.name,
            subjects=list(settings.subjects),
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            duplicate_window=settings.duplicate_window,
            max_age=settings.max_age,
            max_bytes=settings.max_bytes,
            num_replicas=settings.num_replicas,
            allow_atomic=settings.allow_atomic or None,
        )
        try:
            created = await js.add_stream(config)
        except nats.js.errors.BadRequestError as e:
            if e.err_code != _ERR_STREAM_NAME_IN_USE:  # else another gateway won the race
                raise StreamConfigError(settings.name, f"cannot create: {e.description}") from e
        except nats.js.errors.APIError as e:
            raise StreamConfigError(settings.name, f"cannot create: {e.description}") from e
        else:
            log.info("created stream %s over %s", settings.name, ", ".join(settings.subjects))
            return created
        info = await js.stream_info(settings.name)
    current = info.config
    if current.storage not in (None, StorageType.FILE):
        raise StreamConfigError(
            settings.name,
            f"exists with {current.storage} storage, want file "
            "(storage cannot be changed; recreate the stream)",
        )
    wanted = {
        "subjects": sorted(settings.subjects),
        "duplicate_window": settings.duplicate_window,
        "max_age": settings.max_age,
        "max_bytes": settings.max_bytes,
        "num_replicas": settings.num_replicas,
    }
    if settings.allow_atomic and not current.allow_atomic:
        wanted["allow_atomic"] = True  # an older deployment's stream: batches need it
    changes = {
        k: v
        for k, v in wanted.items()
        if (
            sorted(current.subjects or []) != v
            if k == "subjects"
            else _differs(getattr(current, k), v)
            if isinstance(v, float)
            else getattr(current, k) != v
        )
    }
    if not changes:
        return info
    if "subjects" in changes:
        changes["subjects"] = list(settings.subjects)
    try:
        updated = await js.update_stream(current.evolve(**changes))
    except nats.js.errors.APIError as e:
        raise StreamConfigError(settings.name, f"cannot update {sorted(changes)}: {e.description}") from e
    log.info("updated stream %s: %s", settings.name, ", ".join(f"{k}={v}" for k, v in changes.items()))
    return updated


async def ensure_kv(
    js: JetStreamContext,
    bucket: str,
    *,
    replicas: int = 1,
    history: int = 1,
    ttl: float | None = None,
    allow_atomic: bool = False,
) -> KeyValue:
    """Open a file-backed KV bucket, creating it or updating its replicas/history (and letting it
    take atomic batches, for writers that group their writes)."""
    if not 1 <= replicas <= 5:
        raise StreamConfigError(f"KV_{bucket}", f"replicas must be 1..5, got {replicas}")
    if not 1 <= history <= 64:
        raise StreamConfigError(f"KV_{bucket}", f"history must be 1..64, got {history}")
    try:
        kv = await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        try:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket, history=history, replicas=replicas, ttl=ttl, storage=StorageType.FILE
                )
            )
        except nats.js.errors.APIError as e:
            raise StreamConfigError(f"KV_{bucket}", f"cannot create: {e.description}") from e
        log.info("created KV bucket %s", bucket)
        created = True
        if not allow_atomic:
            return kv
    else:
        created = False
    stream = f"KV_{bucket}"
    current = (await js.stream_info(stream)).config
    changes: dict[str, Any] = {}
    if current.num_replicas != replicas:
        changes["num_replicas"] = replicas
    if current.max_msgs_per_subject != history:
        changes["max_msgs_per_subject"] = history
    if allow_atomic and not current.allow_atomic:
        changes["allow_atomic"] = True
    if changes:
        try:
            await js.update_stream(current.evolve(**changes))
        except nats.js.errors.APIError as e:
            raise StreamConfigError(stream, f"cannot update {sorted(changes)}: {e.description}") from e
        if not created:  # a new bucket's atomic batches are part of its creation, not news
            log.info("updated KV bucket %s: %s", bucket, changes)
    return kv


# -- pipelined publishing -------------------------------------------------------------


class PubAck(NamedTuple):
    stream: str
    seq: int
    duplicate: bool
    messages: int = 1  # messages the ack covers (a committed batch: all of them)


class _Pending:
    __slots__ = ("batch", "future", "msg_id", "subject", "timer")

    def __init__(
        self, future: asyncio.Future[PubAck], subject: str, msg_id: str, timer: asyncio.TimerHandle
    ) -> None:
        self.future = future
        self.subject = subject
        self.msg_id = msg_id
        self.timer = timer
        self.batch: tuple[str, int] | None = None  # (batch id, messages) its ack must confirm


def _send_error(e: BaseException, subject: str, msg_id: str, too_large: str) -> BaseException:
    """What a failed send raises: a PublishError that says whether to retry, or ``e`` itself
    (a cancellation, a bug)."""
    if isinstance(e, nats.errors.MaxPayloadError):
        return PublishError(subject, msg_id, "too_large", retryable=False, detail=too_large)
    if isinstance(e, nats.errors.BadSubjectError):
        return PublishError(subject, msg_id, "bad_subject", retryable=False)
    if isinstance(e, TimeoutError):
        return PublishError(subject, msg_id, "timeout", retryable=True, detail="send stalled")
    if isinstance(e, (nats.errors.Error, OSError)):
        return PublishError(subject, msg_id, "disconnected", retryable=True, detail=repr(e))
    return e


class AckMux:
    """Publishes to JetStream with one wildcard inbox for every ack.

    ``send`` writes the message and returns a future that always completes
    within ``ack_timeout``: with the ack, or with a PublishError. Not connected
    means failing fast (retryable) rather than filling nats-py's reconnect
    buffer: the caller's retry or the spool handles it.
    """

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox() + "."
        self._pending: dict[str, _Pending] = {}
        self._next = 0
        self._sub: Subscription | None = None
        self._batch_prefix = nc.new_inbox().rsplit(".", 1)[-1][:16]
        self.last_ack = 0.0  # loop time of the last successful ack: is JetStream answering?

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        for token in list(self._pending):
            self._fail(token, "closed", retryable=True)
        if sub is not None and not self._nc.is_closed:
            try:
                async with asyncio.timeout(2.0):
                    await sub.unsubscribe()
            except (TimeoutError, nats.errors.Error) as e:
                log.debug("unsubscribing the ack inbox: %r", e)

    async def send(
        self, subject: str, payload: bytes, msg_id: str, ack_timeout: float
    ) -> asyncio.Future[PubAck]:
        """Publish with ``Nats-Msg-Id``; raises PublishError if it could not even be sent."""
        nc = self._nc
        token, future = self._expect(subject, msg_id, ack_timeout)
        reply = self._prefix + token
        headers = {MSG_ID_HEADER: msg_id}
        with self._sending(token, future, subject, msg_id, f"{len(payload)} bytes > {nc.max_payload}"):
            if nc.pending_data_size + len(payload) < _PUBLISH_NEVER_WAITS_BELOW:
                await nc.publish(subject, payload, reply=reply, headers=headers)
            else:  # it may wait for a forced flush: bound that wait
                async with asyncio.timeout(ack_timeout):
                    await nc.publish(subject, payload, reply=reply, headers=headers)
        return future

    async def send_batch(
        self, items: Sequence[tuple[str, bytes, str]], ack_timeout: float
    ) -> asyncio.Future[PubAck]:
        """Publish (subject, payload, msg id) items as one atomic batch; the future completes
        with the commit's ack (all stored) or a PublishError (none stored). A batch holding a msg
        id already stored is refused whole: reason ``batch_refused`` (send those one by one)."""
        if not 0 < len(items) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1..{MAX_BATCH} messages, got {len(items)}")
        nc = self._nc
        subject, _, last_id = items[-1]
        token, future = self._expect(subject, last_id, ack_timeout)
        batch_id = f"{self._batch_prefix}{token}"
        self._pending[token].batch = (batch_id, len(items))
        last = len(items)
        with self._sending(token, future, subject, last_id, f"a message > {nc.max_payload} bytes"):
            async with asyncio.timeout(ack_timeout):  # a forced flush may wait: bound it
                for n, (subj, payload, msg_id) in enumerate(items, 1):
                    headers = {
                        MSG_ID_HEADER: msg_id,
                        BATCH_ID_HEADER: batch_id,
                        BATCH_SEQUENCE_HEADER: str(n),
                    }
                    if n == last:
                        headers[BATCH_COMMIT_HEADER] = "1"
                        await nc.publish(subj, payload, reply=self._prefix + token, headers=headers)
                    else:
                        await nc.publish(subj, payload, headers=headers)
        return future

    def _expect(self, subject: str, msg_id: str, ack_timeout: float) -> tuple[str, asyncio.Future[PubAck]]:
        """Before a send: able to send at all (else a retryable PublishError), and the ack to
        wait for registered, failed by a timer at ``ack_timeout``."""
        if self._sub is None:
            raise PublishError(subject, msg_id, "closed", retryable=True)
        if not self._nc.is_connected:
            raise PublishError(subject, msg_id, "disconnected", retryable=True)
        loop = asyncio.get_running_loop()
        self._next += 1
        token = format(self._next, "x")
        future: asyncio.Future[PubAck] = loop.create_future()
        timer = loop.call_later(ack_timeout, self._fail, token, "timeout", True)
        self._pending[token] = _Pending(future, subject, msg_id, timer)
        return token, future

    @contextlib.contextmanager
    def _sending(
        self, token: str, future: asyncio.Future[PubAck], subject: str, msg_id: str, too_large: str
    ) -> Iterator[None]:
        """Around a send: if it raises, nobody waits for its ack, and the error says whether to
        retry (a PublishError), or is raised as it came (a cancellation, a bug)."""
        try:
            yield
        except BaseException as e:
            pending = self._pending.pop(token, None)
            if pending is not None:
                pending.timer.cancel()
            future.cancel()
            error = _send_error(e, subject, msg_id, too_large)
            if error is e:
                raise
            raise error from e

    def _fail(self, token: str, reason: str, retryable: bool, detail: str = "") -> None:
        pending = self._pending.pop(token, None)
        if pending is None:
            return
        pending.timer.cancel()
        if not pending.future.done():
            pending.future.set_exception(
                PublishError(pending.subject, pending.msg_id, reason, retryable=retryable, detail=detail)
            )

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._prefix) :]
        if msg.headers and msg.headers.get(_STATUS_HEADER) == "503":
            self._fail(token, "no_responders", True, "no stream answers this subject (yet)")
            return
        try:
            resp = json.loads(msg.data)
            error = resp.get("error")
        except (ValueError, AttributeError):
            self._fail(token, "api_error", True, f"unreadable ack {msg.data[:80]!r}")
            return
        if error:
            description = str(error.get("description", ""))
            if error.get("err_code") == _ERR_BATCH_DUPLICATE or "atomic publish is disabled" in description:
                # nothing of the batch was stored; its records can still go one by one
                self._fail(token, "batch_refused", True, f"{error.get('err_code')} {description}")
                return
            # Every API error is retried: in a cluster most are transient
            # (no leader, stream offline), and the spool keeps what is not.
            self._fail(
                token,
                "api_error",
                True,
                f"{error.get('code')}/{error.get('err_code')} {error.get('description')}",
            )
            return
        pending = self._pending.get(token)
        if pending is None:
            return
        if pending.batch is not None and (resp.get("batch"), resp.get("count")) != pending.batch:
            # a server without atomic batches stores the commit alone and acks it like a plain
            # publish: the rest of the batch may not be stored. Never take that for the batch.
            self._fail(token, "batch_refused", True, f"atomic publish is disabled here: ack {resp}")
            return
        del self._pending[token]
        pending.timer.cancel()
        self.last_ack = asyncio.get_running_loop().time()
        if not pending.future.done():
            pending.future.set_result(
                PubAck(
                    resp.get("stream", ""),
                    resp.get("seq", 0),
                    bool(resp.get("duplicate", False)),
                    int(resp.get("count", 1)),
                )
            )
