"""Connection, stream and KV set-up, and the ack multiplexer, against a real server."""

from __future__ import annotations

import socket
import time

import pytest
from nats.aio.client import Client as NATS
from nats.js.client import JetStreamContext
from prometheus_client import REGISTRY

from firegate.bus.errors import NatsConnectError, PublishError, StreamConfigError
from firegate.bus.jetstream import AckMux, StreamSettings, connect, ensure_kv, ensure_stream, split_urls
from firegate.bus.server import EmbeddedNatsServer
from tests.natsserver import wait_until


async def test_ensure_stream_creates_then_updates(nc: NATS) -> None:
    js = nc.jetstream(timeout=5)
    info = await ensure_stream(js, StreamSettings())
    assert info.config.subjects == ["fire.>"]
    assert info.config.duplicate_window == pytest.approx(120)
    assert info.config.max_age == pytest.approx(400 * 86400)
    assert info.config.num_replicas == 1
    again = await ensure_stream(js, StreamSettings())  # unchanged: no update
    assert again.config.max_age == info.config.max_age
    changed = await ensure_stream(
        js, StreamSettings(duplicate_window=300, max_age=30 * 86400, max_bytes=64 * 1024**2)
    )
    assert changed.config.duplicate_window == pytest.approx(300)
    assert changed.config.max_age == pytest.approx(30 * 86400)
    assert changed.config.max_bytes == 64 * 1024**2
    reread = await js.stream_info("FIRE")
    assert reread.config.duplicate_window == pytest.approx(300)


async def test_replicas_beyond_a_single_server_is_a_typed_error(js: JetStreamContext) -> None:
    with pytest.raises(StreamConfigError) as e:
        await ensure_stream(js, StreamSettings(num_replicas=3))
    assert e.value.stream == "FIRE" and "num_replicas" in str(e.value)


def test_stream_settings_are_validated() -> None:
    with pytest.raises(StreamConfigError):
        StreamSettings(duplicate_window=0)
    with pytest.raises(StreamConfigError):
        StreamSettings(max_age=60, duplicate_window=120)
    with pytest.raises(ValueError):  # StreamConfigError is a ValueError too
        StreamSettings(num_replicas=0)


async def test_ensure_kv_creates_and_updates_history(nc: NATS) -> None:
    js = nc.jetstream(timeout=5)
    kv = await ensure_kv(js, "sessions", history=1)
    await kv.put("dev1", b"gw-a")
    kv = await ensure_kv(js, "sessions", history=5)
    assert (await js.stream_info("KV_sessions")).config.max_msgs_per_subject == 5
    assert (await kv.get("dev1")).value == b"gw-a"


async def test_duplicate_msg_id_is_stored_once(js: JetStreamContext, nc: NATS) -> None:
    mux = AckMux(nc)
    await mux.start()
    try:
        first = await (await mux.send("fire.alarm.7", b"a", "same-id", 2.0))
        second = await (await mux.send("fire.alarm.7", b"a", "same-id", 2.0))
    finally:
        await mux.close()
    assert not first.duplicate and second.duplicate and second.seq == first.seq
    assert (await js.stream_info("FIRE")).state.messages == 1


async def test_no_stream_means_no_responders_fast(nc: NATS) -> None:
    mux = AckMux(nc)
    await mux.start()
    try:
        t = time.monotonic()
        with pytest.raises(PublishError) as e:
            await (await mux.send("nostream.x", b"a", "id-1", 5.0))
        assert e.value.reason == "no_responders" and e.value.retryable
        assert time.monotonic() - t < 2.0
        assert mux.pending == 0
    finally:
        await mux.close()


async def test_ack_wait_is_bounded_when_nobody_answers(nc: NATS, js: JetStreamContext) -> None:
    # A plain subscriber takes the message (so no "no responders") and never replies.
    mux = AckMux(nc)
    await mux.start()
    sub = await nc.subscribe("fire.silent.>")  # not a JetStream reply: the ack never comes
    await js.delete_stream("FIRE")
    try:
        with pytest.raises(PublishError) as e:
            await (await mux.send("fire.silent.1", b"a", "id-1", 0.2))
        assert e.value.reason == "timeout"
    finally:
        await sub.unsubscribe()
        await mux.close()


async def test_connect_gives_up_within_its_timeout() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.monotonic()
    with pytest.raises(NatsConnectError) as e:
        await connect([f"nats://127.0.0.1:{port}"], "t", connect_timeout=0.5)
    assert time.monotonic() - t < 3.0
    assert e.value.urls == [f"nats://127.0.0.1:{port}"]


async def test_connected_gauge_follows_the_connection(nats_server: EmbeddedNatsServer) -> None:
    def gauge() -> float | None:
        return REGISTRY.get_sample_value("firegate_nats_connected")

    nc = await connect(nats_server.url, "t", reconnect_time_wait=0.1)
    try:
        assert gauge() == 1
        nats_server.kill()
        await wait_until(lambda: gauge() == 0, 5)
        await nats_server.start()
        await wait_until(lambda: gauge() == 1 and nc.is_connected, 5)
    finally:
        await nc.close()
    assert gauge() == 0


def test_split_urls() -> None:
    assert split_urls("nats://a:1, nats://b:2") == ["nats://a:1", "nats://b:2"]
    assert split_urls(["nats://a:1", "nats://b:2,nats://c:3"]) == ["nats://a:1", "nats://b:2", "nats://c:3"]
