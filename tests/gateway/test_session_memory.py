"""Gateway sessions over an in-memory transport: deterministic framing and link cases."""

from __future__ import annotations

import asyncio

from firegate.bus.events import DeviceOffline, FireAlarm
from firegate.codecs.gb26875 import Command, ComponentStatus, TimeTag
from firegate.gateway.server import GatewayOptions
from firegate.ingest.sink import MemorySink
from tests.gateway.client import Uitd
from tests.gateway.memory import MemoryLink
from tests.gateway.standalone import make_gateway, running
from tests.natsserver import wait_until

FIRE = ComponentStatus.make(1, 1, 31, 0x00010002, 0b11, "三层东侧", TimeTag.now())


def _options(**kw: float) -> GatewayOptions:
    return GatewayOptions(host="127.0.0.1", port=0, clock_sync_on_connect=False, **kw)  # type: ignore[arg-type]


async def test_a_frame_split_into_single_bytes_is_confirmed_once_after_storage() -> None:
    sink = MemorySink()
    sink.delay = 0.05  # the confirm must wait for the store
    gw = make_gateway(_options(), sink)
    async with running(gw):
        link = MemoryLink(gw)
        device = Uitd(4101)
        frame = device.frame(2, [FIRE])
        for byte in frame:
            link.send(bytes([byte]))
        assert link.replies() == []  # not stored yet: nothing confirmed
        (confirm,) = await link.wait_replies(1)
        assert (confirm.command, confirm.serial) == (Command.CONFIRM, 0)
        assert [e for e in sink.events if isinstance(e, FireAlarm)]
        await asyncio.sleep(0.1)
        assert link.replies() == []  # one confirm, no more


async def test_frames_glued_and_split_anywhere_are_confirmed_in_order() -> None:
    gw = make_gateway(_options())
    async with running(gw):
        link = MemoryLink(gw)
        device = Uitd(4102)
        stream = b"".join(device.frame() for _ in range(5))  # five heartbeats
        for cut in (3, 31, 32, 60, 100):  # glued, and cut inside headers and checksums
            link.send(stream[:cut])
            stream = stream[cut:]
        link.send(stream)
        confirms = await link.wait_replies(5)
        assert [(c.command, c.serial) for c in confirms] == [(Command.CONFIRM, n) for n in range(5)]


async def test_a_half_open_link_is_closed_and_its_device_goes_offline() -> None:
    """The device vanished without a FIN: writes still 'succeed', nothing more arrives."""
    sink = MemorySink()
    gw = make_gateway(_options(idle_timeout=0.3, sweep_interval=0.05), sink)
    async with running(gw):
        link = MemoryLink(gw)
        link.send(Uitd(4103).frame())
        await link.wait_replies(1)
        await wait_until(link.transport.is_closing, within=5)
        await wait_until(lambda: any(isinstance(e, DeviceOffline) for e in sink.events), within=5)
        (offline,) = [e for e in sink.events if isinstance(e, DeviceOffline)]
        assert offline.device == "4103"
        assert gw.session_of("4103") is None


async def test_a_silent_connection_never_sending_a_valid_frame_is_closed() -> None:
    gw = make_gateway(_options(first_frame_timeout=0.2, sweep_interval=0.05))
    async with running(gw):
        link = MemoryLink(gw)
        link.send(b"GET / HTTP/1.1\r\n\r\n")  # a port scanner, not a UITD
        await wait_until(link.transport.is_closing, within=5)
        assert link.replies() == []
