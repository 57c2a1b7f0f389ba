"""Device commands over NATS request/reply, served by the gateway that holds the device."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from firegate.codecs.gb26875 import Command, TimeTag, UitdStatus, answer
from firegate.gateway.remote import CommandServer, request
from firegate.gateway.server import Gateway, GatewayOptions
from tests.gateway.client import Uitd
from tests.gateway.standalone import make_gateway, serve
from tests.natsserver import nats_client, running_nats_server

FIREGATE = str(Path(sys.executable).with_name("firegate"))


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[tuple[NATS, Gateway, str]]:
    async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as nc:
        gw = make_gateway(
            GatewayOptions(
                host="127.0.0.1", port=0, clock_sync_on_connect=False, confirm_timeout=1.0, retries=1
            )
        )
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(serve(gw))
            commands = tg.create_task(CommandServer(nc, gw).run())
            await gw.ready.wait()
            yield nc, gw, server.url
            commands.cancel()
            gw.stop()
            await serving


async def connected(gw: Gateway, address: int) -> Uitd:
    dev = await Uitd(address).connect(gw.port or 0)
    await dev.exchange(dev.frame())
    for _ in range(50):  # the subscription follows the session
        if gw.session_of(str(address)) is not None:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    return dev


async def test_read_status_round_trip_over_nats(setup: tuple[NATS, Gateway, str]) -> None:
    nc, gw, _ = setup
    dev = await connected(gw, 321)
    pending = asyncio.create_task(request(nc, "321", "read", {"type": 81}, 5))
    ask = await dev.next_frame()
    assert ask.command == Command.REQUEST
    await dev.reply(ask, 21, [UitdStatus(0b101, TimeTag.now())])
    result = await pending
    assert result["ok"] and result["reply"]["type"] == 21
    assert result["reply"]["objects"][0]["status_flags"] == ["normal", "fault"]
    await dev.close()


async def test_clock_sync_and_duty_check_over_nats(setup: tuple[NATS, Gateway, str]) -> None:
    nc, gw, _ = setup
    dev = await connected(gw, 322)
    pending = asyncio.create_task(request(nc, "322", "clock_sync", {}, 5))
    (sync,) = await dev.answer_commands(1)
    assert sync.data_unit is not None and sync.data_unit.type == 90
    assert (await pending)["ok"]
    pending = asyncio.create_task(request(nc, "322", "duty_check", {"timeout_minutes": 3}, 5))
    (check,) = await dev.answer_commands(1)
    assert check.data_unit is not None and check.data_unit.objects[0].timeout_minutes == 3  # type: ignore[attr-defined]
    result = await pending
    assert result["ok"] and result["answer_window_s"] == 180
    await dev.close()


async def test_denied_unknown_and_bad_requests(setup: tuple[NATS, Gateway, str]) -> None:
    nc, gw, _ = setup
    assert (await request(nc, "999", "init", {}, 3))["error"] == "not_connected"
    dev = await connected(gw, 323)
    pending = asyncio.create_task(request(nc, "323", "init", {}, 10))
    for _ in range(2):  # deny the first try and the retransmission
        frame = await dev.next_frame()
        await dev.send(answer(frame, Command.DENY))
    result = await pending
    assert not result["ok"] and result["error"] == "denied"
    bad = await request(nc, "323", "read", {"type": 5}, 3)
    assert not bad["ok"] and bad["error"] == "bad_request"
    await dev.close()


async def test_cli_device_command(setup: tuple[NATS, Gateway, str]) -> None:
    _, gw, url = setup
    dev = await connected(gw, 324)
    env = dict(os.environ, FIREGATE_NATS__URL=url)
    cli = await asyncio.create_subprocess_exec(
        FIREGATE,
        "device",
        "324",
        "clock_sync",
        "--json",
        "--timeout",
        "5",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    await dev.answer_commands(1)
    out, err = await asyncio.wait_for(cli.communicate(), 15)
    assert cli.returncode == 0, err
    assert json.loads(out)["ok"] is True
    missing = await asyncio.create_subprocess_exec(
        FIREGATE,
        "device",
        "424242",
        "init",
        "--json",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(missing.communicate(), 15)
    assert missing.returncode == 1 and json.loads(out)["error"] == "not_connected"
    await dev.close()
