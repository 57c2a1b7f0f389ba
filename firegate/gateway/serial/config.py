"""The `panels` configuration: one entry per serial line (``FIREGATE_PANELS`` as JSON).

Validated without opening a port or loading a codec (`firegate config check` and the light CLI
commands read it too): an unknown dialect is reported at start, naming ``panels.N.dialect``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from firegate.configfile import raise_problems
from firegate.errors import MISSING

GB26875 = "gb26875"  # the dialect handled by the gateway's own session, as over TCP
DEFAULT_POLL_INTERVAL = 5.0  # seconds, for a dialect that names no poll period of its own
Parity = Literal["N", "E", "O", "M", "S"]
_PARITY_NAMES = {"NONE": "N", "EVEN": "E", "ODD": "O", "MARK": "M", "SPACE": "S"}
POINT_COLUMNS = (
    "controller",
    "loop",
    "point",
    "system_type",
    "system_address",
    "component_type",
    "component_address",
    "description",
)


def _token(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ValueError("use only letters, digits, '-' and '_' (at most 64): it is one NATS subject token")
    return value


def _parity(value: Any) -> Any:
    if isinstance(value, str):
        upper = value.strip().upper()
        return _PARITY_NAMES.get(upper, upper)
    return value


def _stopbits(value: float) -> float:
    if value not in (1, 1.5, 2):
        raise ValueError("must be 1, 1.5 or 2")
    return value


def _port(value: str) -> str:
    if not value.strip():
        raise ValueError(
            "must name a device (/dev/ttyUSB0, COM3) or a URL (socket://host:port, rfc2217://host:port)"
        )
    return value.strip()


Token = Annotated[str, AfterValidator(_token)]
Byte = Annotated[int, Field(ge=0, le=255)]


class PointEntry(BaseModel):
    """One panel point and where it is in the standard's terms (a row of the point table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    controller: Annotated[int, Field(ge=0)] = 0
    loop: Annotated[int, Field(ge=0, le=0xFFFF)] = 0
    point: Annotated[int, Field(ge=0, le=0xFFFF)] = 0
    system_type: Byte = 1  # fire alarm system
    system_address: Byte | None = None  # None: the controller's number, as for unlisted points
    component_type: Byte = 0
    component_address: Annotated[int, Field(ge=0, le=0xFFFFFFFF)]
    description: str = ""


def read_points_file(path: Path) -> list[PointEntry]:
    """The rows of a points CSV (header: `POINT_COLUMNS`, the optional ones may be left out).
    UTF-8 (with or without the BOM a spreadsheet writes), else GB18030. Raises ValueError
    naming the row."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")  # a Chinese spreadsheet's "CSV"
    rows = csv.DictReader(text.splitlines())
    unknown = [c for c in rows.fieldnames or () if c and c.strip() not in POINT_COLUMNS]
    if unknown:
        raise ValueError(
            f"unknown column(s) {', '.join(unknown)}; the columns are {', '.join(POINT_COLUMNS)}"
        )
    entries: list[PointEntry] = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        values = {k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()}
        if not values:
            continue
        try:
            entries.append(PointEntry.model_validate(values))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"line {number}: {where}: {first['msg']}") from None
    _no_duplicates(entries)
    return entries


def _no_duplicates(entries: list[PointEntry]) -> None:
    seen: set[tuple[int, int, int]] = set()
    for entry in entries:
        key = (entry.controller, entry.loop, entry.point)
        if key in seen:
            raise ValueError(f"point {entry.controller}-{entry.loop}-{entry.point} is listed twice")
        seen.add(key)


def _points_file(value: Path | None) -> Path | None:
    if value is None:
        return None
    try:
        read_points_file(value)
    except OSError as e:
        raise ValueError(f"cannot read it: {e.strerror or e}") from None
    return value


def _points(value: list[PointEntry]) -> list[PointEntry]:
    _no_duplicates(value)
    return value


class Rs485(BaseModel):
    """RS-485 direction control by the kernel (a local UART wired to a transceiver)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rts_on_send: bool = True  # RTS while sending (most transceivers: high enables the driver)
    rts_after_send: bool = False
    delay_before_send_ms: Annotated[int, Field(ge=0, le=1000)] = 0
    delay_after_send_ms: Annotated[int, Field(ge=0, le=1000)] = 0
    rx_during_tx: bool = False  # hear our own sending (a 4-wire line, or an echo check)


class Panel(BaseModel):
    """One serial line. Line settings left out take the dialect's own (`LineCodec.line`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    FILE_NAMES: ClassVar[tuple[str, ...]] = ("dialect",)  # a dialect file is next to the config file

    port: Annotated[str, AfterValidator(_port)]
    dialect: Annotated[str, Field(min_length=1)]
    mode: Literal["listen", "poll"] = "listen"
    device: Token | None = None  # the id of a dialect whose frames carry no address
    site: Token | None = None
    baudrate: Annotated[int | None, Field(gt=0)] = None  # any rate: 22800 and 28800 are real
    bytesize: Literal[5, 6, 7, 8] | None = None
    parity: Annotated[Parity | None, BeforeValidator(_parity)] = None
    stopbits: Annotated[float | None, AfterValidator(lambda v: None if v is None else _stopbits(v))] = None
    rtscts: bool = False
    xonxoff: bool = False
    rs485: Rs485 | None = None  # None: the port switches direction itself (nearly all adapters)
    # None: the dialect's own poll period, else DEFAULT_POLL_INTERVAL
    poll_interval: Annotated[float | None, Field(gt=0)] = None
    reply_timeout: Annotated[float, Field(gt=0)] = 2.0
    poll_misses: Annotated[int, Field(ge=1, le=100)] = 3  # missed polls in a row: the link is down
    # a frame seen again within this many seconds is a resend (its acknowledgement was lost): it
    # decodes with its first arrival's time, so its events get the same ids and are stored once
    resend_window: Annotated[float, Field(ge=0, le=120)] = 30.0
    reopen_min: Annotated[float, Field(gt=0)] = 1.0
    reopen_max: Annotated[float, Field(gt=0)] = 30.0
    codec_options: dict[str, Any] = Field(default_factory=dict)
    points: Annotated[list[PointEntry], AfterValidator(_points)] = Field(default_factory=list)
    points_file: Annotated[Path | None, AfterValidator(_points_file)] = None

    @property
    def name(self) -> str:
        """The line's name in metrics and logs: its device id, else its port."""
        return self.device or self.port

    @model_validator(mode="after")
    def _rules(self) -> Panel:
        problems: list[tuple[str, str, object]] = []
        if self.dialect == GB26875:
            # the frames' own source addresses are the device ids; the UITD speaks unasked
            for key in ("device", "points", "points_file", "codec_options"):
                if key in self.model_fields_set and getattr(self, key):
                    why = "not used by dialect gb26875 (each frame's source address is its device id)"
                    problems.append((key, why, getattr(self, key)))
            if self.mode != "listen":
                problems.append(
                    ("mode", "dialect gb26875 is listen only: the UITD sends on its own", self.mode)
                )
        elif self.device is None:
            problems.append(
                ("device", f"required for dialect {self.dialect!r}: the id of this panel", MISSING)
            )
        if self.rs485 is not None and "://" in self.port:
            why = "only for a local port: a device server sets its RS-485 mode in its own settings"
            problems.append(("rs485", why, self.port))
        if self.points and self.points_file is not None:
            problems.append(("points_file", "give points or points_file, not both", str(self.points_file)))
        if self.mode == "poll" and self.poll_interval is not None and self.reply_timeout > self.poll_interval:
            why = f"must not exceed poll_interval ({self.poll_interval:g} s): one poll at a time"
            problems.append(("reply_timeout", why, self.reply_timeout))
        if self.reopen_min > self.reopen_max:
            problems.append(
                ("reopen_min", f"must not exceed reopen_max ({self.reopen_max:g} s)", self.reopen_min)
            )
        raise_problems(problems)
        return self


def _distinct(panels: list[Panel]) -> list[Panel]:
    """Two lines on one port would steal each other's bytes; two panels under one id would
    mix their link state."""
    problems: list[tuple[str, str, object]] = []
    ports: dict[str, int] = {}
    names: dict[str, int] = {}
    for i, panel in enumerate(panels):
        if panel.port in ports:
            problems.append((f"{i}.port", f"already used by panels.{ports[panel.port]}", panel.port))
        ports.setdefault(panel.port, i)
        if panel.device is not None:
            if panel.device in names:
                problems.append(
                    (f"{i}.device", f"already used by panels.{names[panel.device]}", panel.device)
                )
            names.setdefault(panel.device, i)
    raise_problems(problems)
    return panels


Panels = Annotated[list[Panel], AfterValidator(_distinct)]
