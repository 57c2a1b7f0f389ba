"""The device time zone setting, and the sample registry the README's demo needs (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from firegate.bus.events import FireAlarm, FireConfirmed, parse_event
from firegate.bus.kvmemory import MemoryStatusMemory
from firegate.codecs.gb26875 import ComponentStatus, TimeTag, decode_data_unit
from firegate.config import Settings, config_check
from firegate.devicetime import DEFAULT_ZONE, device_zone, set_device_zone, zone_named
from firegate.forwarders.incident import open_incident
from firegate.forwarders.lifecycle import site_info_lookup
from firegate.ingest.normalize import Normalizer
from firegate.sim import payloads
from firegate.sim.payloads import BUILDING, CALL_POINTS, DETECTORS
from firegate.sites import LiveSites, SiteRegistry

ROOT = Path(__file__).resolve().parents[2]
SITES = ROOT / "config" / "sites.example.yaml"
DEMO_DEVICE = "889"  # `firegate sim alarm`'s default --device


@pytest.fixture
def zone_restored() -> Iterator[None]:
    before = device_zone()
    try:
        yield
    finally:
        set_device_zone(before)


def test_the_default_is_china_standard_time_and_offsets_are_zones_too() -> None:
    assert Settings().gb26875.device_timezone == DEFAULT_ZONE == "Asia/Shanghai"
    assert Settings(gb26875={"device_timezone": "+07:00"}).gb26875.device_timezone == "+07:00"  # type: ignore[arg-type]
    assert zone_named("+08:00").utcoffset(None) == timedelta(hours=8)
    assert zone_named("UTC-3").utcoffset(None) == timedelta(hours=-3)


def test_config_check_names_the_key_of_a_bad_zone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "firegate.yaml"
    bad.write_text("gb26875:\n  device_timezone: Asia/Shangai\n", encoding="utf-8")
    assert config_check(bad) == 1
    err = capsys.readouterr().err
    assert "gb26875.device_timezone" in err and "unknown time zone" in err and "Asia/Shanghai" in err


def test_firegate_run_reads_device_times_in_the_configured_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zone_restored: None
) -> None:
    """`firegate run` sets the process's device time zone from its config before anything runs."""
    import firegate.app
    import firegate.ops.logging
    from firegate.cli import main

    seen: list[object] = []

    async def fake_run(settings: Settings) -> None:
        seen.append(device_zone())
        seen.append(TimeTag.now().value)

    monkeypatch.setattr(firegate.app, "run", fake_run)
    monkeypatch.setattr(firegate.ops.logging, "setup_logging", lambda *args, **kw: None)
    config = tmp_path / "firegate.yaml"
    config.write_text("gb26875:\n  device_timezone: Asia/Tokyo\n", encoding="utf-8")
    assert main(["run", "--config", str(config)]) == 0
    zone, tag = seen
    assert zone == ZoneInfo("Asia/Tokyo")
    tokyo = datetime.now(UTC).astimezone(ZoneInfo("Asia/Tokyo")).replace(tzinfo=None)
    assert isinstance(tag, datetime) and abs((tokyo - tag).total_seconds()) < 3


def test_the_sample_registry_knows_every_point_of_the_simulated_uitd() -> None:
    """The README's demo (`firegate sim alarm`, device 889) against the sample config shows a
    location for whatever detector or call point the simulator picks."""
    site = SiteRegistry.load(SITES).site_for_device(DEMO_DEVICE)
    assert site is not None and site.unit and site.address and site.phone
    for component in BUILDING:
        system_type, system_address = component.system
        location = site.location(system_type, system_address, component.address)
        assert location, f"no location for {component.description} ({component.address})"


async def test_a_demo_alarm_carries_the_registry_location() -> None:
    """What `firegate sim alarm [--manual]` sends, as the gateway and the lifecycle make of it."""
    sites = LiveSites(SITES)
    normalizer = Normalizer(MemoryStatusMemory(), site_of=sites.site_of, location_of=sites.location_of)
    site = site_info_lookup(lambda site_id: sites.registry.sites.get(site_id))("DEMO-0889")
    assert site.registered and site.unit
    tag = TimeTag.now()
    for index in (*DETECTORS, *CALL_POINTS):
        status = payloads.component_status(index, index, -1)
        unit = decode_data_unit(payloads.component_unit(index, status, tag))
        assert unit is not None and isinstance(unit.objects[0], ComponentStatus)
        out = await normalizer.normalize(DEMO_DEVICE, unit, frame_time=None, raw=b"")
        (alarm,) = [e for e in out.events if isinstance(e, FireAlarm)]
        assert alarm.site == "DEMO-0889" and alarm.point.location
        assert alarm.point.description == BUILDING[index].description  # the device's own text too
        incident = open_incident(alarm)
        incident.add(alarm, alarm.received_at, site)
        incident.confirm("demo", "operator", alarm.received_at, site)
        (body,) = [
            e.incident
            for e in map(parse_event, (o.data for o in incident.outbox))
            if isinstance(e, FireConfirmed)
        ]
        (shown,) = body.alarms
        assert (shown.location, shown.location_source) == (alarm.point.location, "registry")
