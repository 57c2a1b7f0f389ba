"""SIGKILL of `firegate run`'s whole process group (the gateway and its embedded nats-server)
in the middle of group commits: every frame a device saw confirmed has its events in stream
FIRE afterwards, each exactly once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

from firegate.codecs.gb26875 import ComponentStatus, Frame, Framer, TimeTag, build_frame, encode_data_unit
from tests.integration.process import Firegate
from tests.natsserver import nats_client, wait_until

DEVICES = 150


async def device(port: int, address: int, confirmed: list[tuple[str, int]], stop: asyncio.Event) -> None:
    """Sends fire alarms and faults, each on a new point, one outstanding, until the line dies."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except OSError:
        return
    framer = Framer()
    serial = 0
    try:
        while not stop.is_set():
            point = 1000 + serial
            status = 0b11 if serial % 2 else 0b101  # a fire, then a fault
            obj = ComponentStatus.make(1, 1, 42, point, status, "3F", TimeTag.now())
            data = encode_data_unit(2, [obj])
            writer.write(build_frame(serial=serial, command=2, source=address, destination=0, data=data))
            got = False
            while not got:
                chunk = await asyncio.wait_for(reader.read(4096), 10)
                if not chunk:
                    return
                got = any(isinstance(f, Frame) and f.serial == serial for f in framer.feed(chunk))
            confirmed.append((str(address), point))
            serial += 1
    except (OSError, TimeoutError):
        return
    finally:
        writer.close()


async def stored_events(url: str) -> list[tuple[str, dict[str, object]]]:
    """Every (msg id, event) in FIRE, in stream order."""
    async with nats_client(url) as nc:
        js = nc.jetstream(timeout=5.0)
        info = await js.stream_info("FIRE")
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg("FIRE", seq)
            assert msg.headers is not None and msg.data is not None
            out.append((msg.headers["Nats-Msg-Id"], json.loads(msg.data)))
        return out


async def test_every_confirmed_event_survives_a_kill_mid_batch_exactly_once(tmp_path: Path) -> None:
    fg = Firegate(tmp_path)
    try:
        fg.start()
        confirmed: list[tuple[str, int]] = []
        stop = asyncio.Event()
        tasks = [asyncio.create_task(device(fg.gb, 700_000 + i, confirmed, stop)) for i in range(DEVICES)]
        await wait_until(lambda: len(confirmed) >= 3000, within=30)
        fg.kill_all()  # SIGKILL to the process group, batches in flight
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert len(confirmed) >= 1000, "too little load before the kill to mean anything"

        fg.start()  # the same data directory: nats-server recovers its store
        events = await stored_events(f"nats://127.0.0.1:{fg.nats}")
    finally:
        fg.kill_all()
    ids = Counter(msg_id for msg_id, _ in events)
    assert [i for i, n in ids.items() if n > 1] == []  # nothing stored twice
    points = {
        (str(e["device"]), int(e["point"]["component_address"]))  # type: ignore[index, call-overload]
        for _, e in events
        if e["type"] in ("fire_alarm", "fault_raised")
    }
    missing = [c for c in confirmed if c not in points]
    assert missing == [], f"{len(missing)} confirmed frames lost, e.g. {missing[:5]}"
