"""firegate's configuration: one YAML file, every key overridable from the environment.

``FIREGATE_<SECTION>__<KEY>`` (case-insensitive) wins over the file, the file
wins over the defaults, and the defaults alone run a complete single-node
system (`firegate run` with no config). Every way a configuration can be wrong
comes out as one :class:`ConfigError` listing each key and reason; pydantic's
and YAML's own exceptions never escape.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import ssl
import sys
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import time
from functools import cache
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from firegate.configfile import (
    Item,
    YamlDoc,
    env_var,
    in_file_order,
    is_model,
    located,
    raise_problems,
    read_yaml,
    validation_items,
)
from firegate.devicetime import DEFAULT_ZONE, zone_named
from firegate.errors import MISSING, ConfigError, ConfigProblem, mask_url
from firegate.gateway.serial.config import Panels
from firegate.secrets import FILE_SUFFIX, conflicts, read_secret, secret_from_files

ENV_PREFIX = "FIREGATE_"
EMBEDDED_HOST = "127.0.0.1"
# FIREGATE_* variables firegate reads that are not configuration keys; every other
# FIREGATE_* variable must name a key (a typo is an error, not silently ignored)
NOT_CONFIG_VARS = frozenset(
    {
        "FIREGATE_OPERATOR",  # `firegate alarm --operator`'s default
        "FIREGATE_REGEN_GOLDEN",  # a codec's tests rewrite their golden files (codecs/testing.py)
    }
)
# what a container platform sets for a service or a linked container named "firegate": the
# kubelet's FIREGATE_SERVICE_HOST, FIREGATE_SERVICE_PORT[_NAME], FIREGATE_PORT[_9001_TCP_ADDR...],
# and Docker links' FIREGATE_NAME and FIREGATE_ENV_*. Not ours, never an error.
PLATFORM_VARS = re.compile(
    r"FIREGATE_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)\w*)?|NAME|ENV_\w+)"
)

# ---------------------------------------------------------------------------
# value parsers (public: the CLI and the layers reuse them)


def parse_host_port(value: str) -> tuple[str, int]:
    """``"0.0.0.0:9001"`` -> ``("0.0.0.0", 9001)``; ``"[::1]:9001"`` -> ``("::1", 9001)``."""
    text = value.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError("expected [IPv6]:port, e.g. [::]:9001")
        try:
            if ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError("expected host:port, e.g. 0.0.0.0:9001")
        if ":" in host:
            raise ValueError("an IPv6 address needs brackets, e.g. [::]:9001")
        if not host:
            raise ValueError("the host is missing: write 0.0.0.0:PORT to listen on every interface")
        if not _valid_host(host):
            raise ValueError(f"{host!r} is not an IP address or host name")
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValueError(f"the port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"the port {port} is outside 1-65535")
    return host, port


_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")


def _valid_host(host: str) -> bool:
    try:
        ip_address(host)
        return True
    except ValueError:
        pass
    # "999.1.1.1" matches the host name pattern but is a mistyped IPv4 address
    return bool(_HOSTNAME.match(host)) and not re.fullmatch(r"[0-9.]+", host)


# Same suffixes as nats-server's config, because these sizes end up there:
# K/M/G/T are powers of 1000, KB/KiB/Ki (and MB, ...) powers of 1024.
_SIZE_UNITS: dict[str, int] = {"": 1, "B": 1}
for _i, _p in enumerate("KMGT", start=1):
    _SIZE_UNITS[_p] = 1000**_i
    for _suffix in ("B", "I", "IB"):
        _SIZE_UNITS[_p + _suffix] = 1024**_i
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: str | int) -> int:
    """``"50G"`` -> 50_000_000_000, ``"64KiB"`` -> 65536, ``4096`` -> 4096 (nats-server's suffixes)."""
    if isinstance(value, bool):  # bool is an int; True is not a size
        raise ValueError("expected a size such as 1G or 64KiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE.match(value)
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _SIZE_UNITS:
        raise ValueError("expected a size such as 512M, 1G, 64KiB or a number of bytes")
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


# ---------------------------------------------------------------------------
# field types


def _blank_to_none(value: Any) -> Any:
    # FIREGATE_NATS__URL= (empty) means "unset", as an operator would expect
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def _host_port(value: str) -> str:
    host, port = parse_host_port(value)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _size_input(value: Any) -> Any:
    return parse_size(value) if isinstance(value, str | bool) else value


def _existing_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError("file not found" if not value.exists() else "not a regular file")
    return value


def _nats_urls(value: str | None) -> str | None:
    if value is None:
        return None
    urls = [u.strip() for u in value.split(",")]
    for url in urls:
        if not url:
            raise ValueError("empty entry in the comma-separated URL list")
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls", "ws", "wss"):
            raise ValueError(f"{mask_url(url)!r}: expected nats://, tls://, ws:// or wss:// host:port")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if not parts.hostname or port is None or not 1 <= port <= 65535:
            raise ValueError(f"{mask_url(url)!r}: expected {parts.scheme}://host:port with a port 1-65535")
    return ",".join(urls)


def _url(value: str, schemes: tuple[str, ...], expected: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in schemes or not parts.hostname or not port_ok:
        raise ValueError(expected)
    return url


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    return _url(value, ("http", "https"), "expected an http:// or https:// URL with a host")


def _daily_time(value: Any) -> Any:
    value = _blank_to_none(value)
    if value is None or isinstance(value, time):
        return value
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", value.strip()) if isinstance(value, str) else None
    if not m:
        raise ValueError("expected 'HH:MM' (24-hour, in the device time zone, quoted in YAML)")
    return time(int(m.group(1)), int(m.group(2)))


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _topic_prefix(value: str) -> str:
    wildcards = "".join(c for c in "#+" if c in value)
    if wildcards:
        what = " or ".join(repr(c) for c in wildcards)
        raise ValueError(f"must not contain {what}: MQTT wildcards cannot be part of a topic")
    if any(c.isspace() or c == "\x00" for c in value):
        raise ValueError("must not contain spaces or other whitespace, or NUL")
    if not value.strip("/"):
        raise ValueError("must name at least one topic level: not empty, and not only '/'")
    return value


def _token(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ValueError("use only letters, digits, '-' and '_' (at most 64): it is one NATS subject token")
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]
# Stream names, site ids, device ids: always a single NATS subject token.
Token = Annotated[str, AfterValidator(_token)]
Size = Annotated[int, BeforeValidator(_size_input), Field(gt=0)]
Positive = Annotated[float, Field(gt=0)]
Seconds = Positive


def _covers_retransmission(v: float) -> float:
    if v < 30:
        raise ValueError(
            "must be at least 30 s: a UITD retransmits for 3 x 10 s, and those copies must be dropped"
        )
    return v


def _above_heartbeat(v: float) -> float:
    if v <= 30:
        raise ValueError("must exceed the UITD heartbeat period (about 30 s); GB 26875 uses 100 s")
    return v


def _time_zone(v: str) -> str:
    zone_named(v)  # ValueError: unknown, with what to write instead
    return v.strip()


def _gb50440_patrol(v: float) -> float:
    if v > 7200:
        raise ValueError("must be at most 7200 s: GB 50440 requires a patrol at least every 2 h (0 disables)")
    return v


# Relative paths written in the file are resolved against the file's directory
# by load_settings; paths from the environment against the working directory.
OptFile = Annotated[Path | None, BeforeValidator(_blank_to_none), AfterValidator(_existing_file)]
OptSecret = Annotated[SecretStr | None, BeforeValidator(_blank_to_none)]
OptStr = Annotated[str | None, BeforeValidator(_blank_to_none)]


# ---------------------------------------------------------------------------
# rules across keys
#
# A rule that involves several keys runs on whatever validated, even when other
# keys failed, so that one `config check` reports every problem at once; a rule
# one of whose keys failed is skipped, since its failure is already reported.

Problem = tuple[str, str, object]
"""A broken rule: the key to report (dotted, relative to the model), the reason, the value."""


@dataclass(frozen=True)
class Known:
    """Which values validated, as seen from the model at ``base``."""

    failed: frozenset[tuple[str, ...]] = frozenset()
    base: tuple[str, ...] = ()

    def _path(self, key: str) -> tuple[str, ...]:
        return (*self.base, *key.split("."))

    def __call__(self, *keys: str) -> bool:
        """Every one of ``keys`` (e.g. ``"timeout"``, ``"nats.url"``) validated, and all inside it."""
        for key in keys:
            path = self._path(key)
            if any(f[: len(path)] == path or path[: len(f)] == f for f in self.failed):
                return False
        return True

    def lost(self, key: str) -> bool:
        """``key`` (or what holds it) failed as a whole: nothing in it is usable."""
        path = self._path(key)
        return any(path[: len(f)] == f for f in self.failed)

    def bad(self, key: str) -> bool:
        """``key`` was given a value that failed (so it is set, just not validly)."""
        path = self._path(key)
        return any(f[: len(path)] == path for f in self.failed)

    def at(self, *parts: str) -> Known:
        return Known(self.failed, (*self.base, *parts))


ALL_KNOWN = Known()

# load_settings runs the rules itself once the fields are validated (see _load); a
# model constructed directly (Nats(...), Settings(...)) checks them as it always did.
_rules_deferred: ContextVar[bool] = ContextVar("firegate_rules_deferred", default=False)


def _given(model: BaseModel, known: Known, key: str) -> int:
    """How directly ``key`` (dotted, below ``model``) got its value: 2 from the environment, 1 from
    the file, 0 a default. A rule between two keys is reported on the more direct one: the one
    the operator just changed, not its partner from the example file."""
    if env_var(ENV_PREFIX, (*known.base, *key.split("."))) is not None:
        return 2
    *holders, name = key.split(".")
    for holder in holders:
        model = getattr(model, holder)
    return 1 if name in model.model_fields_set else 0


def _rather(model: BaseModel, known: Known, key: str, other: str) -> bool:
    """Report a rule between ``key`` and ``other`` on ``key``?"""
    return _given(model, known, key) > _given(model, known, other)


def _tls_files(ca: Path | None, cert: Path | None, key: Path | None, known: Known) -> list[Problem]:
    """Load the files as `firegate run` will, so a wrong file fails `config check`, not the start."""
    problems: list[Problem] = []
    if known("tls_cert", "tls_key") and (cert is None) != (key is None):
        given, missing = ("tls_cert", "tls_key") if key is None else ("tls_key", "tls_cert")
        why = f"tls_cert and tls_key go together: set {missing} too, or neither"
        problems.append((given, why, str(cert or key)))
    ctx = None
    if ca is not None and known("tls_ca"):
        try:
            ctx = ssl.create_default_context(cafile=str(ca))
        except (ssl.SSLError, OSError) as e:
            problems.append(("tls_ca", f"not a readable PEM CA certificate ({e})", str(ca)))
    if cert is not None and key is not None and known("tls_cert", "tls_key"):
        try:
            (ctx or ssl.create_default_context()).load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as e:
            problems.append(("tls_cert", f"certificate and key do not load as a pair ({e})", str(cert)))
    return problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def _problems(self, known: Known) -> list[Problem]:
        """This model's rules across keys; ``known`` tells which of its keys validated."""
        return []

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        """``password_file``, ``token_file``: the secret read from a file (firegate/secrets.py)."""
        names = [n for n in cls.model_fields if n + FILE_SUFFIX in cls.model_fields]
        return secret_from_files(data, names) if names else data

    @model_validator(mode="after")
    def _rules(self) -> _Section:
        if not _rules_deferred.get():
            raise_problems(self._problems(ALL_KNOWN) + self._secret_problems())
        return self

    def _secret_problems(self) -> list[Problem]:
        names = [n for n in type(self).model_fields if n + FILE_SUFFIX in type(self).model_fields]
        why = "is set in clear and as {0}_file: give the secret one way"
        return [(n, why.format(n), MISSING) for n in conflicts(self, names)]


# ---------------------------------------------------------------------------
# sections


class Nats(_Section):
    url: Annotated[str | None, BeforeValidator(_blank_to_none), AfterValidator(_nats_urls)] = None
    creds_file: OptFile = None
    nkey_file: OptFile = None  # an nkey seed (SU...): the server holds only its public key
    tls_ca: OptFile = None
    tls_cert: OptFile = None
    tls_key: OptFile = None
    user: OptStr = None
    password: OptSecret = None
    password_file: OptFile = None
    token: OptSecret = None
    token_file: OptFile = None
    # the subject token of this client's reply inboxes (default _INBOX): a user per role with an
    # inbox of its own (_INBOX_gateway) cannot read the replies meant for the others
    inbox_prefix: Annotated[Token | None, BeforeValidator(_blank_to_none)] = None
    connect_timeout: Seconds = 5.0
    embedded_port: Annotated[int, Field(ge=1, le=65535)] = 4223
    embedded_max_mem: Size = parse_size("256M")
    embedded_max_file: Size = parse_size("64G")
    embedded_sync: bool = True

    @property
    def embedded(self) -> bool:
        """No URL: firegate runs its own nats-server."""
        return self.url is None

    @property
    def urls(self) -> list[str]:
        """Where to connect: the configured servers, or the embedded one."""
        if self.url is None:
            return [f"nats://{EMBEDDED_HOST}:{self.embedded_port}"]
        return self.url.split(",")

    def _problems(self, known: Known) -> list[Problem]:
        problems = _tls_files(self.tls_ca, self.tls_cert, self.tls_key, known)
        file = self.password_file
        if file is not None and self.password is None and known("password_file") and _empty(file):
            problems.append(("password_file", "the file is empty", str(file)))
        elif known.bad("password_file") or (file is not None and self.password is None):
            pass  # the file's own problem says it all, not "set password too"
        elif known("user", "password") and (self.user is None) != (self.password is None):
            given, missing = ("user", "password") if self.password is None else ("password", "user")
            problems.append((given, f"user and password go together: set {missing} too, or neither", MISSING))
        given_auth = (
            ("user", self.user),
            ("token", self.token),
            ("creds_file", self.creds_file),
            ("nkey_file", self.nkey_file),
        )
        methods = [name for name, value in given_auth if value is not None and known(name)]
        if len(methods) > 1:
            both = " and ".join(methods)
            problems.append(
                (methods[1], f"use one of user/password, token, creds_file or nkey_file, not {both}", MISSING)
            )
        return problems


def _empty(path: Path) -> bool:
    try:
        return not read_secret(path).strip()
    except (OSError, UnicodeDecodeError):
        return False  # unreadable: the key's own check says so


RECORD_DAYS = 365  # GB 50440: at least a year of alarm records


class Bus(_Section):
    stream: Token = "FIRE"
    replicas: Annotated[int | None, Field(ge=1, le=5)] = None
    duplicate_window: Annotated[Seconds, AfterValidator(_covers_retransmission)] = 120.0
    max_age_days: Positive = 400.0
    max_bytes: Size = parse_size("50G")
    # telemetry (fire.telemetry: analog samples, device info) has a stream and a
    # window of its own, so that it can never evict a record (firegate/bus/retention.py)
    telemetry_stream: Token = "FIRE_TELEMETRY"
    telemetry_max_age_days: Positive = 30.0
    # None: a fifth of max_bytes (see telemetry_bytes)
    telemetry_max_bytes: Annotated[Size | None, BeforeValidator(_blank_to_none)] = None
    publish_retry: Seconds = 3.0
    spool_max_bytes: Size = parse_size("1G")

    @property
    def telemetry_bytes(self) -> int:
        """The telemetry stream's max_bytes: as set, else a fifth of the records' max_bytes."""
        if self.telemetry_max_bytes is not None:
            return self.telemetry_max_bytes
        return max(self.max_bytes // 5, 1)

    def _problems(self, known: Known) -> list[Problem]:
        problems = super()._problems(known)
        if known("max_age_days") and self.max_age_days < RECORD_DAYS:
            why = f"must be at least {RECORD_DAYS} days: GB 50440 asks a year of alarm records"
            problems.append(("max_age_days", why, self.max_age_days))
        if known("stream", "telemetry_stream") and self.stream == self.telemetry_stream:
            problems.append(("telemetry_stream", "must differ from bus.stream", self.telemetry_stream))
        days, telemetry_days = self.max_age_days, self.telemetry_max_age_days
        if known("max_age_days", "telemetry_max_age_days") and telemetry_days > days:
            if _rather(self, known, "max_age_days", "telemetry_max_age_days"):
                why = f"must be at least bus.telemetry_max_age_days ({telemetry_days:g})"
                problems.append(("max_age_days", why, days))
            else:
                why = f"must not exceed bus.max_age_days ({days:g}): records are kept longer"
                problems.append(("telemetry_max_age_days", why, telemetry_days))
        window = self.duplicate_window
        if known("duplicate_window", "telemetry_max_age_days") and telemetry_days * 86400 < window:
            why = f"must cover bus.duplicate_window ({window:g} s)"
            problems.append(("telemetry_max_age_days", why, telemetry_days))
        return problems


class GB26875(_Section):
    listen: HostPort = "0.0.0.0:9001"
    udp_listen: Annotated[HostPort | None, BeforeValidator(_blank_to_none)] = None
    center_address: Annotated[int, Field(ge=0, lt=1 << 48)] = 0
    address_mode: Literal["le_int", "ipv4_port", "bcd"] = "le_int"
    max_connections: Annotated[int, Field(ge=1)] = 20000
    first_frame_timeout: Seconds = 30.0
    idle_timeout: Annotated[Seconds, AfterValidator(_above_heartbeat)] = 100.0
    confirm_timeout: Seconds = 10.0
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    patrol_interval: Annotated[float, Field(ge=0), AfterValidator(_gb50440_patrol)] = 3600.0
    clock_sync_on_connect: bool = True
    clock_sync_daily_at: Annotated[time | None, BeforeValidator(_daily_time)] = None
    rate_limit_per_device: Positive = 20.0
    rate_burst: Annotated[int, Field(ge=1)] = 40
    write_buffer_limit: Size = 64 * 1024
    registry_policy: Literal["accept", "flag", "reject"] = "accept"
    drain_grace: Annotated[float, Field(ge=0, le=60)] = 2.0
    # the zone GB/T 26875.3 time tags (which carry none) are read and written in
    device_timezone: Annotated[str, AfterValidator(_time_zone)] = DEFAULT_ZONE


class Http(_Section):
    listen: HostPort = "0.0.0.0:9108"


def _http_urls(value: str | None) -> str | None:
    if value is None:
        return None
    urls = [u.strip() for u in value.split(",")]
    for url in urls:
        if not url:
            raise ValueError("empty entry in the comma-separated URL list")
        _http_url(url)
    return ",".join(urls)


def _mqtt_url(value: str) -> str:
    return _url(value, ("mqtt", "mqtts"), "expected mqtt://host:port or mqtts://host:port (TLS)")


EventKindFilter = Literal["fault", "device"]
FAULT_KINDS: tuple[EventKindFilter, ...] = get_args(EventKindFilter)


class _Delivery(_Section):
    """What every forwarder destination shares: how long to keep trying, how to back off."""

    max_age: Seconds = 3600.0
    backoff_initial: Seconds = 0.5
    backoff_max: Seconds = 30.0
    ack_wait: Annotated[float, Field(ge=1)] = 30.0

    def _problems(self, known: Known) -> list[Problem]:
        problems = super()._problems(known)
        if known("backoff_initial", "backoff_max") and self.backoff_max < self.backoff_initial:
            if _rather(self, known, "backoff_initial", "backoff_max"):
                why = f"must not exceed backoff_max ({self.backoff_max:g} s)"
                problems.append(("backoff_initial", why, self.backoff_initial))
            else:
                why = f"must not be below backoff_initial ({self.backoff_initial:g} s)"
                problems.append(("backoff_max", why, self.backoff_max))
        return problems


class _Client(_Delivery):
    """A destination firegate connects to: TLS files, and a timeout per attempt."""

    tls_ca: OptFile = None
    tls_cert: OptFile = None
    tls_key: OptFile = None
    timeout: Seconds = 5.0

    def _problems(self, known: Known) -> list[Problem]:
        problems = super()._problems(known)
        problems += _tls_files(self.tls_ca, self.tls_cert, self.tls_key, known)
        # the server redelivers a message held past ack_wait: an attempt must end before that
        if known("timeout", "ack_wait") and self.timeout >= self.ack_wait:
            if _rather(self, known, "ack_wait", "timeout"):
                why = f"must be above timeout ({self.timeout:g} s), or events are redelivered mid-attempt"
                problems.append(("ack_wait", why, self.ack_wait))
            else:
                problems.append(("timeout", f"must be below ack_wait ({self.ack_wait:g} s)", self.timeout))
        return problems


class Dispatch119(_Client):
    # one URL, or a comma-separated list: each endpoint gets every confirmed fire
    url: Annotated[str | None, BeforeValidator(_blank_to_none), AfterValidator(_http_urls)] = None
    token: OptSecret = None
    token_file: OptFile = None

    @property
    def urls(self) -> list[str]:
        return self.url.split(",") if self.url else []


class Center(_Section):
    """The monitoring center itself, named in every 119 body."""

    id: OptStr = None
    name: OptStr = None
    phone: OptStr = None


class _FaultFilter(_Client):
    """Which fault events a destination gets: empty lists mean all."""

    kinds: list[EventKindFilter] = Field(default_factory=lambda: list(FAULT_KINDS), min_length=1)
    sites: list[Token] = Field(default_factory=list)
    system_types: list[Annotated[int, Field(ge=0, le=255)]] = Field(default_factory=list)


class MqttDestination(_FaultFilter):
    url: Annotated[str, AfterValidator(_mqtt_url)]
    # not only slashes, and no wildcard, whitespace or NUL: it starts every topic
    topic_prefix: Annotated[str, AfterValidator(_topic_prefix)] = "firegate"
    username: OptStr = None
    password: OptSecret = None
    password_file: OptFile = None

    def _problems(self, known: Known) -> list[Problem]:
        problems = super()._problems(known)
        given = [k for k in ("tls_ca", "tls_cert", "tls_key") if getattr(self, k) is not None and known(k)]
        if given and known("url") and not self.url.startswith("mqtts://"):
            problems.append((given[0], "TLS settings need an mqtts:// url", MISSING))
        return problems


class WebhookDestination(_FaultFilter):
    url: Annotated[str, AfterValidator(_http_url)]
    token: OptSecret = None
    token_file: OptFile = None


class Faults(_Section):
    mqtt: list[MqttDestination] = Field(default_factory=list)
    webhooks: list[WebhookDestination] = Field(default_factory=list)


# -- sensors: IoT sensors over MQTT (firegate/gateway/sensors) ---------------------------


def _topic_filter(value: str) -> str:
    levels = value.split("/")
    if not value or "\x00" in value:
        raise ValueError("must be a non-empty MQTT topic filter without NUL")
    last = len(levels) - 1
    if any(("#" in v and (v != "#" or i != last)) or ("+" in v and v != "+") for i, v in enumerate(levels)):
        raise ValueError("'#' only as the whole last level, '+' only as a whole level")
    return value


Quantity = Literal["pressure", "level", "temperature", "current", "voltage", "gas", "flow", "count"]


class SensorThreshold(_Section):
    """A limit on a kind of point: beyond ``low``/``high`` for ``min_duration`` s of the sensor's
    time raises; back past the limit by ``hysteresis`` clears."""

    unit: str  # the unit low, high and hysteresis are written in (kPa, MPa, m, mA, °C...)
    low: float | None = None
    high: float | None = None
    hysteresis: Annotated[float, Field(ge=0)] = 0.0
    min_duration: Annotated[float, Field(ge=0)] = 0.0
    # alarm: the fire bit, where the standard makes it one (an electrical fire monitor's alarm)
    raises: Literal["fault", "alarm", "supervisory"] = "fault"

    def check(self, known: Known) -> list[Problem]:
        """Rules across this entry's keys, run by `Sensors` (the rules walk lists, not mappings)."""
        from firegate.gateway.sensors.units import quantity_of  # light: a table

        problems: list[Problem] = []
        if known("low", "high") and self.low is None and self.high is None:
            problems.append(("low", "give low, high or both", MISSING))
        if known("low", "high") and self.low is not None and self.high is not None and self.low >= self.high:
            problems.append(("low", f"must be below high ({self.high:g})", self.low))
        if known("unit") and quantity_of(self.unit) is None:
            why = "unknown unit (kPa, MPa, bar, m, cm, mm, °C, A, mA, V, %LEL, L/s...)"
            problems.append(("unit", why, self.unit))
        return problems


class SensorPoint(_Section):
    """Where a sensor's point sits in the standard's terms, and what judges it."""

    point: str = "*"  # the codec's name for it (pressure, smoke, ch1); * for any
    device: Token | None = None  # only this sensor; none: every sensor of the source
    quantity: Quantity | None = None  # none: from the sample's unit
    threshold: OptStr = None  # a name under sensors.thresholds
    system_type: Annotated[int, Field(ge=0, le=255)] = 1
    system_address: Annotated[int, Field(ge=0, le=255)] = 0
    component_type: Annotated[int, Field(ge=0, le=255)] = 0
    component_address: Annotated[int, Field(ge=0, lt=1 << 32)] = 0
    description: Annotated[str, Field(max_length=15)] = ""  # 31 bytes of GB18030
    fire_flags: list[str] = Field(default_factory=lambda: ["fire", "smoke"])
    fault_flags: list[str] = Field(default_factory=lambda: ["fault", "sensor_fault", "hardware_fault"])


class SensorSource(_Section):
    name: Token
    url: Annotated[str, AfterValidator(_mqtt_url)]
    username: OptStr = None
    password: OptSecret = None
    password_file: OptFile = None
    tls_ca: OptFile = None
    tls_cert: OptFile = None
    tls_key: OptFile = None
    client_id: OptStr = None  # fixed, for the persistent session; default firegate-sensors-<name>
    topics: Annotated[list[Annotated[str, AfterValidator(_topic_filter)]], Field(min_length=1)]
    codec: str
    codec_options: dict[str, Any] = Field(default_factory=dict)
    device_topic_level: int | None = None  # topic.split('/')[n] is the device id; none: the payload's
    site_topic_level: int | None = None
    site: Token | None = None  # when neither the registry nor the topic says
    report_interval: Seconds = 600.0  # silent longer: offline (a link fault)
    will_topics: list[Annotated[str, AfterValidator(_topic_filter)]] = Field(default_factory=list)
    points: list[SensorPoint] = Field(default_factory=list)
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 60
    timeout: Seconds = 10.0
    backoff_initial: Seconds = 1.0
    backoff_max: Seconds = 30.0

    def _problems(self, known: Known) -> list[Problem]:
        problems = _tls_files(self.tls_ca, self.tls_cert, self.tls_key, known)
        given = [k for k in ("tls_ca", "tls_cert", "tls_key") if getattr(self, k) is not None and known(k)]
        if given and known("url") and not self.url.startswith("mqtts://"):
            problems.append((given[0], "TLS settings need an mqtts:// url", MISSING))
        if known("codec", "codec_options"):
            from firegate.codecs.registry import UnknownCodec, discover

            try:
                discover().message_codec(self.codec, self.codec_options)
            except UnknownCodec as e:
                problems.append(("codec", str(e), self.codec))
            except (ValueError, TypeError, KeyError) as e:
                problems.append(("codec_options", f"not accepted by codec {self.codec!r}: {e}", MISSING))
        return problems


class Sensors(_Section):
    sources: list[SensorSource] = Field(default_factory=list)
    thresholds: dict[str, SensorThreshold] = Field(default_factory=dict)

    def _problems(self, known: Known) -> list[Problem]:
        from firegate.gateway.sensors.units import QUANTITIES, quantity_of

        problems: list[Problem] = []
        for limit, threshold in self.thresholds.items():
            if known(f"thresholds.{limit}"):
                entry = known.at("thresholds", limit)
                problems += [(f"thresholds.{limit}.{k}", why, v) for k, why, v in threshold.check(entry)]
        names: set[str] = set()
        for i, source in enumerate(self.sources):
            if source is None or known.at("sources").lost(str(i)):
                continue
            if known(f"sources.{i}.name") and source.name in names:
                problems.append((f"sources.{i}.name", "two sources have this name", source.name))
            names.add(source.name)
            for j, point in enumerate(source.points):
                key = f"sources.{i}.points.{j}.threshold"
                name = point.threshold if point is not None and known(key, "thresholds") else None
                if name and name not in self.thresholds:
                    problems.append((key, "no such name under sensors.thresholds", name))
                elif name and point.quantity is not None:
                    judged = quantity_of(self.thresholds[name].unit)
                    if judged is not None and judged is not QUANTITIES[point.quantity]:
                        why = f"is {point.quantity}, but its threshold judges {judged.name}"
                        problems.append((f"sources.{i}.points.{j}.quantity", why, point.quantity))
        return problems


class AutoConfirm(_Section):
    manual: bool = True
    detectors: Annotated[int, Field(ge=0)] = 2
    detector_window: Seconds = 120.0
    escalate_after: Annotated[Seconds | None, BeforeValidator(_blank_to_none)] = 300.0


class Alarms(_Section):
    incident_window: Seconds = 600.0
    retention: Seconds = 7 * 86400.0
    catch_up: Seconds = 600.0  # a new lifecycle consumer starts with the alarms of this last span
    auto_confirm: AutoConfirm = Field(default_factory=AutoConfirm)


Role = Literal["gateway", "lifecycle", "forwarders"]
ROLES: tuple[Role, ...] = get_args(Role)


class Log(_Section):
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = "INFO"
    format: Literal["json", "text"] = "json"


# ---------------------------------------------------------------------------
# the whole configuration

# The parsed YAML of the file being loaded, read by _FileSource. A context
# variable rather than init kwargs so that env still wins over the file while
# explicit Settings(...) arguments (tests) win over both.
_file_data: ContextVar[dict[str, Any] | None] = ContextVar("firegate_config_file", default=None)
# FIREGATE_* variables already reported (unknown, or not JSON where JSON is needed), lower case:
# the environment source leaves them out rather than fail on them a second time.
_env_skip: ContextVar[frozenset[str]] = ContextVar("firegate_env_skip", default=frozenset())
# receives the merged input (file + env) Settings validates, to rebuild what validated
_merged_input: ContextVar[list[Any] | None] = ContextVar("firegate_merged_input", default=None)


class _FileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole file at once

    def __call__(self) -> dict[str, Any]:
        return _file_data.get() or {}


class _EnvSource(EnvSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        skip = _env_skip.get()
        if skip:
            self.env_vars = {k: v for k, v in self.env_vars.items() if k.lower() not in skip}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path("./firegate-data")
    nats: Nats = Field(default_factory=Nats)
    bus: Bus = Field(default_factory=Bus)
    gb26875: GB26875 = Field(default_factory=GB26875)
    http: Http = Field(default_factory=Http)
    dispatch119: Dispatch119 = Field(default_factory=Dispatch119)
    center: Center = Field(default_factory=Center)
    faults: Faults = Field(default_factory=Faults)
    sensors: Sensors = Field(default_factory=Sensors)
    alarms: Alarms = Field(default_factory=Alarms)
    roles: list[Role] = Field(default_factory=lambda: list(ROLES), min_length=1)
    log: Log = Field(default_factory=Log)
    sites: OptFile = None
    panels: Panels = Field(default_factory=list)  # serial lines (firegate/gateway/serial)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvSource(settings_cls), _FileSource(settings_cls)

    @property
    def effective_replicas(self) -> int:
        """Replicas of stream FIRE and the KV buckets: 1 on one server, 3 on a listed cluster."""
        if self.bus.replicas is not None:
            return self.bus.replicas
        return 3 if len(self.nats.urls) > 1 else 1

    @model_validator(mode="before")
    @classmethod
    def _keep_input(cls, data: Any) -> Any:
        sink = _merged_input.get()
        if sink is not None:
            sink.append(data)
        return data

    @model_validator(mode="after")
    def _rules(self) -> Settings:
        if not _rules_deferred.get():
            raise_problems(self._problems(ALL_KNOWN))
        return self

    def _embedded(self, known: Known) -> bool | None:
        """Whether firegate runs its own nats-server; None when the nats section is unreadable."""
        if known.lost("nats"):
            return None
        # a nats.url that failed was still set to something: not the embedded server
        return not known.bad("nats.url") and self.nats.url is None

    def _problems(self, known: Known) -> list[Problem]:
        problems: list[Problem] = []
        embedded = self._embedded(known)
        if embedded and known("bus.replicas") and self.bus.replicas not in (None, 1):
            why = "the embedded nats-server is one node: use 1, or set nats.url to a cluster"
            problems.append(("bus.replicas", why, self.bus.replicas))
        if embedded and known("bus.max_bytes", "bus.telemetry_max_bytes", "nats.embedded_max_file"):
            # the embedded server's store holds both streams (records and telemetry)
            records, telemetry = self.bus.max_bytes, self.bus.telemetry_bytes
            max_bytes, max_file = records + telemetry, self.nats.embedded_max_file
            if max_bytes > max_file:
                both = f"bus.max_bytes + bus.telemetry_max_bytes ({records} + {telemetry} bytes)"
                bus_key = max(
                    ("bus.max_bytes", "bus.telemetry_max_bytes"), key=lambda k: _given(self, known, k)
                )
                if _rather(self, known, "nats.embedded_max_file", bus_key):
                    why = f"must be at least {both}: the embedded server stores them"
                    problems.append(("nats.embedded_max_file", why, max_file))
                else:
                    why = f"with the other stream, exceeds nats.embedded_max_file ({max_file} bytes): {both}"
                    problems.append((bus_key, why, records if bus_key == "bus.max_bytes" else telemetry))
        if known("alarms.catch_up", "alarms.retention") and self.alarms.catch_up > self.alarms.retention:
            if _rather(self, known, "alarms.retention", "alarms.catch_up"):
                why = f"must be at least alarms.catch_up ({self.alarms.catch_up:g} s)"
                problems.append(("alarms.retention", why, self.alarms.retention))
            else:
                why = "must not exceed alarms.retention: a new lifecycle would refile forgotten alarms"
                problems.append(("alarms.catch_up", why, self.alarms.catch_up))
        problems += _port_clashes(self, known, embedded)
        return problems


# key, host, port, the value as written, how directly it was given (see _given)
_Bind = tuple[str, str, int, str, int]


def _port_clashes(s: Settings, known: Known, embedded: bool | None) -> list[Problem]:
    binds: list[_Bind] = []
    if embedded and known("nats.embedded_port"):
        port = s.nats.embedded_port
        given = _given(s, known, "nats.embedded_port")
        binds.append(("nats.embedded_port", EMBEDDED_HOST, port, f"{EMBEDDED_HOST}:{port}", given))
    for key, listen in (("gb26875.listen", s.gb26875.listen), ("http.listen", s.http.listen)):
        if known(key):
            binds.append((key, *parse_host_port(listen), listen, _given(s, known, key)))
    wildcard = {"0.0.0.0", "::"}
    out: list[Problem] = []
    for i, later in enumerate(binds):
        for earlier in binds[:i]:
            (_, host, port, _, _), (_, ohost, oport, _, _) = later, earlier
            if port != oport or not (host == ohost or host in wildcard or ohost in wildcard):
                continue
            # name the key the operator gave most directly (the later one on a tie), and the other
            mine, other = (earlier, later) if earlier[4] > later[4] else (later, earlier)
            how = "" if other[4] else "default "
            why = f"TCP port {port} is already used by {other[0]} ({how}{other[3]}): give one of them another"
            value: object = s.nats.embedded_port if mine[0] == "nats.embedded_port" else mine[3]
            out.append((mine[0], why, value))
    return out


def _rule_problems(obj: BaseModel, known: Known) -> list[Item]:
    """The rules across keys of ``obj`` and of every model in it, with key paths from the top."""
    items: list[Item] = []
    if isinstance(obj, _Section | Settings):
        items += [((*known.base, *key.split(".")), why, value) for key, why, value in obj._problems(known)]
    if isinstance(obj, _Section):
        items += [((*known.base, key), why, value) for key, why, value in obj._secret_problems()]
    for name in type(obj).model_fields:
        if known.lost(name):
            continue
        value = getattr(obj, name, None)
        if isinstance(value, BaseModel):
            items += _rule_problems(value, known.at(name))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel) and not known.at(name).lost(str(i)):
                    items += _rule_problems(item, known.at(name, str(i)))
    return items


# ---------------------------------------------------------------------------
# what validated, when not everything did


@cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    return TypeAdapter(model.model_fields[name].rebuild_annotation())


def _list_of_model(annotation: Any) -> type[BaseModel] | None:
    args = get_args(annotation)
    if get_origin(annotation) is list and args and is_model(args[0]):
        return args[0]
    return None


def _partial(
    model: type[BaseModel], data: Any, failed: set[tuple[str, ...]], base: tuple[str, ...] = ()
) -> BaseModel | None:
    """``model`` built from ``data`` with every value that validates; a value that does not is left
    at its default and its path is in ``failed`` (so that no rule uses it)."""
    if not isinstance(data, dict):
        return None

    def under(path: tuple[str, ...]) -> bool:
        return any(f[: len(path)] == path for f in failed)

    def whole(sub: type[BaseModel], raw: Any, path: tuple[str, ...]) -> BaseModel | None:
        if not under(path):
            try:
                return sub.model_validate(raw)
            except ValidationError:
                failed.add(path)
                return None
        return None if path in failed else _partial(sub, raw, failed, path)

    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        path = (*base, name)
        if name not in data or path in failed:
            continue
        raw = data[name]
        item = _list_of_model(info.annotation)
        if is_model(info.annotation):
            part = whole(info.annotation, raw, path)
            if part is not None:
                values[name] = part
        elif item is not None and isinstance(raw, list) and under(path):
            # failed entries stay as None, so that the others keep their index
            values[name] = [whole(item, x, (*path, str(i))) for i, x in enumerate(raw)]
        elif not under(path):
            try:
                values[name] = _field_adapter(model, name).validate_python(raw)
            except ValidationError:
                failed.add(path)
    return model.model_construct(_fields_set={n for n in model.model_fields if n in data}, **values)


# ---------------------------------------------------------------------------
# the environment


def _env_names() -> dict[str, tuple[tuple[str, ...], bool]]:
    """Every FIREGATE_* name that sets something: its key path, and whether the value is JSON."""
    names: dict[str, tuple[tuple[str, ...], bool]] = {}

    def walk(model: type[BaseModel], path: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            sub = (*path, name)
            nested = is_model(info.annotation)
            names[ENV_PREFIX + "__".join(sub).upper()] = (sub, nested or get_origin(info.annotation) is list)
            if is_model(info.annotation):
                walk(info.annotation, sub)

    walk(Settings, ())
    return names


def _env_suggestion(name: str, names: list[str]) -> str | None:
    def squeezed(text: str) -> str:
        return re.sub("_+", "_", text)

    same = [n for n in names if squeezed(n) == squeezed(name)]  # FIREGATE_NATS_URL: one _ too few
    if same:
        return same[0]
    tails = {n.removeprefix(ENV_PREFIX): n for n in names}
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), list(tails), n=1, cutoff=0.8)
    return tails[close[0]] if close else None


def _check_environment() -> tuple[list[ConfigProblem], frozenset[str]]:
    """Problems with FIREGATE_* variables that validation cannot see (pydantic-settings would
    ignore a name that matches no key, and stop at the first value that is not JSON), and the
    variables to leave out of validation because of them."""
    names = _env_names()
    problems: list[ConfigProblem] = []
    skip: set[str] = set()
    for var, value in sorted(os.environ.items()):
        upper = var.upper()
        if not upper.startswith(ENV_PREFIX) or upper in NOT_CONFIG_VARS or PLATFORM_VARS.fullmatch(upper):
            continue
        target = names.get(upper)
        if target is None:
            parts = upper.removeprefix(ENV_PREFIX).split("__")
            parent = names.get(ENV_PREFIX + "__".join(parts[:-1]))
            if parent is not None and parts[-1] and is_model(_annotation_at(parent[0])):
                continue  # an unknown key in a section: validation names it, with a suggestion
            reason = "unknown environment variable: no setting has this name"
            whole = [ENV_PREFIX + "__".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]
            lists = (n for n in whole if n in names and get_origin(_annotation_at(names[n][0])) is list)
            json_parent = next(lists, None)
            close = _env_suggestion(upper, list(names))
            if json_parent is not None:  # FIREGATE_FAULTS__MQTT__0__URL
                key = ".".join(names[json_parent][0])
                reason += f" ({key} is a list, set as a whole in JSON: {json_parent}='[...]')"
            elif close:
                reason += f" (did you mean {close}?)"
            problems.append(ConfigProblem(var, reason))
        elif target[1]:
            try:
                json.loads(value)
                continue
            except json.JSONDecodeError as e:
                why = f"cannot parse the environment value as JSON ({e.msg} at character {e.pos})"
                if not value.strip():
                    example = "{}" if is_model(_annotation_at(target[0])) else "[]"
                    why = f"empty: the value is JSON, e.g. {example}"
                problems.append(ConfigProblem(".".join(target[0]), why, where=f"env {var}"))
        else:
            continue
        skip.add(var.lower())
    return problems, frozenset(skip)


def _annotation_at(path: tuple[str, ...]) -> Any:
    current: Any = Settings
    for name in path:
        current = current.model_fields[name].annotation
    return current


# ---------------------------------------------------------------------------
# loading


def _resolve_paths(data: dict[str, Any], model: type[BaseModel], base: Path) -> dict[str, Any]:
    """Relative paths in the file mean "next to the file", wherever firegate is started from."""
    out = dict(data)
    file_names = getattr(model, "FILE_NAMES", ())  # str keys that may name a file (a dialect)
    for name, info in model.model_fields.items():
        value = out.get(name)
        args = (info.annotation, *get_args(info.annotation))
        named_file = name in file_names and isinstance(value, str) and value.endswith((".yaml", ".yml"))
        if isinstance(value, str) and value.strip() and (Path in args or named_file):
            path = Path(value).expanduser()
            out[name] = str(path if path.is_absolute() else base / path)
        elif isinstance(value, dict):
            sub = next((a for a in args if is_model(a)), None)
            if sub is not None:
                out[name] = _resolve_paths(value, sub, base)
        elif isinstance(value, list) and (item := _list_of_model(info.annotation)) is not None:
            # faults.mqtt / faults.webhooks entries: their TLS files too
            out[name] = [_resolve_paths(x, item, base) if isinstance(x, dict) else x for x in value]
    return out


def _load(path: str | Path | None) -> tuple[Settings | None, Known, list[tuple[int | None, ConfigProblem]]]:
    """Everything `load_settings` and `config check` need: the settings (only partly valid when
    there are problems; None when there is nothing to validate), what validated, every problem."""
    env_problems, skip = _check_environment()
    from_env: list[tuple[int | None, ConfigProblem]] = [(None, p) for p in env_problems]
    doc: YamlDoc | None = None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            doc = read_yaml(path, keep_duplicates=True)
        except ConfigError as e:
            return None, ALL_KNOWN, [*((None, p) for p in e.problems), *from_env]
        if doc.data is not None and not isinstance(doc.data, dict):
            why = "the top level must be a mapping of sections (nats:, gb26875:, ...)"
            return None, ALL_KNOWN, [(None, ConfigProblem(doc.name, why, doc.data)), *from_env]
        data = _resolve_paths(doc.data or {}, Settings, Path(path).absolute().parent)
    merged: list[Any] = []
    tokens = (_file_data.set(data), _env_skip.set(skip), _merged_input.set(merged), _rules_deferred.set(True))
    items: list[Item] = []
    failed: set[tuple[str, ...]] = set()
    try:
        try:
            settings: Settings | None = Settings()
        except ValidationError as e:
            items = validation_items(e, model=Settings)
            failed = {
                tuple(str(p) for p in err["loc"] if p != "[key]")
                for err in e.errors()
                if err["type"] != "extra_forbidden"  # an unknown key takes no valid value's place
            }
            partial = _partial(Settings, merged[0] if merged else {}, failed)
            settings = partial if isinstance(partial, Settings) else None
        except SettingsError as e:  # not expected: _check_environment reports what the env source rejects
            m = re.search(r'field "([^"]+)"', str(e))
            key = m.group(1) if m else "environment"
            var = env_var(ENV_PREFIX, (key,))
            why = "cannot parse the environment value"
            return None, ALL_KNOWN, [(None, ConfigProblem(key, why, where=var and f"env {var}")), *from_env]
        known = Known(frozenset(failed))
        if settings is not None:
            items += _rule_problems(settings, known)
    finally:
        _rules_deferred.reset(tokens[3])
        _merged_input.reset(tokens[2])
        _env_skip.reset(tokens[1])
        _file_data.reset(tokens[0])
    duplicates: list[tuple[int | None, ConfigProblem]] = list(doc.duplicates) if doc is not None else []
    return settings, known, duplicates + located(items, doc=doc, env_prefix=ENV_PREFIX) + from_env


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overlaid by the YAML file at ``path`` (if any), overlaid by ``FIREGATE_*`` env.

    Raises one ConfigError listing every problem: bad values, broken rules across keys (for
    the keys that are valid), and FIREGATE_* variables that name no setting."""
    settings, _, problems = _load(path)
    if problems or settings is None:
        raise in_file_order(problems)
    return settings


def config_check(path: str | Path | None = None) -> int:
    """`firegate config check [FILE]`: 0 and "ok", or 1 and one line per problem on stderr.
    Without FILE, what `firegate run` without --config uses: the defaults and the environment."""
    try:
        settings, known, located_problems = _load(path)
        problems = in_file_order(located_problems).problems
        if settings is not None and settings.sites is not None and known("sites"):
            from firegate.sites import SiteRegistry  # only needed when configured

            try:
                SiteRegistry.load(settings.sites)
            except ConfigError as e:
                problems += e.problems
        if settings is not None and settings.panels and known("panels"):
            from firegate.gateway.serial.dialects import dialect_problems  # loads the codec plugins

            problems += dialect_problems(settings.panels)
    except Exception as e:  # the contract is "never a traceback", even for our own bugs
        what = path if path is not None else "defaults and environment"
        print(f"{what}: cannot check the configuration: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1
    print("ok")
    return 0
