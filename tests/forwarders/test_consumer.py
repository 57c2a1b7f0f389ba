"""Durable consumers: a new one starts at its window, an existing one takes changed settings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.forwarders.consumer import subscribe
from tests.natsserver import nats_client, running_nats_server


async def test_an_existing_consumer_takes_changed_settings_and_keeps_its_position(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_nats_server(tmp_path / "nats") as server, nats_client(server.url) as nc:
        js = nc.jetstream(timeout=5.0)
        await ensure_stream(js, StreamSettings())
        await js.publish("fire.fault.1", b"{}", headers={"Nats-Msg-Id": "a"})
        with caplog.at_level(logging.INFO, "firegate.forwarders.consumer"):
            sub = await subscribe(js, "FIRE", "fwd-x", ["fire.fault.>"], start_window=60, ack_wait=30)
        # ops see why events from before the start are delivered now
        assert [r.getMessage().split(" from ")[0] for r in caplog.records] == [
            "consumer fwd-x created: it takes fire.fault.>"
        ]
        caplog.clear()
        (msg,) = await sub.fetch(1, timeout=2)
        await msg.ack_sync()
        await sub.unsubscribe()
        sub = await subscribe(
            js,
            "FIRE",
            "fwd-x",
            ["fire.fault.>", "fire.device.>"],
            start_window=60,
            ack_wait=5,
            max_ack_pending=10,
        )
        assert "created" not in caplog.text
        info = await js.consumer_info("FIRE", "fwd-x")
        assert (info.config.ack_wait, info.config.max_ack_pending) == (5, 10)
        assert sorted(info.config.filter_subjects or []) == ["fire.device.>", "fire.fault.>"]
        assert info.num_pending == 0 and info.delivered.stream_seq == 1  # its position is kept
        await js.publish("fire.device.1", b"{}", headers={"Nats-Msg-Id": "b"})
        (msg,) = await sub.fetch(1, timeout=2)
        assert msg.subject == "fire.device.1"
