"""The gateway over real loopback TCP and UDP: confirms, denies, dedupe, liveness, commands, limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import pytest
from prometheus_client import REGISTRY

from firegate.bus.events import (
    DeviceOffline,
    DeviceOnline,
    DeviceRefused,
    DutyCheckResult,
    FaultRaised,
    FireAlarm,
)
from firegate.codecs.gb26875 import (
    Command,
    ComponentStatus,
    Reserved,
    SystemStatus,
    TimeTag,
    UitdOperation,
    UitdStatus,
    answer,
    build_frame,
    parse_frame,
)
from firegate.gateway.server import Gateway, GatewayOptions
from firegate.ingest import IngestSettings
from firegate.ingest.sink import MemorySink
from tests.gateway.client import CENTER, Uitd
from tests.gateway.conftest import quick_options
from tests.gateway.standalone import make_gateway, running, serve


def fire(i: int = 1) -> ComponentStatus:
    return ComponentStatus.make(1, 1, 42, i, 0b11, "1F大厅感烟", TimeTag.now())


def sink_of(gw: Gateway) -> MemorySink:
    assert isinstance(gw.ingest.sink, MemorySink)
    return gw.ingest.sink


async def test_confirm_has_the_same_serial_and_is_addressed_back(gateway: Gateway) -> None:
    dev = await Uitd(74565).connect(gateway.port or 0)
    for serial in (0, 1, 0x4040, 65535):
        reply = await dev.exchange(dev.frame(serial=serial))
        assert reply.command == Command.CONFIRM and reply.serial == serial
        assert reply.destination == 74565 and reply.source == CENTER and reply.data == b""
    await dev.close()


async def test_fire_alarm_is_published_before_the_confirm(gateway: Gateway) -> None:
    dev = await Uitd(74565).connect(gateway.port or 0)
    reply = await dev.exchange(dev.frame(2, [fire()]))
    assert reply.command == Command.CONFIRM
    alarms = [e for e in sink_of(gateway).events if isinstance(e, FireAlarm)]
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm.subject == "fire.alarm.74565" and alarm.device == "74565"
    assert alarm.point.description == "1F大厅感烟" and alarm.point.component_address == 1
    assert (
        alarm.point.component_type_zh == "点型光电感烟火灾探测器"
        and alarm.point.system_type_zh == "火灾报警系统"
    )
    assert any(isinstance(e, DeviceOnline) for e in sink_of(gateway).events)
    await dev.close()


async def test_heartbeats_publish_nothing_but_the_first_online(gateway: Gateway) -> None:
    dev = await Uitd(5).connect(gateway.port or 0)
    for _ in range(3):
        assert (await dev.exchange(dev.frame())).command == Command.CONFIRM
    one_byte = build_frame(serial=9, command=2, source=5, destination=CENTER, data=b"\x16")
    assert (await dev.exchange(one_byte)).serial == 9
    assert [type(e) for e in sink_of(gateway).events] == [DeviceOnline]
    await dev.close()


async def test_bad_checksum_is_denied_and_the_device_still_served(gateway: Gateway) -> None:
    dev = await Uitd(6).connect(gateway.port or 0)
    bad = bytearray(dev.frame(2, [fire()], serial=41))
    bad[-3] ^= 0x5A
    reply = await dev.exchange(bytes(bad))
    assert reply.command == Command.DENY and reply.serial == 41
    assert (await dev.exchange(dev.frame(serial=42))).command == Command.CONFIRM
    await dev.close()


async def test_retransmission_is_confirmed_again_and_published_once(gateway: Gateway) -> None:
    dev = await Uitd(7).connect(gateway.port or 0)
    raw = dev.frame(2, [fire()])
    assert (await dev.exchange(raw)).command == Command.CONFIRM
    await dev.close()
    again = await Uitd(7).connect(gateway.port or 0)  # a reconnect: serials restart, ids do not
    assert (await again.exchange(raw)).command == Command.CONFIRM
    assert len([e for e in sink_of(gateway).events if isinstance(e, FireAlarm)]) == 1
    await again.close()


async def test_no_confirm_when_events_cannot_be_stored(gateway: Gateway) -> None:
    dev = await Uitd(8).connect(gateway.port or 0)
    sink_of(gateway).fail = True
    raw = dev.frame(2, [fire()])
    await dev.send(raw)
    with pytest.raises(TimeoutError):
        await dev.next_frame(timeout=0.5)
    sink_of(gateway).fail = False
    assert (await dev.exchange(raw)).command == Command.CONFIRM  # the UITD's retransmission
    assert len([e for e in sink_of(gateway).events if isinstance(e, FireAlarm)]) == 1
    await dev.close()


async def test_fault_is_edge_detected(gateway: Gateway) -> None:
    dev = await Uitd(9).connect(gateway.port or 0)
    faulty = ComponentStatus.make(1, 1, 40, 3, 0b101, "烟感", TimeTag.now())
    for _ in range(3):
        await dev.exchange(dev.frame(2, [faulty]))
    raised = [e for e in sink_of(gateway).events if isinstance(e, FaultRaised)]
    assert len(raised) == 1 and raised[0].condition == "fault" and raised[0].subject == "fire.fault.9"
    await dev.close()


async def test_reconnect_replaces_the_old_session(gateway: Gateway) -> None:
    first = await Uitd(10).connect(gateway.port or 0)
    await first.exchange(first.frame())
    second = await Uitd(10).connect(gateway.port or 0)
    await second.exchange(second.frame())
    with pytest.raises((ConnectionError, TimeoutError)):
        await first.next_frame(timeout=2)
    assert gateway.session_of("10") is not None and gateway.connections == 1
    await second.close()


@pytest.mark.parametrize(
    "options",
    [quick_options(idle_timeout=0.4, sweep_interval=0.05)],
)
async def test_offline_then_online_with_outage(gateway: Gateway) -> None:
    dev = await Uitd(11).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    await dev.close()
    for _ in range(100):
        if any(isinstance(e, DeviceOffline) for e in sink_of(gateway).events):
            break
        await asyncio.sleep(0.05)
    back = await Uitd(11).connect(gateway.port or 0)
    await back.exchange(back.frame())
    kinds = [type(e) for e in sink_of(gateway).events]
    assert kinds == [DeviceOnline, DeviceOffline, DeviceOnline]
    online = sink_of(gateway).events[-1]
    assert isinstance(online, DeviceOnline) and online.outage_s is not None and online.outage_s > 0
    await back.close()


async def test_read_uitd_status_round_trip(gateway: Gateway) -> None:
    dev = await Uitd(12).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    request = asyncio.create_task(gateway.read("12", 81, [Reserved(0)]))
    ask = await dev.next_frame()
    assert ask.command == Command.REQUEST and ask.data_unit.type == 81  # type: ignore[union-attr]
    await dev.reply(ask, 21, [UitdStatus(0b1, TimeTag.now())])
    got = await asyncio.wait_for(request, 5)
    assert got.command == Command.REPLY and got.data_unit.objects[0].status == 1  # type: ignore[union-attr]
    await dev.close()


async def test_command_retransmitted_then_reported_denied(gateway: Gateway) -> None:
    dev = await Uitd(13).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    task = asyncio.create_task(gateway.init_device("13"))
    first = await dev.next_frame()
    await dev.send(answer(first, Command.DENY))
    second = await dev.next_frame()
    assert second.raw == first.raw  # the same bytes, the same serial
    await dev.send(answer(second, Command.DENY))
    with pytest.raises(Exception, match="denied"):
        await asyncio.wait_for(task, 5)
    await dev.close()


async def test_duty_check_answered(gateway: Gateway) -> None:
    dev = await Uitd(14).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    task = asyncio.create_task(gateway.duty_check("14", 1))
    (check,) = await dev.answer_commands(1)
    assert check.data_unit.objects[0].timeout_minutes == 1  # type: ignore[union-attr]
    await asyncio.sleep(0.1)
    await dev.exchange(dev.frame(24, [UitdOperation(0b100000, 7, TimeTag.now())]))
    result = await asyncio.wait_for(task, 5)
    assert result.answered and result.after_s is not None and result.after_s < 5
    assert any(isinstance(e, DutyCheckResult) for e in sink_of(gateway).events)
    await dev.close()


async def test_clock_sync_on_connect() -> None:
    gw = make_gateway(GatewayOptions(host="127.0.0.1", port=0, confirm_timeout=1, retries=0))
    task = asyncio.create_task(serve(gw))
    await gw.ready.wait()
    dev = await Uitd(15).connect(gw.port or 0)
    await dev.send(dev.frame())
    frames = [await dev.next_frame(), await dev.next_frame()]
    sync = next(f for f in frames if f.command == Command.CONTROL)
    assert sync.data_unit.type == 90  # type: ignore[union-attr]
    await dev.send(answer(sync, Command.CONFIRM))
    await dev.close()
    gw.stop()
    await asyncio.wait_for(task, 10)


async def test_garbage_huge_length_and_slow_drip_do_not_disturb_others(gateway: Gateway) -> None:
    healthy = await Uitd(16).connect(gateway.port or 0)
    noisy = await Uitd(17).connect(gateway.port or 0)
    await noisy.send(bytes(range(256)) * 8)
    header = bytearray(noisy.frame(serial=3)[:27])
    header[24:26] = (60000).to_bytes(2, "little")
    deny = await noisy.exchange(bytes(header))
    assert deny.command == Command.DENY and deny.serial == 3
    drip = await Uitd(18).connect(gateway.port or 0)
    raw = drip.frame(2, [fire(2)])
    for i in range(0, len(raw) - 1):
        await drip.send(raw[i : i + 1])
        if i % 10 == 0:
            assert (await healthy.exchange(healthy.frame())).command == Command.CONFIRM
    await drip.send(raw[-1:])
    assert (await drip.next_frame()).command == Command.CONFIRM
    for d in (healthy, noisy, drip):
        await d.close()


@pytest.mark.parametrize(
    "options",
    [
        quick_options(
            max_connections=5,
            first_frame_timeout=0.3,
            sweep_interval=0.05,
        )
    ],
)
async def test_connection_flood_and_silent_connections(gateway: Gateway) -> None:
    silent = [await Uitd(100 + i).connect(gateway.port or 0) for i in range(5)]
    extra = await Uitd(200).connect(gateway.port or 0)
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        await extra.exchange(extra.frame(), timeout=1)
    await asyncio.sleep(0.6)  # the silent ones never sent a valid frame: closed
    assert gateway.connections == 0
    dev = await Uitd(201).connect(gateway.port or 0)
    assert (await dev.exchange(dev.frame())).command == Command.CONFIRM
    for d in [*silent, dev]:
        await d.close()


@pytest.mark.parametrize(
    "options",
    [quick_options(rate_limit=1, rate_burst=2)],
)
async def test_rate_limit_sheds_status_but_never_fire(gateway: Gateway) -> None:
    dev = await Uitd(19).connect(gateway.port or 0)
    confirmed = 0
    for i in range(5):
        await dev.send(dev.frame(1, [SystemStatus(1, 1, 0b1 | (i % 2) << 4, TimeTag.now())]))
        try:
            await dev.next_frame(timeout=0.3)
            confirmed += 1
        except TimeoutError:
            pass
    assert confirmed < 5
    for i in range(5):
        assert (await dev.exchange(dev.frame(2, [fire(10 + i)]))).command == Command.CONFIRM
    await dev.close()


@pytest.mark.parametrize(
    "options",
    [
        quick_options(
            known_devices={"20": ["127.0.0.0/8"], "21": ["10.0.0.0/8"]},
            registry_policy="reject",
        )
    ],
)
async def test_registry_rejects_unknown_and_wrong_network(gateway: Gateway) -> None:
    ok = await Uitd(20).connect(gateway.port or 0)
    assert (await ok.exchange(ok.frame())).command == Command.CONFIRM
    for address in (21, 22):
        bad = await Uitd(address).connect(gateway.port or 0)
        with pytest.raises((ConnectionError, TimeoutError)):
            await bad.exchange(bad.frame(), timeout=2)
        await bad.close()
    await ok.close()


@pytest.mark.parametrize(
    "options",
    [quick_options(known_devices={"20": ["127.0.0.0/8"], "22": ["10.0.0.0/8"]}, registry_policy="reject")],
)
async def test_a_refused_fire_is_stored_as_a_refusal_and_logged(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A new, unregistered UITD's fire is not confirmed (the registry refuses it) but is not lost
    quietly either: a device_refused event with fire=true, and a WARNING."""
    caplog.set_level(logging.INFO, "firegate.gateway")
    refused = REGISTRY.get_sample_value("firegate_gateway_refused_fires_total") or 0.0
    for address in (21, 22):  # unknown; registered but from the wrong network
        dev = await Uitd(address).connect(gateway.port or 0)
        with pytest.raises((ConnectionError, TimeoutError)):
            await dev.exchange(dev.frame(2, [fire(address)]), timeout=2)
        await dev.close()
    quiet = await Uitd(23).connect(gateway.port or 0)  # twice refused without a fire: stored once
    for _ in range(2):
        with pytest.raises((ConnectionError, TimeoutError)):
            await quiet.exchange(quiet.frame(), timeout=2)
        await quiet.close()
        quiet = await Uitd(23).connect(gateway.port or 0)
    await quiet.close()
    await asyncio.wait_for(gateway.ingest.idle(), 5)
    refusals = [e for e in sink_of(gateway).events if isinstance(e, DeviceRefused)]
    assert [(e.device, e.reason, e.fire) for e in refusals] == [
        ("21", "unknown_device", True),
        ("22", "wrong_network", True),
        ("23", "unknown_device", False),
    ]
    assert refusals[0].subject == "fire.device.21" and refusals[0].peer is not None
    assert not [e for e in sink_of(gateway).events if isinstance(e, FireAlarm)]
    assert REGISTRY.get_sample_value("firegate_gateway_refused_fires_total") == refused + 2
    warnings = [r for r in caplog.records if "FIRE ALARM" in r.getMessage()]
    assert [(r.levelno, r.__dict__["device"]) for r in warnings] == [
        (logging.WARNING, "21"),
        (logging.WARNING, "22"),
    ]


@pytest.mark.parametrize(
    "options", [GatewayOptions(host="127.0.0.1", port=0, udp_port=0, clock_sync_on_connect=False)]
)
async def test_udp_device_is_confirmed(gateway: Gateway) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", gateway.udp_port or 0))
    raw = Uitd(30).frame(2, [fire()], serial=5)
    await loop.sock_sendall(sock, raw)
    reply = parse_frame(await asyncio.wait_for(loop.sock_recv(sock, 2048), 5))
    assert reply.command == Command.CONFIRM and reply.serial == 5 and reply.destination == 30
    assert any(isinstance(e, FireAlarm) and e.device == "30" for e in sink_of(gateway).events)
    sock.close()


async def test_stop_drains_and_closes(options: GatewayOptions) -> None:
    gw = make_gateway(options)
    task = asyncio.create_task(serve(gw))
    await gw.ready.wait()
    dev = await Uitd(40).connect(gw.port or 0)
    await dev.exchange(dev.frame())
    gw.stop()
    await asyncio.wait_for(task, 10)
    with pytest.raises((ConnectionError, TimeoutError, OSError)):
        await dev.exchange(dev.frame(), timeout=1)


async def test_daily_clock_sync(options: GatewayOptions) -> None:
    from datetime import timedelta

    from firegate.devicetime import device_now

    # the time of day is the device time zone's, not the host's
    options.clock_sync_daily_at = (device_now() + timedelta(seconds=1.5)).time().replace(tzinfo=None)
    gw = make_gateway(options)
    task = asyncio.create_task(serve(gw))
    await gw.ready.wait()
    dev = await Uitd(50).connect(gw.port or 0)
    await dev.exchange(dev.frame())
    (sync,) = await dev.answer_commands(1, timeout=5)
    assert sync.command == Command.CONTROL and sync.data_unit is not None and sync.data_unit.type == 90
    await dev.close()
    gw.stop()
    await asyncio.wait_for(task, 10)


async def test_fire_alarm_overtakes_queued_status_frames(gateway: Gateway) -> None:
    sink_of(gateway).delay = 0.05
    dev = await Uitd(60).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    statuses = [dev.frame(1, [SystemStatus(1, 1, 0b1 | (i % 2) << 4, TimeTag.now())]) for i in range(10)]
    alarm = dev.frame(2, [fire(60)])
    await dev.send(b"".join([*statuses, alarm]))  # the UITD pipelines; the fire comes last
    order = [(await dev.next_frame(timeout=5)).serial for _ in range(11)]
    alarm_serial = parse_frame(alarm).serial
    assert order.index(alarm_serial) <= 1  # behind at most the frame already being stored
    await dev.close()


async def test_a_fire_overtakes_other_connections_queued_frames(options: GatewayOptions) -> None:
    """Fires go first across the whole process: 30 devices' status frames wait for a slow
    store, then a fire arrives on another connection and is stored in the very next batch."""
    sink = MemorySink()
    gw = make_gateway(options, sink, settings=IngestSettings(max_batch=5, max_in_flight=1))
    async with running(gw):
        devices = [await Uitd(7000 + i).connect(gw.port or 0) for i in range(31)]
        for dev in devices:
            await dev.exchange(dev.frame())  # online, so the next frames are status work
        sink.delay = 0.1
        for i, dev in enumerate(devices[:30]):
            await dev.send(dev.frame(1, [SystemStatus(1, 1, 0b1 | (i % 2) << 4, TimeTag.now())]))
        await asyncio.sleep(0.05)  # every status frame read and waiting in ingest
        stored_before = len(sink.events)
        await devices[30].send(devices[30].frame(2, [fire(70)]))
        assert (await devices[30].next_frame(timeout=5)).command == Command.CONFIRM
        # stored behind at most the batch already being stored when it came (5 reports)
        assert len([e for e in sink.events if e.kind == "status"]) - stored_before <= 5
        for dev in devices:
            await dev.close()


async def test_a_paused_connection_reads_again_once_its_queue_drains_without_stores() -> None:
    """Frames answered without a store (here rate-limited sheds) drain the queue as well: the
    connection reads again and the fire behind them is taken at once, not at the idle timeout."""
    sink = MemorySink()
    sink.delay = 0.2
    gw = make_gateway(quick_options(queue_limit=8, rate_limit=1, rate_burst=2), sink)
    async with running(gw):
        dev = await Uitd(19).connect(gw.port or 0)
        burst = [dev.frame(1, [SystemStatus(1, 1, 0b1 | (i % 2) << 4, TimeTag.now())]) for i in range(10)]
        await dev.send(b"".join(burst))  # fills the queue: reading pauses
        await asyncio.sleep(1.0)
        alarm = dev.frame(2, [fire(10)])
        await dev.send(alarm)
        serials = set()
        with contextlib.suppress(TimeoutError):
            while parse_frame(alarm).serial not in serials:
                serials.add((await dev.next_frame(timeout=3)).serial)
        assert parse_frame(alarm).serial in serials
        assert [e for e in sink.events if isinstance(e, FireAlarm)]
        await dev.close()


async def test_connected_devices_go_before_a_reconnect_storm(options: GatewayOptions) -> None:
    """A device's first frame on a new connection (its online event) waits behind the frames of
    devices already connected: a reconnect storm cannot starve them."""
    sink = MemorySink()
    gw = make_gateway(options, sink, settings=IngestSettings(max_batch=10, max_in_flight=1))
    async with running(gw):
        old = await Uitd(8000).connect(gw.port or 0)
        await old.exchange(old.frame())
        sink.delay = 0.05
        storm = [await Uitd(8100 + i).connect(gw.port or 0) for i in range(40)]
        for dev in storm:
            await dev.send(dev.frame())  # first words: link work, 4 batches of it
        await asyncio.sleep(0.05)
        await old.send(old.frame(1, [SystemStatus(1, 1, 0b10001, TimeTag.now())]))
        assert (await old.next_frame(timeout=5)).command == Command.CONFIRM
        online_first = sum(isinstance(e, DeviceOnline) and e.device != "8000" for e in sink.events)
        assert online_first <= 20  # the batch in flight and at most one more, not all 40
        for dev in [old, *storm]:
            await dev.close()


@pytest.mark.parametrize(
    "options",
    [
        quick_options(
            patrol_interval=0.3,
            confirm_timeout=1,
            retries=0,
        )
    ],
)
async def test_patrol_reads_status_and_publishes_what_it_finds(gateway: Gateway) -> None:
    dev = await Uitd(61).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    ask = await dev.next_frame(timeout=3)
    assert ask.command == Command.REQUEST and ask.data_unit is not None and ask.data_unit.type == 81
    await dev.reply(ask, 21, [UitdStatus(0b101, TimeTag.now())])
    for _ in range(50):
        if any(isinstance(e, FaultRaised) and e.device == "61" for e in sink_of(gateway).events):
            break
        await asyncio.sleep(0.05)
    raised = [e for e in sink_of(gateway).events if isinstance(e, FaultRaised)]
    assert raised and raised[0].condition == "fault" and raised[0].point.system_type is None
    await dev.close()


async def test_a_client_that_never_reads_is_dropped(gateway: Gateway) -> None:
    healthy = await Uitd(62).connect(gateway.port or 0)
    await healthy.exchange(healthy.frame())
    hog = socket.socket()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.connect(("127.0.0.1", gateway.port or 0))
    hog.setblocking(False)
    loop = asyncio.get_running_loop()
    beat = Uitd(63).frame()
    closed = False
    before = (
        REGISTRY.get_sample_value(
            "firegate_gateway_connections_closed_total", {"reason": "write_buffer_full"}
        )
        or 0.0
    )
    with pytest.raises(OSError):  # the gateway gives up on it: reset or broken pipe
        for _ in range(20_000):  # heartbeats whose confirms it never reads
            await asyncio.wait_for(loop.sock_sendall(hog, beat * 50), 5)
    closed = True
    assert closed
    after = REGISTRY.get_sample_value(
        "firegate_gateway_connections_closed_total", {"reason": "write_buffer_full"}
    )
    assert after == before + 1
    assert (await healthy.exchange(healthy.frame())).command == Command.CONFIRM
    hog.close()
    await healthy.close()


async def test_online_event_survives_a_failed_publish(gateway: Gateway) -> None:
    dev = await Uitd(70).connect(gateway.port or 0)
    sink_of(gateway).fail = True
    raw = dev.frame()
    await dev.send(raw)
    with pytest.raises(TimeoutError):
        await dev.next_frame(timeout=0.5)
    sink_of(gateway).fail = False
    assert (await dev.exchange(raw)).command == Command.CONFIRM  # the retransmission
    assert [type(e) for e in sink_of(gateway).events] == [DeviceOnline]
    await dev.close()


async def test_a_second_source_address_on_one_connection_is_refused(gateway: Gateway) -> None:
    dev = await Uitd(71).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    other = Uitd(72).frame(2, [fire(1)])
    reply = await dev.exchange(other)
    assert reply.command == Command.DENY and reply.destination == 72
    assert not [e for e in sink_of(gateway).events if isinstance(e, FireAlarm)]
    await dev.close()


@pytest.mark.parametrize("options", [quick_options(patrol_interval=0.3, confirm_timeout=1, retries=0)])
async def test_a_bad_patrol_reply_does_not_stop_the_gateway(gateway: Gateway) -> None:
    bad = await Uitd(73).connect(gateway.port or 0)
    await bad.exchange(bad.frame())
    ask = await bad.next_frame(timeout=3)
    await bad.send(
        build_frame(
            serial=ask.serial, command=Command.REPLY, source=73, destination=CENTER, data=bytes([21, 5, 1])
        )
    )  # five objects promised, one byte sent
    good = await Uitd(74).connect(gateway.port or 0)
    reply = await good.exchange(good.frame(2, [fire(3)]))
    while reply.command != Command.CONFIRM:  # a patrol request may come first
        await good.send(answer(reply, Command.DENY))
        reply = await good.next_frame()
    assert any(isinstance(e, FireAlarm) and e.device == "74" for e in sink_of(gateway).events)
    await bad.close()
    await good.close()
