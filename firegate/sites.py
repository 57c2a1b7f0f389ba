"""The site registry: which monitored unit (联网单位) each device belongs to.

It gives an alarm what the 119 center needs beside the raw frame: the unit's
name, address, coordinates and phone, and the human location of the component
("3F 东侧走廊 感烟探测器") from the center's point table. Loaded once at start
from the YAML file named by the ``sites`` key.

A site's ``uitds`` are addresses or inclusive ranges ``"100000-101999"`` (at most
100,000 addresses each). A registry that does not load reports every problem in
it, not only those one stage of validation reached (`SiteRegistry.load`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from firegate.config import Token
from firegate.configfile import (
    Item,
    in_file_order,
    located,
    raise_problems,
    read_yaml,
    validation_items,
)
from firegate.errors import MISSING, ConfigError

UitdAddress = Annotated[int, Field(ge=0, lt=1 << 48)]
_LOCATION_PARTS = (("system_type", 1 << 8), ("system_address", 1 << 8), ("component_address", 1 << 32))
RANGE_MAX = 100_000  # addresses in one "FIRST-LAST" entry of uitds
_ADDRESS = TypeAdapter(UitdAddress)
_TOKEN = TypeAdapter(Token)
_RANGE_HELP = "expected an address or a range FIRST-LAST, e.g. 100000-101999"


def _reason(error: ValidationError) -> str:
    reason = error.errors()[0]["msg"].removeprefix("Value error, ")
    return reason[:1].lower() + reason[1:]


def uitd_addresses(value: Any) -> tuple[list[Any], list[tuple[str, str, object]]]:
    """The addresses a ``uitds`` list stands for, ranges expanded, and its problems
    (index, reason, entry); entries that are not valid are left out."""
    if not isinstance(value, list):
        return [], []
    out: list[Any] = []
    problems: list[tuple[str, str, object]] = []
    for i, item in enumerate(value):
        text = item.strip() if isinstance(item, str) else None
        if text is None or "-" not in text[1:]:  # an address (a leading '-' is a negative one)
            try:
                out.append(_ADDRESS.validate_python(item))
            except ValidationError as e:
                problems.append((str(i), _reason(e), item))
            continue
        first, _, last = text.partition("-")
        try:
            low, high = int(first.strip(), 0), int(last.strip(), 0)
        except ValueError:
            problems.append((str(i), _RANGE_HELP, item))
            continue
        if not 0 <= low <= high < 1 << 48:
            problems.append((str(i), "a range FIRST-LAST needs 0 <= FIRST <= LAST < 2^48", item))
        elif high - low >= RANGE_MAX:
            too_many = f"a range holds at most {RANGE_MAX:,} addresses, this one {high - low + 1:,}"
            problems.append((str(i), too_many, item))
        else:
            out.extend(range(low, high + 1))
    return out, problems


def _device_ids(uitds: Iterable[object], devices: Iterable[object]) -> list[tuple[str, str]]:
    return [(str(a), "uitds") for a in uitds] + [(str(d), "devices") for d in devices]


def _duplicates(sites: Iterable[tuple[str, list[tuple[str, str]]]]) -> list[tuple[str, str, str]]:
    """A device listed under two sites, reported on the later one: one problem per site, field
    and other site (a range can repeat thousands), naming the devices."""
    owner: dict[str, str] = {}
    found: dict[tuple[str, str, str], list[str]] = {}
    for site_id, ids in sites:
        for device, field in ids:
            other = owner.setdefault(device, site_id)
            if other != site_id:
                found.setdefault((site_id, field, other), []).append(device)
    problems: list[tuple[str, str, str]] = []  # (site, field, reason)
    for (site_id, field, other), devices in found.items():
        if len(devices) == 1:
            reason = f"device {devices[0]} also belongs to site {other!r}"
        else:
            shown = ", ".join(devices[:5]) + (", ..." if len(devices) > 5 else "")
            reason = f"{len(devices)} devices also belong to site {other!r}: {shown}"
        problems.append((site_id, field, reason))
    return problems


def location_key(system_type: int, system_address: int, component_address: int) -> str:
    """The registry's key for a component: ``"1/1/65559"``."""
    return f"{system_type}/{system_address}/{component_address}"


class Site(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str  # the registry's key, checked there
    unit: Annotated[str, Field(min_length=1)]  # 单位名称
    address: str = ""
    lat: Annotated[float | None, Field(ge=-90, le=90)] = None
    lon: Annotated[float | None, Field(ge=-180, le=180)] = None
    phone: str = ""
    building: str = ""
    uitds: list[UitdAddress] = Field(default_factory=list)
    devices: list[Token] = Field(default_factory=list)  # panels, MQTT sensors: their configured ids
    locations: dict[str, str] = Field(default_factory=dict)
    # source networks the site's UITDs may connect from (empty: any), with gb26875.registry_policy
    networks: list[IPvAnyNetwork] = Field(default_factory=list)

    @field_validator("uitds", mode="before")
    @classmethod
    def _expand_ranges(cls, value: Any) -> Any:
        """Accept "100000-101999" (inclusive) among the addresses."""
        if not isinstance(value, list):
            return value
        addresses, problems = uitd_addresses(value)
        raise_problems(problems)
        return addresses

    @field_validator("locations", mode="before")
    @classmethod
    def _normalise_locations(cls, value: Any) -> Any:
        """Accept "01/1/23" or " 1/1/23 " and store the canonical "1/1/23"."""
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        problems: list[tuple[str, str, object]] = []
        for raw, text in value.items():
            parts = str(raw).split("/")
            numbers = [int(p) for p in parts if p.strip().isdigit()]
            if len(parts) != 3 or len(numbers) != 3:
                reason = "expected system_type/system_address/component_address, e.g. 1/1/65559"
                problems.append((str(raw), reason, MISSING))
                continue
            bad = [name for (name, limit), n in zip(_LOCATION_PARTS, numbers, strict=True) if n >= limit]
            if bad:
                problems.append((str(raw), f"{bad[0]} is out of range", MISSING))
                continue
            key = location_key(*numbers)
            if key in out:
                problems.append((str(raw), f"the same component as another key ({key})", MISSING))
            out[key] = text
        raise_problems(problems)
        return out

    @model_validator(mode="after")
    def _coordinates(self) -> Site:
        if (self.lat is None) != (self.lon is None):
            missing = "lon" if self.lon is None else "lat"
            raise_problems([(missing, "lat and lon go together: set both or neither", MISSING)])
        return self

    def location(self, system_type: int, system_address: int, component_address: int) -> str | None:
        return self.locations.get(location_key(system_type, system_address, component_address))


class SiteRegistry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sites: dict[Token, Site] = Field(default_factory=dict)
    _by_device: dict[str, Site] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _ids_from_keys(cls, data: Any) -> Any:
        """A site's id is its key; writing it again inside is allowed only if it agrees."""
        sites = data.get("sites") if isinstance(data, dict) else None
        if not isinstance(sites, dict):
            return data
        problems: list[tuple[str, str, object]] = []
        filled: dict[str, Any] = {}
        for key, body in sites.items():
            if isinstance(body, dict):
                if body.get("id", key) != key:
                    problems.append((f"sites.{key}.id", f"differs from the site's key {key!r}", body["id"]))
                body = {**body, "id": key}
            filled[key] = body
        raise_problems(problems)
        return {**data, "sites": filled}

    @model_validator(mode="after")
    def _index(self) -> SiteRegistry:
        ids = [(site.id, _device_ids(site.uitds, site.devices)) for site in self.sites.values()]
        raise_problems(
            [(f"sites.{site}.{field}", reason, MISSING) for site, field, reason in _duplicates(ids)]
        )
        for site in self.sites.values():
            for device, _ in _device_ids(site.uitds, site.devices):
                self._by_device.setdefault(device, site)
        return self

    @classmethod
    def load(cls, path: str | Path) -> SiteRegistry:
        """Read and check a registry file; every problem comes out as one ConfigError."""
        doc = read_yaml(path)
        data = doc.data if doc.data is not None else {}
        if not isinstance(data, dict):
            raise ConfigError.single(doc.name, "the top level must be a mapping with a 'sites:' key", data)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            items = validation_items(e, model=cls) + cls._every_problem(data)
        unique = list({(path, reason): (path, reason, value) for path, reason, value in items}.values())
        raise in_file_order(located(unique, doc=doc)) from None

    @classmethod
    def _every_problem(cls, data: dict[str, Any]) -> list[Item]:
        """Each part checked on its own, for the problems one failure hides from pydantic: a
        site id that differs from its key stops everything, a bad site hides duplicate devices."""
        items: list[Item] = []
        try:
            cls.model_validate({k: v for k, v in data.items() if k != "sites"})
        except ValidationError as e:
            items += validation_items(e, model=cls)
        sites = data.get("sites")
        if not isinstance(sites, dict):
            return items
        ids: list[tuple[str, list[tuple[str, str]]]] = []
        for key, body in sites.items():
            try:
                _TOKEN.validate_python(key)
            except ValidationError as e:
                items.append((("sites", key), _reason(e), key))
            if not isinstance(body, dict):
                continue  # the whole validation said what it should be
            if body.get("id", key) != key:
                items.append((("sites", key, "id"), f"differs from the site's key {key!r}", body["id"]))
            try:
                site = Site.model_validate({**body, "id": key})
            except ValidationError as e:
                items += [(("sites", key, *p), r, v) for p, r, v in validation_items(e, model=Site)]
                uitds, _ = uitd_addresses(body.get("uitds"))
                devices = body.get("devices")
                valid = [d for d in devices if _is_token(d)] if isinstance(devices, list) else []
                ids.append((key, _device_ids(uitds, valid)))
            else:
                ids.append((key, _device_ids(site.uitds, site.devices)))
        items += [(("sites", site, field), reason, MISSING) for site, field, reason in _duplicates(ids)]
        return items

    def site_for_device(self, device_id: str) -> Site | None:
        """The site a device belongs to; None for an unregistered device (a site of its own)."""
        return self._by_device.get(device_id)

    def location(
        self, device_id: str, system_type: int, system_address: int, component_address: int
    ) -> str | None:
        """The human location of a component, if the registry knows it."""
        site = self._by_device.get(device_id)
        return site.location(system_type, system_address, component_address) if site else None


def _is_token(value: object) -> bool:
    try:
        _TOKEN.validate_python(value)
    except ValidationError:
        return False
    return True


class LiveSites:
    """The registry a running firegate uses: reloadable (SIGHUP) without a restart. A reload that
    fails keeps the registry in force and says why."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = path
        self.registry = SiteRegistry.load(path) if path else SiteRegistry()

    def reload(self) -> str | None:
        """Load the file again; returns the error text, or None when the new registry is in force."""
        if not self.path:
            return None
        try:
            self.registry = SiteRegistry.load(self.path)
        except ConfigError as e:
            return str(e)
        return None

    def site_of(self, device: str) -> str:
        site = self.registry.site_for_device(device)
        return site.id if site is not None else device  # unregistered: a site of its own

    def location_of(
        self, device: str, system_type: int, system_address: int, component_address: int
    ) -> str | None:
        return self.registry.location(device, system_type, system_address, component_address)

    def known_devices(self) -> dict[str, list[str]]:
        """Registered device ids and the networks each may connect from ([] = any)."""
        return {
            str(device): [str(n) for n in site.networks]
            for site in self.registry.sites.values()
            for device in [*site.uitds, *site.devices]
        }
