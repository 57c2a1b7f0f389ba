"""`firegate sim` against `firegate run` with a 119 URL, as the README's demo runs it: the simulator's
alarms are test alarms unless `--real`, so they are never confirmed by policy nor POSTed to 119;
with `--real` a manual call point is confirmed at once and reaches the fake 119 receiver.

Only the 119 URL is configured (FIREGATE_DISPATCH119__URL): the default policies, under which a
real manual call point is confirmed at once and two detectors of a site confirm each other.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from firegate.tools.fake119 import FakeDispatch119
from tests.integration.process import FIREGATE, Firegate
from tests.natsserver import wait_until


@pytest.fixture
async def fake() -> AsyncIterator[FakeDispatch119]:
    async with FakeDispatch119() as receiver:
        yield receiver


@pytest.fixture
async def center(tmp_path: Path, fake: FakeDispatch119) -> AsyncIterator[Firegate]:
    fg = Firegate(tmp_path)
    fg.env["FIREGATE_DISPATCH119__URL"] = fake.url
    try:
        await asyncio.to_thread(fg.start)
        yield fg
    finally:
        fg.kill_all()


async def cli(fg: Firegate, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [FIREGATE, *args], capture_output=True, text=True, timeout=30, env=fg.env
    )


async def sim_alarm(fg: Firegate, device: int, *extra: str) -> dict[str, Any]:
    done = await cli(fg, "sim", "alarm", "--port", str(fg.gb), "--device", str(device), "--json", *extra)
    doc: dict[str, Any] = json.loads(done.stdout)
    assert done.returncode == 0 and doc["outcome"] == "confirmed", done
    return doc


async def alarm_rows(fg: Firegate) -> list[dict[str, Any]]:
    done = await cli(fg, "alarm", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


async def test_sim_alarms_are_test_alarms_that_never_reach_119_unless_real(
    center: Firegate, fake: FakeDispatch119
) -> None:
    # the README's demo without --real: a manual call point, which the default policy would
    # confirm at once if it were real
    doc = await sim_alarm(center, 889, "--manual")
    assert doc["test"] is True
    # a load run of fires and manual call points (two devices, so several alarms per site)
    load = await cli(
        center,
        *("sim", "--port", str(center.gb), "--devices", "2", "--rate", "8", "--duration", "1.5"),
        *("--mix", "fire=0.5,manual=0.5", "--first-address", "500000", "--heartbeat", "0"),
        *("--json", "--quiet", "--seed", "7"),
    )
    report = json.loads(load.stdout)
    assert load.returncode == 0 and report["ok"] and report["test_mode"] is True, load
    assert report["sent_by_kind"].get("manual", 0) >= 1 and report["sent_by_kind"].get("fire", 0) >= 1
    simulated = {"889", "500000", "500001"}

    async def each_device_listed() -> bool:
        return {r["device"] for r in await alarm_rows(center)} >= simulated

    await wait_until(each_device_listed, 15, 0.2)
    tested = [r for r in await alarm_rows(center) if r["device"] in simulated]
    assert any(r["manual"] for r in tested if r["device"] != "889")
    assert all(r["test"] and r["incident_state"] == "pending" for r in tested), tested

    # the same with --real: confirmed by policy and POSTed to 119 at once
    doc = await sim_alarm(center, 892, "--manual", "--real")
    assert doc["test"] is False
    (key,) = await fake.wait_for(1, 15)
    body = fake.incidents[key.split(":")[0]]
    assert body["test"] is False and body["confirmed_by"] == "policy:manual_alarm"
    assert [a["device"] for a in body["alarms"]] == ["892"]
    (real,) = [r for r in await alarm_rows(center) if r["device"] == "892"]
    assert real["state"] == "confirmed" and real["test"] is False

    # the lifecycle took the real alarm after the test ones: none of those was confirmed or sent
    await asyncio.sleep(1.5)
    assert len(fake.requests) == 1 and fake.accepted == [key]
    again = [r for r in await alarm_rows(center) if r["device"] in simulated]
    assert len(again) >= len(tested)
    assert all(r["test"] and r["incident_state"] == "pending" for r in again), again
