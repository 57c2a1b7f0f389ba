"""From a UITD to the 119 receiver and the MQTT broker, through `firegate run` processes.

Real TCP from simulated UITDs, the real `firegate alarm` CLI, the fake 119 receiver and a
private Mosquitto: a confirmed fire arrives once with the site's data, a dismissed one never,
a policy confirms without an operator, an endpoint outage and a killed forwarder lose and
duplicate nothing, and faults show up (and their retained state goes away) on MQTT.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from firegate.codecs.gb26875 import Command, ComponentStatus, TimeTag
from firegate.tools.fake119 import FakeDispatch119
from tests.gateway.client import Uitd
from tests.integration.process import FIREGATE, Firegate
from tests.mqttbroker import MosquittoBroker, running_mosquitto
from tests.natsserver import nats_client, wait_until

SITES = """
sites:
  SH-XH-0001:
    unit: 上海市徐汇区示例大厦
    address: 上海市徐汇区漕溪北路 100 号
    lat: 31.1886
    lon: 121.4365
    phone: "021-64000000"
    building: A 座
    uitds: [889, 890]
  SH-XH-0002:
    unit: 徐汇区第二示例大厦
    uitds: [893]
"""


def write_config(tmp_path: Path, fake: FakeDispatch119, broker: MosquittoBroker | None = None) -> Path:
    (tmp_path / "sites.yaml").write_text(SITES, encoding="utf-8")
    mqtt = (
        f"faults:\n  mqtt:\n    - url: {broker.url}\n      topic_prefix: fg\n      backoff_max: 0.5\n"
        if broker
        else ""
    )
    config = tmp_path / "firegate.yaml"
    config.write_text(
        f"""
sites: sites.yaml
dispatch119:
  url: {fake.url}
  timeout: 1
  backoff_initial: 0.1
  backoff_max: 0.5
  ack_wait: 2
alarms:
  auto_confirm:
    manual: true
    detectors: 2
    detector_window: 60
    escalate_after: null
{mqtt}""",
        encoding="utf-8",
    )
    return config


async def cli(fg: Firegate, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [FIREGATE, *args], capture_output=True, text=True, timeout=30, env=fg.env
    )


async def sim_alarm(fg: Firegate, device: int, *, manual: bool = False) -> None:
    args = ["sim", "alarm", "--port", str(fg.gb), "--device", str(device), "--json", "--real"]
    done = await cli(fg, *args, *(["--manual"] if manual else []))
    assert done.returncode == 0 and json.loads(done.stdout)["outcome"] == "confirmed", done


async def alarms(fg: Firegate, *extra: str) -> list[dict[str, Any]]:
    done = await cli(fg, "alarm", "list", "--json", *extra)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


async def alarm_of(fg: Firegate, device: int) -> dict[str, Any]:
    async def present() -> bool:
        return any(r["device"] == str(device) for r in await alarms(fg))

    await wait_until(present, 10, 0.2)
    return next(r for r in await alarms(fg) if r["device"] == str(device))


@pytest.fixture
async def fake() -> AsyncIterator[FakeDispatch119]:
    async with FakeDispatch119() as receiver:
        yield receiver


@pytest.fixture
async def system(tmp_path: Path, fake: FakeDispatch119) -> AsyncIterator[Firegate]:
    fg = Firegate(tmp_path, "--config", str(write_config(tmp_path, fake)))
    try:
        await asyncio.to_thread(fg.start)
        yield fg
    finally:
        fg.kill_all()


async def test_operator_confirms_a_fire_and_119_gets_it_once_with_the_site(
    system: Firegate, fake: FakeDispatch119
) -> None:
    await sim_alarm(system, 889)
    row = await alarm_of(system, 889)
    assert row["state"] == "pending" and row["site"] == "SH-XH-0001"
    assert fake.requests == []  # nothing reaches 119 before a decision
    done = await cli(system, "alarm", "confirm", row["id"], "--operator", "zhang")
    assert done.returncode == 0, done.stderr
    (key,) = await fake.wait_for(1, 10)
    body = fake.incidents[key.split(":")[0]]
    site = body["site"]
    assert (site["unit"], site["address"], site["lat"], site["lon"], site["phone"], site["building"]) == (
        "上海市徐汇区示例大厦",
        "上海市徐汇区漕溪北路 100 号",
        31.1886,
        121.4365,
        "021-64000000",
        "A 座",
    )
    assert [a["id"] for a in body["alarms"]] == [row["id"]]
    assert body["confirmed_by"] == "zhang" and body["confirmation"] == "operator"
    assert body["alarms"][0]["point"]["description"]
    again = await cli(system, "alarm", "confirm", row["id"])  # a retry after a lost answer
    assert again.returncode == 0 and "already (by zhang) confirmed" in again.stdout, again
    contrary = await cli(system, "alarm", "dismiss", row["id"], "--reason", "false")
    assert contrary.returncode != 0 and "already" in contrary.stderr
    await asyncio.sleep(1.0)
    assert fake.accepted == [key] and len(fake.requests) == 1


async def test_a_dismissed_alarm_never_reaches_119(system: Firegate, fake: FakeDispatch119) -> None:
    await sim_alarm(system, 891)  # unregistered: a site of its own
    row = await alarm_of(system, 891)
    assert row["site"] == "891"
    done = await cli(system, "alarm", "dismiss", row["id"], "--reason", "false")
    assert done.returncode == 0, done.stderr
    bad = await cli(system, "alarm", "dismiss", "no-such-id", "--reason", "test")
    assert bad.returncode != 0 and bad.stderr and "Traceback" not in bad.stderr
    await asyncio.sleep(1.5)
    assert fake.requests == []
    assert (await alarm_of(system, 891))["state"] == "dismissed"


async def test_policies_confirm_without_an_operator(system: Firegate, fake: FakeDispatch119) -> None:
    await sim_alarm(system, 892, manual=True)  # a manual call point
    (key,) = await fake.wait_for(1, 10)
    assert fake.incidents[key.split(":")[0]]["confirmed_by"] == "policy:manual_alarm"
    # two detectors of one site (889 and 890 are both SH-XH-0001)
    await sim_alarm(system, 889)
    await sim_alarm(system, 890)
    keys = await fake.wait_for(2, 10)
    body = fake.incidents[keys[1].split(":")[0]]
    assert body["confirmed_by"] == "policy:multi_detector" and body["site"]["id"] == "SH-XH-0001"
    assert sorted(a["device"] for a in body["alarms"]) == ["889", "890"]


async def test_an_endpoint_down_for_a_while_then_back_gets_the_incident_once(
    system: Firegate, fake: FakeDispatch119
) -> None:
    fake.down = True
    await sim_alarm(system, 893, manual=True)
    await wait_until(lambda: len(fake.requests) >= 3, 15)
    assert fake.accepted == []
    fake.down = False
    await fake.wait_for(1, 10)
    await asyncio.sleep(1.5)
    assert len(fake.accepted) == 1
    metrics = await asyncio.to_thread(system.metrics)
    assert 'firegate_forward_retries_total{destination="119"}' in metrics
    assert "firegate_confirm_to_119_seconds_count 1.0" in metrics


async def test_a_forwarder_killed_mid_delivery_loses_and_duplicates_nothing(
    tmp_path: Path, fake: FakeDispatch119
) -> None:
    config = str(write_config(tmp_path, fake))
    main = Firegate(tmp_path, "--config", config, "--role", "gateway", "--role", "lifecycle")
    forwarders = Firegate(tmp_path, "--config", config, "--role", "forwarders", log="forwarders.log")
    try:
        await asyncio.to_thread(main.start)
        forwarders.env["FIREGATE_NATS__URL"] = f"nats://127.0.0.1:{main.nats}"
        forwarders.env["FIREGATE_DATA_DIR"] = str(tmp_path / "forwarders-data")
        await asyncio.to_thread(forwarders.start)
        fake.delay = 1.5  # the POST is in flight when the forwarder dies
        await sim_alarm(main, 889, manual=True)
        await asyncio.sleep(0.7)
        forwarders.kill_all()  # SIGKILL, mid-delivery
        await fake.wait_for(1, 10)  # the receiver took it; nobody heard its answer
        fake.delay = 0.0
        await asyncio.to_thread(forwarders.start)
        await wait_until(lambda: len(fake.requests) >= 2, 15)  # redelivered after ack_wait
        await asyncio.sleep(1.0)
        assert len(fake.accepted) == 1
        assert {r.key for r in fake.requests} == set(fake.accepted)
        async with nats_client(f"nats://127.0.0.1:{main.nats}") as nc:
            js = nc.jetstream(timeout=5.0)
            names = [c.name for c in await js.consumers_info("FIRE")]
            info = await js.consumer_info("FIRE", next(n for n in names if n.startswith("fwd-119-")))
            assert info.num_ack_pending == 0 and info.num_pending == 0
    finally:
        forwarders.kill_all()
        main.kill_all()


async def retained(broker: MosquittoBroker, topic_filter: str) -> dict[str, Any]:
    """What a new subscriber sees at once: the retained messages (ended by a probe message)."""
    out: dict[str, Any] = {}
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic_filter, qos=1)
        await client.subscribe("probe/end", qos=1)
        await client.publish("probe/end", b"x", qos=1)
        async with asyncio.timeout(5):
            async for msg in client.messages:
                if str(msg.topic) == "probe/end":
                    return out
                out[str(msg.topic)] = json.loads(bytes(msg.payload or b"null"))  # type: ignore[arg-type]
    return out


async def test_faults_reach_mqtt_raised_then_cleared_with_the_open_state_retained(
    tmp_path: Path, fake: FakeDispatch119
) -> None:
    async with running_mosquitto(tmp_path / "mqtt") as broker:
        fg = Firegate(tmp_path, "--config", str(write_config(tmp_path, fake, broker)))
        try:
            await asyncio.to_thread(fg.start)
            async with aiomqtt.Client(broker.host, broker.port) as watcher:
                await watcher.subscribe("fg/events/#", qos=1)
                dev = await Uitd(889).connect(fg.gb)
                fault = ComponentStatus.make(1, 1, 42, 7, 0b101, "3F 走廊", TimeTag.now())
                assert (await dev.exchange(dev.frame(2, [fault]))).command == Command.CONFIRM
                topic = "fg/faults/SH-XH-0001/889/1-1-7/fault"
                await wait_until(lambda: _has(broker, topic), 10, 0.1)
                state = (await retained(broker, "fg/faults/#"))[topic]
                assert state["state"] == "open" and state["event"]["type"] == "fault_raised"
                listed = await cli(fg, "fault", "list", "--json")  # tracked until cleared
                assert listed.returncode == 0, listed.stderr
                assert [(f["device"], f["condition"]) for f in json.loads(listed.stdout)] == [
                    ("889", "fault")
                ]
                await asyncio.sleep(1.1)  # a new time tag: a new report
                clear = ComponentStatus.make(1, 1, 42, 7, 0b001, "3F 走廊", TimeTag.now())
                assert (await dev.exchange(dev.frame(2, [clear]))).command == Command.CONFIRM
                seen = []
                async with asyncio.timeout(10):
                    async for msg in watcher.messages:
                        seen.append(str(msg.topic).rsplit("/", 1)[-1])
                        if "fault_cleared" in seen:
                            break
                assert seen.index("fault_raised") < seen.index("fault_cleared")
                await dev.close()
                await wait_until(lambda: _gone(broker, topic), 10, 0.1)
                listed = await cli(fg, "fault", "list", "--json")
                assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed
        finally:
            fg.kill_all()


async def _has(broker: MosquittoBroker, topic: str) -> bool:
    return topic in await retained(broker, "fg/faults/#")


async def _gone(broker: MosquittoBroker, topic: str) -> bool:
    return topic not in await retained(broker, "fg/faults/#")
