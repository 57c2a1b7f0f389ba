"""A UITD on a serial line (dialect gb26875), served by the gateway's own session over serialx
on a pty pair, end to end into a private nats-server's stream FIRE: confirm after storage,
a resend stored once, a command over NATS reaching the line."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError

from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.codecs.gb26875 import Command, Frame, FrameError, Framer, answer
from firegate.gateway.remote import CommandServer
from firegate.gateway.serial.config import Panel
from firegate.gateway.serial.uitd import UitdLine
from firegate.gateway.server import Gateway
from tests.gateway.client import Uitd
from tests.gateway.conftest import quick_options
from tests.gateway.serial.helpers import Pty, sample
from tests.gateway.serial.test_line import DeviceServer
from tests.gateway.standalone import make_gateway, running
from tests.integration.test_pipeline import alarm, gateway_on, stored
from tests.natsserver import nats_client, running_nats_server, wait_until


class SerialUitd:
    """The UITD's end of the pty: frames out, the center's frames in."""

    def __init__(self, pty: Pty, address: int) -> None:
        self.pty = pty
        self.uitd = Uitd(address)
        self.framer = Framer()
        self.seen = 0

    async def next_frame(self, timeout: float = 3.0) -> Frame:
        async with asyncio.timeout(timeout):
            while True:
                for item in self.framer.feed(bytes(self.pty.received[self.seen :])):
                    if isinstance(item, FrameError):
                        raise item
                    self.seen = len(self.pty.received)
                    return item
                self.seen = len(self.pty.received)
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serial_uitd(tmp_path: Path) -> AsyncIterator[tuple[NATS, Gateway, SerialUitd, UitdLine]]:
    pty = Pty(tmp_path / "ttyUITD")
    panel = Panel(port=str(pty.path), dialect="gb26875", reopen_min=0.05, reopen_max=0.2)
    async with (
        running_nats_server(tmp_path / "nats") as server,
        nats_client(server.url) as nc,
    ):
        await ensure_stream(nc.jetstream(timeout=5.0), StreamSettings())
        async with gateway_on(nc, tmp_path / "spool", confirm_timeout=1.0, retries=0) as gw:
            line = UitdLine(panel, "panels.0", gw)
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(line.run()), tg.create_task(CommandServer(nc, gw).run())]
                try:
                    await wait_until(lambda: sample("firegate_serial_link_up", panel=panel.port) == 1)
                    yield nc, gw, SerialUitd(pty, 74565), line
                finally:
                    for task in tasks:
                        task.cancel()
                    pty.vanish()


async def test_a_fire_on_the_line_is_confirmed_after_storage_and_a_resend_stored_once(tmp_path: Path) -> None:
    async with serial_uitd(tmp_path) as (nc, gw, dev, _):
        raw = dev.uitd.frame(2, [alarm(7)])
        dev.pty.write(raw)
        confirm = await dev.next_frame()
        assert confirm.command == Command.CONFIRM and confirm.serial == 0
        alarms = await stored(nc, "fire.alarm.74565")  # the device id is the frame's source address
        assert len(alarms) == 1 and alarms[0]["device"] == "74565"
        assert gw.holds("74565")
        dev.pty.write(raw)  # the confirm was lost: the UITD sends the same frame again
        again = await dev.next_frame()
        assert again.command == Command.CONFIRM and again.serial == 0
        assert len(await stored(nc, "fire.alarm.74565")) == 1


async def test_a_command_over_nats_reaches_the_line(tmp_path: Path) -> None:
    async with serial_uitd(tmp_path) as (nc, _, dev, _):
        dev.pty.write(dev.uitd.frame())  # a heartbeat makes the device known on this line
        assert (await dev.next_frame()).command == Command.CONFIRM
        asking = asyncio.create_task(ask(nc, "firegate.cmd.74565.clock_sync"))
        control = await dev.next_frame()
        assert control.command == Command.CONTROL and control.data[0] == 90  # clock sync
        dev.pty.write(answer(control, Command.CONFIRM))
        reply = json.loads(await asking)
        assert reply["ok"] is True and reply["result"] == "confirmed"


async def ask(nc: NATS, subject: str) -> bytes:
    """The request once the command server has subscribed for the device (it follows the
    device's "up" a moment after its first frame)."""
    async with asyncio.timeout(5):
        while True:
            try:
                return (await nc.request(subject, b"{}", timeout=3)).data
            except NoRespondersError:
                await asyncio.sleep(0.02)


async def test_the_line_vanishing_ends_the_session_and_it_is_served_again(tmp_path: Path) -> None:
    async with serial_uitd(tmp_path) as (_, gw, dev, line):
        dev.pty.write(dev.uitd.frame())
        assert (await dev.next_frame()).command == Command.CONFIRM
        assert gw.holds("74565")
        dev.pty.vanish()
        await wait_until(lambda: not gw.holds("74565"))
        assert sample("firegate_serial_link_up", panel=line.name) == 0
        dev.pty.replug()
        await wait_until(lambda: sample("firegate_serial_link_up", panel=line.name) == 1)
        dev.seen = 0
        dev.pty.received.clear()
        dev.pty.write(dev.uitd.frame())
        assert (await dev.next_frame()).command == Command.CONFIRM
        assert gw.holds("74565")


async def test_a_uitd_behind_a_serial_device_server(tmp_path: Path) -> None:
    server = DeviceServer()
    await server.start()
    panel = Panel(port=f"socket://127.0.0.1:{server.port}", dialect="gb26875", reopen_min=0.05)
    uitd = Uitd(5150)
    try:
        async with running(make_gateway(quick_options())) as gw, asyncio.TaskGroup() as tg:
            running_line = tg.create_task(UitdLine(panel, "panels.0", gw).run())
            await wait_until(lambda: server.writers)
            server.send(uitd.frame(2, [alarm(3)]))
            await wait_until(lambda: Framer().feed(bytes(server.received)))  # a whole frame
            (confirm,) = Framer().feed(bytes(server.received))
            assert isinstance(confirm, Frame) and confirm.command == Command.CONFIRM and confirm.serial == 0
            assert gw.holds("5150")
            running_line.cancel()
    finally:
        await server.stop()
