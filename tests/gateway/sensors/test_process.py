"""`firegate run` with a sensor source: a networked smoke detector's fire alarm over MQTT goes
through the same lifecycle as a UITD's and reaches the (fake) 119 once an operator confirms it;
/readyz names a source whose broker is down (without failing: the UITDs still need this gateway)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from firegate.tools.fake119 import FakeDispatch119
from tests.gateway.sensors.conftest import publish
from tests.integration.process import FIREGATE, Firegate
from tests.mqttbroker import MosquittoBroker, running_mosquitto
from tests.natsserver import wait_until

pytestmark = pytest.mark.timeout(90)


def source(broker: MosquittoBroker) -> list[dict[str, Any]]:
    return [
        {
            "name": "smoke",
            "url": broker.url,
            "topics": ["smoke/+/up"],
            "codec": "json",
            "codec_options": {"time": "ts", "flags": {"fire": "smoke"}, "flag_point": "smoke"},
            "device_topic_level": 1,
            "site": "SH-XH-0009",
            "points": [
                {"point": "smoke", "component_type": 42, "component_address": 3, "description": "B1 泵房"}
            ],
            "backoff_initial": 0.2,
            "backoff_max": 1,
        }
    ]


async def cli(fg: Firegate, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [FIREGATE, *args], capture_output=True, text=True, timeout=30, env=fg.env
    )


async def alarm_rows(fg: Firegate) -> list[dict[str, Any]]:
    done = await cli(fg, "alarm", "list", "--json")
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def readyz(fg: Firegate) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{fg.http}/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
async def fake() -> AsyncIterator[FakeDispatch119]:
    async with FakeDispatch119() as receiver:
        yield receiver


async def test_a_sensor_fire_alarm_reaches_119_after_confirmation(
    tmp_path: Path, fake: FakeDispatch119
) -> None:
    async with running_mosquitto(tmp_path / "mqtt") as broker:
        fg = Firegate(tmp_path)
        fg.env["FIREGATE_SENSORS__SOURCES"] = json.dumps(source(broker))
        fg.env["FIREGATE_DISPATCH119__URL"] = fake.url
        fg.env["FIREGATE_ALARMS__AUTO_CONFIRM__ESCALATE_AFTER"] = ""
        try:
            await asyncio.to_thread(fg.start)  # ready: the sensor broker check included
            status, body = readyz(fg)
            assert status == 200 and "connected" in json.dumps(body["checks"]["sensor_brokers"])
            when = datetime.now(UTC).replace(microsecond=0)
            await publish(broker, "smoke/SMK-0042/up", json.dumps({"ts": when.timestamp(), "smoke": 1}))

            async def listed() -> bool:
                return any(r["device"] == "SMK-0042" for r in await alarm_rows(fg))

            await wait_until(listed, 20, 0.3)
            row = next(r for r in await alarm_rows(fg) if r["device"] == "SMK-0042")
            assert row["state"] == "pending" and row["site"] == "SH-XH-0009"
            assert datetime.fromisoformat(row["occurred_at"]) == when
            assert fake.requests == []  # nothing before a decision
            done = await cli(fg, "alarm", "confirm", row["id"], "--operator", "li")
            assert done.returncode == 0, done.stderr
            (key,) = await fake.wait_for(1, 10)
            body119 = fake.incidents[key.split(":")[0]]
            assert [a["device"] for a in body119["alarms"]] == ["SMK-0042"]
            assert body119["alarms"][0]["point"]["component_type"] == 42
            assert body119["confirmed_by"] == "li"
            # the broker goes away: /readyz names the source, and stays ready for the UITDs
            await broker.stop()

            def named_down() -> bool:
                return "smoke: mqtt://" in readyz(fg)[1]["checks"]["sensor_brokers"]["detail"] and (
                    "down for" in readyz(fg)[1]["checks"]["sensor_brokers"]["detail"]
                )

            await wait_until(named_down, 15, 0.2)
            assert readyz(fg)[0] == 200
            assert 'firegate_sensor_broker_up{source="smoke"} 0.0' in fg.metrics()
        finally:
            fg.kill_all()
