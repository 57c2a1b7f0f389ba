"""SimulatedUitd upstream: send/confirm, retransmission, deny, serials across reconnects, priority,
fault injection, UDP. Every wait is bounded; loopback only, free ports."""

from __future__ import annotations

import asyncio
import itertools
import socket
from dataclasses import replace

import pytest

from firegate.codecs.gb26875 import ComponentStatus, Frame, SystemStatus
from firegate.sim import DeviceSettings, Faults, Kind, Outcome, SimulatedUitd, UdpSimulatedUitd
from tests.ports import free_port
from tests.sim.center import Center, Received, UdpCenter

HOST = "127.0.0.1"
FAST = DeviceSettings(
    heartbeat_interval=None,
    heartbeat_on_connect=False,
    confirm_timeout=0.2,
    retries=3,
    connect_timeout=2.0,
    reconnect_min=0.05,
    reconnect_max=0.2,
)


def data_frames(r: Received) -> bool:
    return r.frame.command == 2 and not r.frame.is_heartbeat


async def test_fire_alarm_confirmed_with_latency() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        async with asyncio.timeout(5):
            result = await dev.send_fire_alarm()
        assert result.ok and result.attempts == 1 and result.serial == 0
        assert result.latency is not None and 0 < result.latency < 1
        st = dev.stats
        assert (st.sent, st.confirmed, st.retransmitted, st.failed) == (1, 1, 0, 0)
        assert st.latency.count == 1 and st.latency.max == pytest.approx(result.latency)
        (frame,) = center.frames(data_frames)
        assert frame.raw == result.frame and frame.source == 889 and frame.serial == 0
        unit = frame.data_unit
        assert unit is not None and unit.type == 2
        (obj,) = unit.objects
        assert isinstance(obj, ComponentStatus) and obj.fire and obj.component_type in (31, 42)
        assert obj.description  # a location text, GB18030


async def test_manual_call_point_variant() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        async with asyncio.timeout(5):
            assert (await dev.send_fire_alarm(manual=True)).ok
        unit = center.frames(data_frames)[0].data_unit
        assert unit is not None
        (obj,) = unit.objects
        assert isinstance(obj, ComponentStatus) and obj.fire and obj.component_type == 23


async def test_missed_confirm_retransmits_same_serial_and_bytes() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        center.drop_confirms = 1
        async with asyncio.timeout(5):
            result = await dev.send_system_status()
        assert result.ok and result.attempts == 2
        first, second = (r for r in center.received if data_frames(r))
        assert first.frame.raw == second.frame.raw == result.frame
        assert first.frame.serial == second.frame.serial == result.serial
        assert second.at - first.at >= FAST.confirm_timeout * 0.9
        assert dev.stats.retransmitted == 1 and dev.stats.confirmed == 1 and dev.stats.sent == 1
        # latency runs from the first transmission
        assert result.latency is not None and result.latency >= FAST.confirm_timeout * 0.9


async def test_fault_knob_drops_a_confirm() -> None:
    faults = Faults(drop_confirms=1)
    async with (
        Center() as center,
        SimulatedUitd(889, HOST, center.port, settings=FAST, faults=faults) as dev,
    ):
        async with asyncio.timeout(5):
            result = await dev.send_analog()
        assert result.ok and result.attempts == 2
        frames = center.frames(data_frames)
        assert len(frames) == 2 and frames[0].raw == frames[1].raw
        assert dev.stats.confirms_dropped == 1 and faults.drop_confirms == 0
        assert center.confirms_sent == 2


async def test_deny_triggers_immediate_retransmission() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        center.deny_next = 1
        async with asyncio.timeout(5):
            result = await dev.send_uitd_status()
        assert result.ok and result.attempts == 2
        first, second = (r for r in center.received if data_frames(r))
        assert first.frame.raw == second.frame.raw
        assert second.at - first.at < FAST.confirm_timeout  # on the deny, not after a timeout
        assert dev.stats.denied == 1 and dev.stats.retransmitted == 1


async def test_fails_after_retries() -> None:
    settings = replace(FAST, retries=2, confirm_timeout=0.1)
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=settings) as dev:
        center.confirm = False
        async with asyncio.timeout(5):
            result = await dev.send_system_status()
        assert result.outcome is Outcome.FAILED and result.attempts == 3 and result.latency is None
        frames = center.frames(data_frames)
        assert len(frames) == 3 and len({f.raw for f in frames}) == 1
        assert (dev.stats.failed, dev.stats.retransmitted, dev.stats.confirmed) == (1, 2, 0)


@pytest.mark.parametrize("start", [0, 1])
async def test_reconnect_restarts_serial(start: int) -> None:
    settings = replace(FAST, heartbeat_on_connect=True, serial_start=start)
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=settings) as dev:
        async with asyncio.timeout(5):
            for _ in range(2):
                assert (await dev.send_system_status()).ok
            old = {r.frame.serial for r in center.received if r.conn == 1}
            assert old == {start, start + 1, start + 2}  # heartbeat on connect, then two uploads
            center.drop()
            hb = await center.wait_for(lambda r: r.conn == 2)
            assert hb.frame.is_heartbeat and hb.frame.serial == start
            result = await dev.send_system_status()
        assert result.ok and result.serial == start + 1
        assert dev.stats.reconnects == 1 and dev.stats.connects == 2 and dev.stats.disconnects == 1


async def test_exchange_cut_by_a_drop_is_sent_again_on_the_next_connection() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        center.confirm = False
        async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
            pending = tg.create_task(dev.send_fire_alarm())
            await center.wait_for(data_frames)
            center.confirm = True
            center.drop()
        result = pending.result()
        assert result.ok and result.serial == 0  # the new connection's first serial
        first, again = (r for r in center.received if data_frames(r))
        assert (first.conn, again.conn) == (1, 2)
        assert first.frame.data == again.frame.data  # same alarm, same object time tag
        assert dev.stats.interrupted == 1 and dev.stats.sent == 2 and dev.stats.confirmed == 1


async def test_fire_alarm_jumps_the_local_queue() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        center.confirm_delay = 0.1
        for _ in range(3):
            assert dev.submit(Kind.STATUS)
        async with asyncio.timeout(5):
            await center.wait_for(data_frames)  # the first status is in flight
            assert (await dev.send_fire_alarm()).ok
            await center.wait_count(data_frames, 4)
        types = [f.data_unit.type for f in center.frames(data_frames) if f.data_unit]
        assert types == [1, 2, 1, 1]
        # one outstanding exchange at a time: each frame went out after the previous confirm
        times = [r.at for r in center.received if data_frames(r)]
        assert all(b - a >= center.confirm_delay * 0.9 for a, b in itertools.pairwise(times))


async def test_periodic_heartbeats() -> None:
    settings = replace(FAST, heartbeat_interval=0.1, heartbeat_on_connect=True)
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=settings) as dev:
        await center.wait_count(lambda r: r.frame.is_heartbeat, 4, within=3)
        beats = center.frames(lambda r: r.frame.is_heartbeat)
        assert all(f.data == b"" and f.command == 2 for f in beats)
        assert [f.serial for f in beats[:4]] == [0, 1, 2, 3]
        await asyncio.sleep(0.05)
        assert dev.stats.heartbeats >= 4 and dev.stats.failed == 0


async def test_fault_then_clearing_on_the_same_component() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        async with asyncio.timeout(5):
            fault = await dev.send_fault()
            clear = await dev.send_fault()  # the kind alternates with the device's state
        assert fault.kind == Kind.FAULT and clear.kind == Kind.CLEAR
        a, b = (f.data_unit.objects[0] for f in center.frames(data_frames) if f.data_unit)
        assert isinstance(a, ComponentStatus) and isinstance(b, ComponentStatus)
        assert a.fault and not b.fault and a.component_address == b.component_address
        assert dev.stats.sent_by_kind == {"fault": 1, "clear": 1}


async def test_system_status_carries_an_active_fault() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        async with asyncio.timeout(5):
            await dev.send_fault()
            await dev.send_system_status()
        unit = center.frames(data_frames)[-1].data_unit
        assert unit is not None
        (obj,) = unit.objects
        assert isinstance(obj, SystemStatus) and obj.fault and not obj.fire


async def test_chunked_writes_and_garbage_still_confirmed() -> None:
    faults = Faults(chunk_writes=True, garbage_rate=1.0)
    async with (
        Center() as center,
        SimulatedUitd(889, HOST, center.port, settings=FAST, faults=faults) as dev,
    ):
        async with asyncio.timeout(5):
            results = [await dev.send(kind) for kind in ("fire", "status", "analog", "uitd", "fault")]
        assert all(r.ok and r.attempts == 1 for r in results)
        assert [f.raw for f in center.frames(data_frames)] == [r.frame for r in results]
        assert dev.stats.garbage_sent == 5


async def test_queue_limit_sheds_other_traffic_never_fire() -> None:
    dev = SimulatedUitd(889, HOST, 1, settings=replace(FAST, queue_limit=2))
    assert dev.submit("status") and dev.submit("analog")
    assert not dev.submit("status")
    assert all(dev.submit("fire") for _ in range(10))
    assert dev.stats.shed == 1


async def test_refused_connection_backs_off_and_closes_promptly() -> None:
    port = free_port()
    loop = asyncio.get_running_loop()
    async with SimulatedUitd(889, HOST, port, settings=FAST) as dev:
        await asyncio.sleep(0.4)
        assert not dev.connected and not dev.connected_once
        assert 2 <= dev.stats.connect_failures <= 10  # backoff, not a busy loop
        began = loop.time()
    assert loop.time() - began < 0.5


async def test_close_abandons_the_exchange_in_flight() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        center.confirm = False
        async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
            pending = tg.create_task(dev.send_system_status())
            await center.wait_for(data_frames)
            dev.close()
        assert pending.result().outcome is Outcome.ABANDONED
        assert dev.stats.unfinished == 1 and dev.stats.interrupted == 0


async def test_udp_variant() -> None:
    loop = asyncio.get_running_loop()
    transport, center = await loop.create_datagram_endpoint(UdpCenter, local_addr=(HOST, 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        settings = replace(FAST, heartbeat_on_connect=True)
        async with UdpSimulatedUitd(889, HOST, port, settings=settings) as dev:
            async with asyncio.timeout(5):
                await center.arrived.wait()  # the heartbeat on "connect"
                result = await dev.send_fire_alarm()
        assert result.ok and result.serial == 1  # after the heartbeat
        assert [f.serial for f in center.received] == [0, 1]
        assert isinstance(center.received[1], Frame) and center.received[1].raw == result.frame
    finally:
        transport.close()


async def test_window_allows_several_outstanding_exchanges() -> None:
    async with (
        Center() as center,
        SimulatedUitd(889, HOST, center.port, settings=replace(FAST, window=3, confirm_timeout=1.0)) as dev,
    ):
        center.confirm_delay = 0.2  # the center answers one frame at a time, slowly
        async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
            pending = [tg.create_task(dev.send_system_status()) for _ in range(6)]
            await center.wait_count(data_frames, 3)
            await asyncio.sleep(0.05)
            assert len(center.frames(data_frames)) == 3  # three in flight, no more
        results = [t.result() for t in pending]
        assert all(r.ok and r.attempts == 1 for r in results)
        assert sorted(r.serial or 0 for r in results) == [0, 1, 2, 3, 4, 5]


async def test_connect_timeout_is_bounded() -> None:
    """A listener whose accept queue is full drops SYNs (Linux): the connect hangs until its timeout."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(3):  # fill the accept queue (backlog 0 holds one) and the SYN queue
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((HOST, port))
            fillers.append(s)
        try:
            await asyncio.sleep(0.05)
            settings = replace(FAST, connect_timeout=0.3, reconnect_min=1.0, reconnect_max=1.0)
            async with SimulatedUitd(889, HOST, port, settings=settings) as dev:
                await asyncio.sleep(0.5)
                assert not dev.connected_once and dev.stats.connect_failures == 1
        finally:
            for s in fillers:
                s.close()


async def test_send_data_sends_any_data_unit_as_is() -> None:
    async with Center() as center, SimulatedUitd(889, HOST, center.port, settings=FAST) as dev:
        async with asyncio.timeout(5):
            result = await dev.send_data(b"\x16")  # the one-byte "handshake" heartbeat variant
            with pytest.raises(ValueError, match="1024"):
                await dev.send_data(bytes(1025))
        assert result.ok and result.kind == Kind.CUSTOM
        (frame,) = center.frames()
        assert frame.data == b"\x16" and frame.is_heartbeat
