"""`firegate run` as ops run it: a subprocess from a clean directory, stopped by signals."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

from firegate.codecs.gb26875 import Command, ComponentStatus, TimeTag
from tests.gateway.client import Uitd
from tests.integration.process import Firegate, port_open
from tests.integration.test_drain_process import readyz
from tests.natsserver import nats_client


def nats_servers_under(path: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                cwd = os.readlink(proc / "cwd")
                if "nats-server" in cmd and (str(path) in cmd or cwd.startswith(str(path))):
                    pids.append(int(proc.name))
    return pids


async def test_run_confirms_counts_and_stops_cleanly(firegate: Firegate, tmp_path: Path) -> None:
    started = time.monotonic()
    await asyncio.to_thread(firegate.start)
    assert time.monotonic() - started < 15
    dev = await Uitd(74565).connect(firegate.gb)
    for _ in range(3):
        assert (await dev.exchange(dev.frame())).command == Command.CONFIRM
    alarm = ComponentStatus.make(1, 1, 42, 9, 0b11, "大厅", TimeTag.now())
    assert (await dev.exchange(dev.frame(2, [alarm]))).command == Command.CONFIRM
    await dev.close()
    text = await asyncio.to_thread(firegate.metrics)
    line = next(
        x
        for x in text.splitlines()
        if x.startswith("firegate_gateway_frames_received_total") and 'command="send_data"' in x
    )
    assert float(line.split()[-1]) == 4
    assert nats_servers_under(tmp_path), "the embedded nats-server should run with its data in the workdir"
    firegate.signal(signal.SIGTERM)
    assert firegate.proc is not None
    assert await asyncio.to_thread(firegate.proc.wait, 10) == 0
    await asyncio.sleep(0.3)
    assert not port_open(firegate.nats) and not nats_servers_under(tmp_path)


async def send_until_confirmed(dev: Uitd, port: int, raw: bytes, deadline: float) -> None:
    """What a UITD does: resend the same bytes until confirmed, reconnecting when the link drops."""
    while time.monotonic() < deadline:
        try:
            if dev.writer is None or dev.writer.is_closing():
                await dev.connect(port)
            reply = await dev.exchange(raw, timeout=1.0)
            if reply.command == Command.CONFIRM and reply.serial == raw[2] | raw[3] << 8:
                return
        except (OSError, ConnectionError, TimeoutError):
            await dev.close()
            dev.writer = None
            await asyncio.sleep(0.2)
    raise AssertionError(f"device {dev.address} never got a confirm")


async def test_sigkill_mid_load_then_retransmissions_give_exactly_the_sent_set(firegate: Firegate) -> None:
    await asyncio.to_thread(firegate.start)
    devices = [Uitd(5000 + i) for i in range(8)]
    frames = {
        d.address: [
            d.frame(2, [ComponentStatus.make(1, 1, 42, n, 0b11, f"{n}号", TimeTag.now())]) for n in range(12)
        ]
        for d in devices
    }
    deadline = time.monotonic() + 60

    async def device_loop(d: Uitd) -> None:
        for raw in frames[d.address]:
            await send_until_confirmed(d, firegate.gb, raw, deadline)

    async def killer() -> None:
        await asyncio.sleep(0.3)
        assert firegate.proc is not None
        firegate.proc.send_signal(signal.SIGKILL)  # firegate only: its nats-server child must follow
        await asyncio.to_thread(firegate.proc.wait, 10)
        await asyncio.to_thread(firegate.start)

    async with asyncio.TaskGroup() as tg:
        for d in devices:
            tg.create_task(device_loop(d))
        tg.create_task(killer())
    for d in devices:
        await d.close()
    async with nats_client(f"nats://127.0.0.1:{firegate.nats}") as nc:
        js = nc.jetstream(timeout=5.0)
        sub = await js.subscribe("fire.alarm.>", ordered_consumer=True)
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(json.loads((await sub.next_msg(timeout=2)).data))
        await sub.unsubscribe()  # nats-py's close leaves an ordered consumer's checks running
    sent = {(str(a), n) for a in frames for n in range(12)}
    seen = [(e["device"], e["point"]["component_address"]) for e in got]
    assert len(seen) == len(set(seen)), "a duplicate reached the stream"
    assert set(seen) == sent


async def test_site_registry_reloads_on_sighup(tmp_path: Path) -> None:
    registry = tmp_path / "sites.yaml"
    registry.write_text("sites:\n  A:\n    unit: 甲单位\n    uitds: [1]\n", encoding="utf-8")
    fg = Firegate(tmp_path)
    fg.env["FIREGATE_SITES"] = str(registry)
    try:
        await asyncio.to_thread(fg.start)
        dev = await Uitd(74565).connect(fg.gb)

        async def alarm_site(n: int) -> str:
            alarm = ComponentStatus.make(1, 1, 42, n, 0b11, "大厅", TimeTag.now())
            assert (await dev.exchange(dev.frame(2, [alarm]))).command == Command.CONFIRM
            async with nats_client(f"nats://127.0.0.1:{fg.nats}") as nc:
                sub = await nc.jetstream(timeout=5.0).subscribe("fire.alarm.74565", ordered_consumer=True)
                got = []
                with contextlib.suppress(TimeoutError):
                    while True:
                        got.append(json.loads((await sub.next_msg(timeout=1)).data))
                await sub.unsubscribe()  # nats-py's close leaves an ordered consumer's checks running
            return str(got[-1]["site"])

        assert await alarm_site(1) == "74565"  # unregistered: a site of its own
        registry.write_text("sites:\n  B:\n    unit: 乙单位\n    uitds: [74565]\n", encoding="utf-8")
        fg.signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert await alarm_site(2) == "B"
        assert "firegate_site_registry_stale 0.0" in fg.metrics()
        registry.write_text("sites: [not, a, mapping]\n", encoding="utf-8")  # a bad edit keeps B
        fg.signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        assert await alarm_site(3) == "B"
        await dev.close()
        assert "site registry not reloaded" in (tmp_path / "firegate.log").read_text()
        # the failed edit is seen without reading the log: a metric, and /readyz's detail
        metrics = fg.metrics()
        assert "firegate_site_registry_stale 1.0" in metrics
        assert 'firegate_site_registry_reloads_total{result="failed"} 1.0' in metrics
        _, body = await asyncio.to_thread(readyz, fg.http)
        check = body["checks"]["site_registry"]  # type: ignore[index]
        assert check["ok"] and check["detail"].startswith("reload failed, the previous registry stays")
    finally:
        fg.kill_all()


async def test_run_against_an_external_nats_with_a_token(tmp_path: Path) -> None:
    from tests.bus.test_auth import nats_server_with

    async with nats_server_with(
        tmp_path, 'jetstream { store_dir: "%s" }\nauthorization { token: "s3cret" }' % (tmp_path / "js")
    ) as port:
        fg = Firegate(tmp_path)
        fg.env.update(FIREGATE_NATS__URL=f"nats://127.0.0.1:{port}", FIREGATE_NATS__TOKEN="s3cret")
        try:
            await asyncio.to_thread(fg.start)
            dev = await Uitd(777).connect(fg.gb)
            alarm = ComponentStatus.make(1, 1, 42, 1, 0b11, "大厅", TimeTag.now())
            assert (await dev.exchange(dev.frame(2, [alarm]))).command == Command.CONFIRM
            await dev.close()
            async with nats_client(f"nats://127.0.0.1:{port}", token="s3cret") as nc:
                info = await nc.jetstream(timeout=5.0).stream_info("FIRE")
                assert info.state.messages >= 1
            assert not nats_servers_under(tmp_path / "firegate-data")  # no embedded server with a URL
        finally:
            fg.kill_all()
