"""What the gateway counts and logs, against the real gateway over loopback TCP: each test reads a
counter before and after, so it fails if the counting were removed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.bus.publisher import Publisher, PublisherSettings
from firegate.bus.sink import JetStreamSink
from firegate.bus.spool import Spool
from firegate.codecs.gb26875 import Command, ComponentStatus, FrameError, SystemStatus, TimeTag, build_frame
from firegate.devicetime import device_now
from firegate.gateway import metrics
from firegate.gateway.server import Gateway, GatewayOptions
from firegate.ingest.sink import MemorySink
from tests.gateway.client import CENTER, Uitd
from tests.gateway.conftest import quick_options
from tests.gateway.standalone import make_gateway, serve
from tests.natsserver import nats_client, running_nats_server, wait_until

SKEW = "firegate_gateway_device_clock_skew_seconds_count"
TO_BUS = "firegate_gateway_device_to_bus_seconds_count"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def fire(i: int = 1) -> ComponentStatus:
    return ComponentStatus.make(1, 1, 42, i, 0b11, "1F大厅感烟", TimeTag.now())


def sink_of(gw: Gateway) -> MemorySink:
    assert isinstance(gw.ingest.sink, MemorySink)
    return gw.ingest.sink


def records_of(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


def test_every_codec_error_reason_is_declared() -> None:
    """A FrameError subclass the codec adds without a declared reason would count as `frame`."""
    todo, reasons = [FrameError], set()
    while todo:
        cls = todo.pop()
        reasons.add(cls.reason)
        todo.extend(cls.__subclasses__())
    assert reasons <= set(metrics.DECODE_REASONS)
    assert reasons - {"data_unit"} <= set(metrics.DENY_REASONS)  # a data unit error is confirmed


async def test_confirms_are_counted(gateway: Gateway) -> None:
    before = sample("firegate_gateway_replies_sent_total", command="confirm")
    frames = sample("firegate_gateway_frames_received_total", protocol="tcp", command="send_data")
    dev = await Uitd(300).connect(gateway.port or 0)
    for _ in range(3):
        assert (await dev.exchange(dev.frame())).command == Command.CONFIRM
    assert sample("firegate_gateway_replies_sent_total", command="confirm") == before + 3
    assert sample("firegate_gateway_frames_received_total", protocol="tcp", command="send_data") == frames + 3
    await dev.close()


async def test_a_resent_frame_counts_one_retransmission_and_no_clock_sample(gateway: Gateway) -> None:
    dev = await Uitd(301).connect(gateway.port or 0)
    raw = dev.frame(2, [fire()])
    retrans, skew, to_bus = sample("firegate_gateway_retransmissions_total"), sample(SKEW), sample(TO_BUS)
    assert (await dev.exchange(raw)).command == Command.CONFIRM
    assert sample(SKEW) == skew + 1 and sample(TO_BUS) == to_bus + 1  # the alarm; online is not timed
    assert (await dev.exchange(raw)).command == Command.CONFIRM  # its confirm was lost: resent
    assert sample("firegate_gateway_retransmissions_total") == retrans + 1
    assert sample(SKEW) == skew + 1 and sample(TO_BUS) == to_bus + 1  # its old time tags: not observed
    await dev.close()


async def test_a_frame_stored_only_when_resent_counts_its_wait_but_not_its_skew(gateway: Gateway) -> None:
    dev = await Uitd(302).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    shed = sample("firegate_gateway_frames_shed_total", reason="publish_failed")
    raw = dev.frame(2, [fire()])
    sink_of(gateway).fail = True
    await dev.send(raw)
    with pytest.raises(TimeoutError):
        await dev.next_frame(timeout=0.5)
    assert sample("firegate_gateway_frames_shed_total", reason="publish_failed") == shed + 1
    sink_of(gateway).fail = False
    skew, to_bus = sample(SKEW), sample(TO_BUS)
    assert (await dev.exchange(raw)).command == Command.CONFIRM  # the UITD's retransmission
    # its header time is from the first sending; its alarm reached the bus only now, late
    assert sample(SKEW) == skew and sample(TO_BUS) == to_bus + 1
    await dev.close()


async def test_bad_checksum_counts_a_decode_error_and_a_deny(gateway: Gateway) -> None:
    errors = sample("firegate_gateway_decode_errors_total", reason="checksum")
    denies = sample("firegate_gateway_denies_total", reason="checksum")
    replies = sample("firegate_gateway_replies_sent_total", command="deny")
    dev = await Uitd(303).connect(gateway.port or 0)
    bad = bytearray(dev.frame(serial=41))
    bad[-3] ^= 0x5A
    assert (await dev.exchange(bytes(bad))).command == Command.DENY
    assert sample("firegate_gateway_decode_errors_total", reason="checksum") == errors + 1
    assert sample("firegate_gateway_denies_total", reason="checksum") == denies + 1
    assert sample("firegate_gateway_replies_sent_total", command="deny") == replies + 1
    await dev.close()


async def test_denies_are_counted_by_reason(gateway: Gateway) -> None:
    direction = sample("firegate_gateway_denies_total", reason="direction")
    changed = sample("firegate_gateway_denies_total", reason="source_changed")
    dev = await Uitd(304).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    control = build_frame(serial=7, command=Command.CONTROL, source=304, destination=CENTER)
    assert (await dev.exchange(control)).command == Command.DENY  # a control goes center -> UITD
    assert sample("firegate_gateway_denies_total", reason="direction") == direction + 1
    assert (await dev.exchange(Uitd(305).frame())).command == Command.DENY  # another source address
    assert sample("firegate_gateway_denies_total", reason="source_changed") == changed + 1
    await dev.close()


async def test_clock_skew_warns_once_per_session_with_the_device(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "firegate.gateway")
    skew = sample(SKEW)
    dev = await Uitd(306).connect(gateway.port or 0)
    # a minute behind on the device time zone's clock (the center's "now"), whatever the host's zone
    late = device_now().replace(microsecond=0, tzinfo=None) - timedelta(seconds=60)
    for serial in (1, 2):
        raw = build_frame(serial=serial, command=2, source=306, destination=CENTER, time=late)
        assert (await dev.exchange(raw)).command == Command.CONFIRM
    assert sample(SKEW) == skew + 2
    (warning,) = records_of(caplog, "clock")
    assert warning.levelno == logging.WARNING
    assert warning.__dict__["device"] == "306" and warning.__dict__["serial"] == 1
    assert -65 < warning.__dict__["clock_skew_s"] < -55
    await dev.close()


async def test_a_clock_within_5_s_does_not_warn(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "firegate.gateway")
    dev = await Uitd(307).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    assert not records_of(caplog, "clock")
    await dev.close()


async def test_a_loaded_center_does_not_make_a_device_clock_wrong(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """Skew is taken when the frame arrives: frames that wait 6 s for a slow store (a storm) are
    not reported as clocks 6 s behind."""
    caplog.set_level(logging.INFO, "firegate.gateway")
    dev = await Uitd(311).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    late = sample("firegate_gateway_device_clock_skew_seconds_bucket", le="-5.0")
    sink_of(gateway).delay = 3.0
    frames = [dev.frame(1, [SystemStatus(1, 1, 0b1 | (i % 2) << 4, TimeTag.now())]) for i in range(2)]
    await dev.send(b"".join(frames))  # the second waits behind the first: 6 s in all
    for _ in frames:
        assert (await dev.next_frame(timeout=10)).command == Command.CONFIRM
    assert sample("firegate_gateway_device_clock_skew_seconds_bucket", le="-5.0") == late
    assert not records_of(caplog, "clock")
    await dev.close()


async def test_log_lines_carry_device_and_serial(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "firegate.gateway")
    dev = await Uitd(308).connect(gateway.port or 0)
    await dev.exchange(dev.frame())
    bad = bytearray(dev.frame(serial=77))
    bad[-3] ^= 0x5A
    await dev.exchange(bytes(bad))
    (line,) = records_of(caplog, "bad frame")
    assert line.__dict__["device"] == "308" and line.__dict__["serial"] == 77
    assert line.__dict__["reason"] == "checksum"

    sink_of(gateway).fail = True
    await dev.send(dev.frame(2, [fire()], serial=78))
    with pytest.raises(TimeoutError):
        await dev.next_frame(timeout=0.5)
    sink_of(gateway).fail = False
    (line,) = records_of(caplog, "not confirming")
    assert line.__dict__["device"] == "308" and line.__dict__["serial"] == 78

    async def broken(*args: object) -> None:
        raise RuntimeError("a bad point")

    normalize = sample("firegate_gateway_decode_errors_total", reason="normalize")
    monkeypatch.setattr(gateway.ingest.normalizer, "normalize", broken)
    assert (await dev.exchange(dev.frame(2, [fire(2)], serial=79))).command == Command.CONFIRM
    assert sample("firegate_gateway_decode_errors_total", reason="normalize") == normalize + 1
    (line,) = records_of(caplog, "normalizing failed")
    assert line.__dict__["device"] == "308" and line.__dict__["serial"] == 79

    await dev.close()


@pytest.mark.parametrize("options", [quick_options(known_devices={"309": []}, registry_policy="reject")])
async def test_a_refused_device_is_named_in_the_close_line(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "firegate.gateway")
    closed = sample("firegate_gateway_connections_closed_total", reason="unknown_device")
    dev = await Uitd(310).connect(gateway.port or 0)
    with pytest.raises((ConnectionError, TimeoutError)):
        await dev.exchange(dev.frame(), timeout=2)
    assert sample("firegate_gateway_connections_closed_total", reason="unknown_device") == closed + 1
    (line,) = records_of(caplog, "unknown_device")
    assert line.__dict__["device"] == "310" and line.__dict__["peer"].startswith("127.0.0.1:")
    await dev.close()


# ---- the spool, through the bus's JetStream sink --------------------------------------------------

FAST = PublisherSettings(
    retry_for=0.3, ack_timeout=0.1, backoff_initial=0.02, backoff_max=0.1, replay_poll=0.05
)


@pytest.fixture
async def spooling_gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Spool, Publisher, NATS]]:
    """A gateway on a nats-server that has no stream FIRE yet: every publish ends in the spool."""
    async with (
        running_nats_server(tmp_path / "nats") as server,
        nats_client(server.url) as nc,
        Spool(tmp_path / "spool") as spool,
        Publisher(nc, spool, FAST) as publisher,
    ):
        gw = make_gateway(
            GatewayOptions(host="127.0.0.1", port=0, clock_sync_on_connect=False), JetStreamSink(publisher)
        )
        task = asyncio.create_task(serve(gw))
        await asyncio.wait_for(gw.ready.wait(), 5)
        try:
            yield gw, spool, publisher, nc
        finally:
            gw.stop()
            await asyncio.wait_for(task, 10)


async def test_spool_depth_follows_a_fire_alarm_through_an_outage(
    spooling_gateway: tuple[Gateway, Spool, Publisher, NATS],
) -> None:
    gw, spool, publisher, nc = spooling_gateway
    depth = {"priority": "fire"}
    assert sample("firegate_spool_depth_records", **depth) == 0
    dev = await Uitd(311).connect(gw.port or 0)
    assert (await dev.exchange(dev.frame(2, [fire()]))).command == Command.CONFIRM  # spooled, fsync'd
    assert sample("firegate_spool_depth_records", **depth) == 2  # the alarm and the device online
    assert sample("firegate_spool_depth_bytes", **depth) > 0
    await ensure_stream(nc.jetstream(timeout=5), StreamSettings())  # JetStream is back
    replayer = asyncio.create_task(publisher.run_replayer())
    try:
        await wait_until(lambda: spool.pending_records == 0, 10)
    finally:
        replayer.cancel()
    assert sample("firegate_spool_depth_records", **depth) == 0
    await dev.close()
