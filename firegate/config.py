"""firegate's configuration: one YAML file, every key overridable from the environment.

``FIREGATE_<SECTION>__<KEY>`` (case-insensitive) wins over the file, the file
wins over the defaults, and the defaults alone run a complete single-node
system (`firegate run` with no config). Every way a configuration can be wrong
comes out as one :class:`ConfigError` listing each key and reason; pydantic's
and YAML's own exceptions never escape.
"""

from __future__ import annotations

import re
import ssl
import sys
from contextvars import ContextVar
from datetime import time
from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from firegate.configfile import (
    YamlDoc,
    config_error,
    env_var,
    is_model,
    mask_url,
    raise_problems,
    read_yaml,
)
from firegate.errors import MISSING, ConfigError

ENV_PREFIX = "FIREGATE_"
EMBEDDED_HOST = "127.0.0.1"

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
        raise ValueError("expected 'HH:MM' (24-hour local time, quoted in YAML)")
    return time(int(m.group(1)), int(m.group(2)))


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


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
# Relative paths written in the file are resolved against the file's directory
# by load_settings; paths from the environment against the working directory.
OptFile = Annotated[Path | None, BeforeValidator(_blank_to_none), AfterValidator(_existing_file)]
OptSecret = Annotated[SecretStr | None, BeforeValidator(_blank_to_none)]
OptStr = Annotated[str | None, BeforeValidator(_blank_to_none)]


def _tls_pair(cert: Path | None, key: Path | None) -> list[tuple[str, str, object]]:
    if (cert is None) != (key is None):
        missing = "tls_key" if key is None else "tls_cert"
        return [(missing, "tls_cert and tls_key go together: set both or neither", MISSING)]
    return []


def _tls_files(ca: Path | None, cert: Path | None, key: Path | None) -> list[tuple[str, str, object]]:
    """Load the files as `firegate run` will, so a wrong file fails `config check`, not the start."""
    problems = _tls_pair(cert, key)
    if problems:
        return problems
    try:
        ctx = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    except (ssl.SSLError, OSError) as e:
        problems.append(("tls_ca", f"not a readable PEM CA certificate ({e})", str(ca)))
    if cert is not None and key is not None:
        try:
            (ctx or ssl.create_default_context()).load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError) as e:
            problems.append(("tls_cert", f"certificate and key do not load as a pair ({e})", str(cert)))
    return problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------
# sections


class Nats(_Section):
    url: Annotated[str | None, BeforeValidator(_blank_to_none), AfterValidator(_nats_urls)] = None
    creds_file: OptFile = None
    tls_ca: OptFile = None
    tls_cert: OptFile = None
    tls_key: OptFile = None
    user: OptStr = None
    password: OptSecret = None
    token: OptSecret = None
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

    @model_validator(mode="after")
    def _auth(self) -> Nats:
        problems = _tls_files(self.tls_ca, self.tls_cert, self.tls_key)
        if (self.user is None) != (self.password is None):
            key = "password" if self.password is None else "user"
            problems.append((key, "user and password go together: set both or neither", MISSING))
        given = (("user", self.user), ("token", self.token), ("creds_file", self.creds_file))
        methods = [name for name, value in given if value is not None]
        if len(methods) > 1:
            both = " and ".join(methods)
            problems.append(
                (methods[1], f"use one of user/password, token or creds_file, not {both}", MISSING)
            )
        raise_problems(problems)
        return self


class Bus(_Section):
    stream: Token = "FIRE"
    replicas: Annotated[int | None, Field(ge=1, le=5)] = None
    duplicate_window: Seconds = 120.0
    max_age_days: Positive = 400.0
    max_bytes: Size = parse_size("50G")
    publish_retry: Seconds = 3.0
    spool_max_bytes: Size = parse_size("1G")

    @field_validator("duplicate_window")
    @classmethod
    def _covers_retransmission(cls, v: float) -> float:
        if v < 30:
            raise ValueError(
                "must be at least 30 s: a UITD retransmits for 3 x 10 s, and those copies must be dropped"
            )
        return v


class GB26875(_Section):
    listen: HostPort = "0.0.0.0:9001"
    udp_listen: Annotated[HostPort | None, BeforeValidator(_blank_to_none)] = None
    center_address: Annotated[int, Field(ge=0, lt=1 << 48)] = 0
    address_mode: Literal["le_int", "ipv4_port", "bcd"] = "le_int"
    max_connections: Annotated[int, Field(ge=1)] = 20000
    first_frame_timeout: Seconds = 30.0
    idle_timeout: Seconds = 100.0
    confirm_timeout: Seconds = 10.0
    retries: Annotated[int, Field(ge=0, le=10)] = 3
    patrol_interval: Annotated[float, Field(ge=0)] = 3600.0
    clock_sync_on_connect: bool = True
    clock_sync_daily_at: Annotated[time | None, BeforeValidator(_daily_time)] = None
    rate_limit_per_device: Positive = 20.0
    rate_burst: Annotated[int, Field(ge=1)] = 40
    write_buffer_limit: Size = 64 * 1024
    registry_policy: Literal["accept", "flag", "reject"] = "accept"

    @field_validator("idle_timeout")
    @classmethod
    def _above_heartbeat(cls, v: float) -> float:
        if v <= 30:
            raise ValueError("must exceed the UITD heartbeat period (about 30 s); GB 26875 uses 100 s")
        return v

    @field_validator("patrol_interval")
    @classmethod
    def _gb50440_patrol(cls, v: float) -> float:
        if v > 7200:
            raise ValueError(
                "must be at most 7200 s: GB 50440 requires a patrol at least every 2 h (0 disables)"
            )
        return v


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

    @model_validator(mode="after")
    def _backoff(self) -> _Delivery:
        if self.backoff_max < self.backoff_initial:
            raise_problems([("backoff_max", "must not be below backoff_initial", self.backoff_max)])
        return self


class _Client(_Delivery):
    """A destination firegate connects to: TLS files, and a timeout per attempt."""

    tls_ca: OptFile = None
    tls_cert: OptFile = None
    tls_key: OptFile = None
    timeout: Seconds = 5.0

    @model_validator(mode="after")
    def _client(self) -> _Client:
        problems = _tls_files(self.tls_ca, self.tls_cert, self.tls_key)
        # the server redelivers a message held past ack_wait: an attempt must end before that
        if self.timeout >= self.ack_wait:
            problems.append(("timeout", f"must be below ack_wait ({self.ack_wait:g} s)", self.timeout))
        raise_problems(problems)
        return self


class Dispatch119(_Client):
    # one URL, or a comma-separated list: each endpoint gets every confirmed fire
    url: Annotated[str | None, BeforeValidator(_blank_to_none), AfterValidator(_http_urls)] = None
    token: OptSecret = None

    @property
    def urls(self) -> list[str]:
        return self.url.split(",") if self.url else []


class _FaultFilter(_Client):
    """Which fault events a destination gets: empty lists mean all."""

    kinds: list[EventKindFilter] = Field(default_factory=lambda: list(FAULT_KINDS), min_length=1)
    sites: list[Token] = Field(default_factory=list)
    system_types: list[Annotated[int, Field(ge=0, le=255)]] = Field(default_factory=list)


class MqttDestination(_FaultFilter):
    url: Annotated[str, AfterValidator(_mqtt_url)]
    # not only slashes, and no wildcard, whitespace or NUL: it starts every topic
    topic_prefix: Annotated[str, Field(pattern=r"^[^#+\s\x00]*[^#+\s\x00/][^#+\s\x00]*$")] = "firegate"
    username: OptStr = None
    password: OptSecret = None

    @model_validator(mode="after")
    def _tls_scheme(self) -> MqttDestination:
        given = [k for k in ("tls_ca", "tls_cert", "tls_key") if getattr(self, k) is not None]
        if given and not self.url.startswith("mqtts://"):
            raise_problems([(given[0], "TLS settings need an mqtts:// url", MISSING)])
        return self


class WebhookDestination(_FaultFilter):
    url: Annotated[str, AfterValidator(_http_url)]
    token: OptSecret = None


class Faults(_Section):
    mqtt: list[MqttDestination] = Field(default_factory=list)
    webhooks: list[WebhookDestination] = Field(default_factory=list)


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


class _FileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole file at once

    def __call__(self) -> dict[str, Any]:
        return _file_data.get() or {}


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
    faults: Faults = Field(default_factory=Faults)
    alarms: Alarms = Field(default_factory=Alarms)
    roles: list[Role] = Field(default_factory=lambda: list(ROLES), min_length=1)
    log: Log = Field(default_factory=Log)
    sites: OptFile = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileSource(settings_cls)

    @property
    def effective_replicas(self) -> int:
        """Replicas of stream FIRE and the KV buckets: 1 on one server, 3 on a listed cluster."""
        if self.bus.replicas is not None:
            return self.bus.replicas
        return 3 if len(self.nats.urls) > 1 else 1

    @model_validator(mode="after")
    def _cross(self) -> Settings:
        problems: list[tuple[str, str, object]] = []
        if self.nats.embedded:
            if self.bus.replicas not in (None, 1):
                why = "the embedded nats-server is one node: use 1, or set nats.url to a cluster"
                problems.append(("bus.replicas", why, self.bus.replicas))
            if self.bus.max_bytes > self.nats.embedded_max_file:
                why = f"exceeds nats.embedded_max_file ({self.nats.embedded_max_file} bytes)"
                problems.append(("bus.max_bytes", why, self.bus.max_bytes))
        if self.alarms.catch_up > self.alarms.retention:
            why = "must not exceed alarms.retention: a new lifecycle would refile forgotten alarms"
            problems.append(("alarms.catch_up", why, self.alarms.catch_up))
        problems += _port_clashes(self)
        raise_problems(problems)
        return self


def _port_clashes(s: Settings) -> list[tuple[str, str, object]]:
    binds = [
        (key, *parse_host_port(value))
        for key, value in (("gb26875.listen", s.gb26875.listen), ("http.listen", s.http.listen))
    ]
    if s.nats.embedded:
        binds.insert(0, ("nats.embedded_port", EMBEDDED_HOST, s.nats.embedded_port))
    wildcard = {"0.0.0.0", "::"}
    out: list[tuple[str, str, object]] = []
    for i, (key, host, port) in enumerate(binds):
        for other, ohost, oport in binds[:i]:
            if port == oport and (host == ohost or host in wildcard or ohost in wildcard):
                out.append((key, f"TCP port {port} is already taken by {other}", port))
    return out


# ---------------------------------------------------------------------------
# loading


def _resolve_paths(data: dict[str, Any], model: type[BaseModel], base: Path) -> dict[str, Any]:
    """Relative paths in the file mean "next to the file", wherever firegate is started from."""
    out = dict(data)
    for name, info in model.model_fields.items():
        value = out.get(name)
        args = (info.annotation, *get_args(info.annotation))
        if isinstance(value, str) and value.strip() and Path in args:
            path = Path(value).expanduser()
            out[name] = str(path if path.is_absolute() else base / path)
        elif isinstance(value, dict):
            sub = next((a for a in args if is_model(a)), None)
            if sub is not None:
                out[name] = _resolve_paths(value, sub, base)
    return out


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overlaid by the YAML file at ``path`` (if any), overlaid by ``FIREGATE_*`` env."""
    doc: YamlDoc | None = None
    data: dict[str, Any] = {}
    if path is not None:
        doc = read_yaml(path)
        if doc.data is not None and not isinstance(doc.data, dict):
            raise ConfigError.single(
                doc.name, "the top level must be a mapping of sections (nats:, gb26875:, ...)", doc.data
            )
        data = _resolve_paths(doc.data or {}, Settings, Path(path).absolute().parent)
    token = _file_data.set(data)
    try:
        return Settings()
    except ValidationError as e:
        raise config_error(e, model=Settings, doc=doc, env_prefix=ENV_PREFIX) from None
    except SettingsError as e:  # e.g. FIREGATE_NATS='{not json': a whole section must be JSON
        m = re.search(r'field "([^"]+)"', str(e))
        key = m.group(1) if m else "environment"
        var = env_var(ENV_PREFIX, (key,))
        raise ConfigError.single(
            key, "cannot parse the environment value as JSON", where=var and f"env {var}"
        ) from None
    finally:
        _file_data.reset(token)


def config_check(path: str | Path) -> int:
    """`firegate config check FILE`: 0 and "ok", or 1 and one line per problem on stderr."""
    try:
        settings = load_settings(path)
        if settings.sites is not None:
            from firegate.sites import SiteRegistry  # only needed when configured

            SiteRegistry.load(settings.sites)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return 1
    except Exception as e:  # the contract is "never a traceback", even for our own bugs
        print(f"{path}: cannot check the configuration: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print("ok")
    return 0
