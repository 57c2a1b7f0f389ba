"""/readyz of `firegate run`: each check of app.py fails when its condition breaks, and the
operator guide names every check the code registers."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace

from firegate.app import _Readiness
from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.bus.publisher import Publisher, PublisherSettings
from firegate.bus.spool import Record, Spool, encode_record
from tests.gateway.conftest import quick_options
from tests.gateway.standalone import make_gateway, serve
from tests.natsserver import nats_client, running_nats_server, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_nats_check_follows_the_connection() -> None:
    up = _Readiness()
    assert up.nats() == (False, "starting")
    nc = SimpleNamespace(is_connected=True)
    up.attach_nats(nc)  # type: ignore[arg-type]
    assert up.nats() == (True, "connected")
    nc.is_connected = False  # a reconnect in progress, or closed
    assert up.nats() == (False, "down")
    nc.is_connected = True
    assert up.nats() == (True, "connected")


async def test_listener_check_bound_only_while_serving(tmp_path: Path) -> None:
    up = _Readiness()
    assert up.listener() == (False, "starting")
    gateway = make_gateway(quick_options())
    async with Spool(tmp_path / "spool", max_bytes=1000) as spool:
        up.attach_gateway(gateway, spool, 1000)
        assert up.listener() == (False, "starting")  # attached before serve() binds
        task = asyncio.create_task(serve(gateway))
        try:
            await asyncio.wait_for(gateway.ready.wait(), 5)
            assert up.listener() == (True, "bound")
            gateway.stop()
            assert up.listener() == (False, "draining")
        finally:
            gateway.stop()
            await asyncio.wait_for(task, 10)
        assert up.listener() == (False, "draining")  # stopped for good


def record(n: int, size: int = 200, fire: bool = False) -> Record:
    return Record(f"fire.status.{n}", f"id-{n}", b"x" * size, fire)


async def test_spool_check_fails_before_the_spool_refuses_frames(tmp_path: Path) -> None:
    limit = 10_000
    up = _Readiness()
    assert up.spool() == (False, "starting")
    async with Spool(tmp_path / "spool", max_bytes=limit) as spool:
        up.attach_gateway(make_gateway(quick_options()), spool, limit)
        assert up.spool() == (True, f"0 of {limit} bytes pending")
        n = 0
        while up.spool()[0]:
            assert n < 100, "the spool check never failed"
            await spool.append(record(n))  # never refused while still ready
            n += 1
        ok, detail = up.spool()
        assert not ok and detail.startswith("nearly full: ")
        assert f"{spool.pending_bytes} of {limit} bytes pending" in detail
        assert spool.pending_bytes >= 0.9 * limit
        assert spool.pending_bytes + len(record(n).payload) < limit  # not full yet: still takes frames
        await spool.append(record(n))
        await spool.append(record(n + 1, size=5000, fire=True))  # fire records go past the limit
        assert spool.pending_bytes > limit and not up.spool()[0]
        # replayed: ready again
        while (batch := await spool.read_batch()) is not None:
            await spool.commit(batch)
        assert up.spool() == (True, f"0 of {limit} bytes pending")


def sized(n: int, total: int) -> Record:
    """A non-fire record that takes exactly ``total`` bytes in the spool."""
    return record(n, total - len(encode_record(record(n, 0))))


async def test_spool_check_threshold_is_90_percent_of_the_limit(tmp_path: Path) -> None:
    async with Spool(tmp_path / "spool", max_bytes=100_000) as spool:
        up = _Readiness()
        up.attach_gateway(make_gateway(quick_options()), spool, 100_000)
        await spool.append(sized(0, 89_999))
        assert spool.pending_bytes == 89_999
        assert up.spool() == (True, "89999 of 100000 bytes pending")
        await spool.append(sized(1, 100))
        assert up.spool() == (False, "nearly full: 90099 of 100000 bytes pending")


async def test_store_check_fails_while_spooling_and_passes_once_jetstream_stores(tmp_path: Path) -> None:
    """A stream without a leader, or NATS away: events go to the spool, and /readyz says so
    until JetStream stores again (the replayer's first ack is enough)."""
    up = _Readiness()
    assert up.store() == (False, "starting")
    fast = PublisherSettings(retry_for=0.3, ack_timeout=0.1, backoff_initial=0.02, replay_poll=0.05)
    async with (
        running_nats_server(tmp_path / "nats") as server,
        nats_client(server.url) as nc,
        Spool(tmp_path / "spool") as spool,
        Publisher(nc, spool, fast) as pub,
    ):
        await ensure_stream(nc.jetstream(timeout=5.0), StreamSettings())
        up.attach_gateway(make_gateway(quick_options()), spool, 1_000_000, pub)
        assert up.store() == (True, "storing")
        await pub.publish_many([record(1)])
        assert up.store() == (True, "storing")
        server.kill()
        await wait_until(lambda: not nc.is_connected, 5)
        await pub.publish_many([record(2)])  # spooled
        ok, detail = up.store()
        assert not ok and detail.startswith("spooling: ")
        await server.start()
        async with asyncio.TaskGroup() as tg:
            replayer = tg.create_task(pub.run_replayer())
            await wait_until(lambda: up.store()[0], 10)
            replayer.cancel()
        assert up.store() == (True, "storing")


# -- the operator guide ------------------------------------------------------------------

CHECKS = {
    "nats",
    "site_registry",
    "gb26875_listener",
    "spool",
    "store",
    "alarm_lifecycle",
    "fault_tracker",
    "forwarders",
}


def health_section() -> str:
    text = (ROOT / "docs" / "operator-guide.md").read_text(encoding="utf-8")
    start = text.index("\n## Health and metrics\n")
    return text[start : text.index("\n## ", start + 1)]


def documented_checks() -> set[str]:
    """The readiness checks the operator guide lists (`- `name` ...` under /readyz)."""
    return set(re.findall(r"^\s+- `([a-z0-9_]+)`[: ]", health_section(), re.M))


def test_operator_guide_names_every_readiness_check() -> None:
    # tests/integration/test_ops_process.py checks that `firegate run` registers exactly these
    assert documented_checks() == CHECKS
    source = (ROOT / "firegate" / "app.py").read_text(encoding="utf-8")
    for name in CHECKS:
        assert f'"{name}"' in source, f"app.py registers no check {name!r}: update the guide"
    section = health_section()
    assert "`draining`" in section  # the listener check during a SIGTERM drain
    assert "90 %" in section  # the spool check fails before the spool is full
