"""What ops see of `firegate run` as a process: /readyz checks that really fail (NATS lost, spool
nearly full, draining), JSON logs at the configured level, signals, and bad configurations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from firegate.bus.server import EmbeddedNatsServer
from firegate.codecs.gb26875 import AnalogValue, Command, TimeTag
from tests.gateway.client import Uitd
from tests.integration.process import FIREGATE, Firegate, clean_env, port_open
from tests.integration.test_run_process import nats_servers_under
from tests.natsserver import running_nats_server, wait_until
from tests.ops.test_readiness import documented_checks
from tests.ports import free_port

Body = dict[str, Any]


def readyz(fg: Firegate) -> tuple[int, Body]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{fg.http}/readyz", timeout=5) as r:
            return int(r.status), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def wait_readyz(
    fg: Firegate,
    wanted: Callable[[int, Body], bool],
    within: float,
    nats: EmbeddedNatsServer | None = None,
) -> Body:
    """Poll /readyz until ``wanted(status, body)``; fail with the last answer after ``within`` s
    (and the logs that say why)."""
    deadline = time.monotonic() + within
    status, body = 0, {}
    while time.monotonic() < deadline:
        assert fg.proc is not None and fg.proc.poll() is None, fg.log.read_text()[-2000:]
        status, body = await asyncio.to_thread(readyz, fg)
        if wanted(status, body):
            return body
        await asyncio.sleep(0.1)
    why = fg.log.read_text()[-1500:]
    if nats is not None:
        why += f"\nnats-server running={nats.running}:\n{nats.log_tail(10)}"
    raise AssertionError(f"/readyz not as wanted within {within} s; last {status} {body}\n{why}")


def failing(name: str) -> Callable[[int, Body], bool]:
    return lambda status, body: status == 503 and name in body["failing"]


def ready(status: int, body: Body) -> bool:
    return status == 200


async def stop(fg: Firegate, sig: int = signal.SIGTERM) -> int:
    assert fg.proc is not None
    fg.signal(sig)
    return await asyncio.to_thread(fg.proc.wait, 30)


@contextlib.asynccontextmanager
async def firegate_on(tmp_path: Path, **env: str) -> AsyncIterator[tuple[Firegate, EmbeddedNatsServer]]:
    """firegate (all roles) against a private external nats-server that the test can kill."""
    async with running_nats_server(tmp_path / "nats") as server:
        fg = Firegate(tmp_path)
        fg.env.update(
            FIREGATE_NATS__URL=server.url,
            FIREGATE_BUS__MAX_BYTES="256M",  # the stream must fit the test server's 1 GB store
            FIREGATE_DATA_DIR=str(tmp_path / "data"),
            **env,
        )
        try:
            await asyncio.to_thread(fg.start)
            yield fg, server
        finally:
            fg.kill_all()


async def crash(server: EmbeddedNatsServer) -> None:
    """SIGKILL the nats-server and wait until it is gone: a start() while the killed process is
    not yet reaped would see it "running" and start nothing."""
    server.kill()
    await wait_until(lambda: not server.running, within=10)


def counter(metrics: str, name: str) -> float:
    """The sum of a metric's samples over its labels."""
    return sum(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith(name + "{"))


def analog(dev: Uitd, n: int) -> bytes:
    """A frame without a fire alarm: one analog value, a new event (and spool record) each time."""
    return dev.frame(3, [AnalogValue(1, 1, 42, n, 3, n, TimeTag.now())])


# -- /readyz ------------------------------------------------------------------------------------


async def test_readyz_names_nats_while_it_is_down_and_recovers(tmp_path: Path) -> None:
    # a 119 URL (nothing listens there; no fire is sent) gives the forwarders a consumer to open
    url = f"http://127.0.0.1:{free_port()}/fires"
    async with firegate_on(tmp_path, FIREGATE_DISPATCH119__URL=url) as (fg, server):
        body = await wait_readyz(fg, ready, 20)  # every role's check, consumers included
        assert set(body["checks"]) == documented_checks(), "docs/operator-guide.md lists other checks"
        assert body["checks"]["forwarders"] == {"ok": True, "detail": "1/1 consumers open"}
        await crash(server)
        body = await wait_readyz(fg, failing("nats"), 15)
        assert body["checks"]["nats"] == {"ok": False, "detail": "down"}
        assert body["checks"]["gb26875_listener"]["ok"]  # the gateway still takes frames (spool)
        await server.start()  # same port, same data
        body = await wait_readyz(fg, ready, 30, server)
        assert body["checks"]["nats"] == {"ok": True, "detail": "connected"}


async def test_readyz_fails_on_the_spool_before_frames_are_refused(tmp_path: Path) -> None:
    limit = 32 * 1024  # about 35 analog events: the 90 % mark comes a few frames before the limit
    async with firegate_on(
        tmp_path, FIREGATE_BUS__SPOOL_MAX_BYTES=str(limit), FIREGATE_BUS__PUBLISH_RETRY="0.1"
    ) as (fg, server):
        await crash(server)
        await wait_readyz(fg, failing("nats"), 15)
        _, body = await asyncio.to_thread(readyz, fg)
        assert body["checks"]["spool"] == {"ok": True, "detail": f"0 of {limit} bytes pending"}
        dev = await Uitd(74565).connect(fg.gb)
        spool_failed_after = None
        refused_at = None
        for n in range(60):  # bounded: the limit is reached long before
            try:
                reply = await dev.exchange(analog(dev, n), timeout=3)
            except TimeoutError:
                refused_at = n  # not confirmed: the spool is full, the device would retransmit
                break
            assert reply.command == Command.CONFIRM
            _, body = await asyncio.to_thread(readyz, fg)
            if not body["checks"]["spool"]["ok"] and spool_failed_after is None:
                spool_failed_after = n
                assert body["checks"]["spool"]["detail"].startswith("nearly full: ")
                assert "spool" in body["failing"]
            await asyncio.sleep(0.06)  # below the per-device rate limit
        await dev.close()
        assert refused_at is not None, "the spool never filled"
        assert spool_failed_after is not None and spool_failed_after < refused_at, (
            f"the spool check failed only after frame {spool_failed_after}, frames refused from {refused_at}"
        )
        assert counter(await asyncio.to_thread(fg.metrics), "firegate_spool_refused_total") >= 1
        await server.start()  # NATS back: the spool replays and every check passes again
        body = await wait_readyz(fg, ready, 30, server)
        assert body["checks"]["spool"] == {"ok": True, "detail": f"0 of {limit} bytes pending"}


async def test_readyz_says_draining_while_sigterm_drains_a_device(tmp_path: Path) -> None:
    # NATS down and a 4 s publish retry keep a device's frame in flight for a while after SIGTERM
    async with firegate_on(tmp_path, FIREGATE_BUS__PUBLISH_RETRY="4") as (fg, server):
        dev = await Uitd(74565).connect(fg.gb)
        assert (await dev.exchange(dev.frame())).command == Command.CONFIRM
        await crash(server)
        await wait_readyz(fg, failing("nats"), 15)
        await dev.send(analog(dev, 1))
        deadline = time.monotonic() + 3
        while counter(await asyncio.to_thread(fg.metrics), "firegate_publish_retries_total") == 0:
            assert time.monotonic() < deadline, "the frame's events never waited for NATS"
            await asyncio.sleep(0.05)  # until the gateway has read the frame and its publish waits
        fg.signal(signal.SIGTERM)
        body = await wait_readyz(fg, failing("gb26875_listener"), 3)
        assert body["checks"]["gb26875_listener"] == {"ok": False, "detail": "draining"}
        reply = await dev.next_frame(timeout=10)  # the drain finishes the frame: spooled, confirmed
        assert reply.command == Command.CONFIRM
        await dev.close()
        assert fg.proc is not None
        assert await asyncio.to_thread(fg.proc.wait, 30) == 0


# -- logs ---------------------------------------------------------------------------------------


def log_lines(fg: Firegate) -> list[Body]:
    """Every line firegate wrote (stdout and stderr), each of which must be one JSON object."""
    out = []
    for line in fg.log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), line
        out.append(entry)
    return out


async def test_heartbeats_log_nothing_and_every_line_is_json(firegate: Firegate) -> None:
    assert firegate.env["FIREGATE_LOG__LEVEL"] == "INFO"
    await asyncio.to_thread(firegate.start)
    dev = await Uitd(74565).connect(firegate.gb)
    assert (await dev.exchange(dev.frame())).command == Command.CONFIRM  # online: may log
    await asyncio.sleep(0.5)
    before = len(log_lines(firegate))
    for _ in range(30):
        assert (await dev.exchange(dev.frame())).command == Command.CONFIRM
    await asyncio.sleep(0.5)
    after = log_lines(firegate)
    assert after[before:] == [], "heartbeats must not log at INFO"
    await dev.close()
    assert await stop(firegate) == 0
    lines = log_lines(firegate)
    messages = [e["msg"] for e in lines if e["level"] == "INFO"]
    assert any(m.startswith("roles: ") for m in messages)
    assert any(m.startswith("gateway listening on ") for m in messages)


async def test_log_level_from_the_environment(firegate: Firegate) -> None:
    firegate.env["FIREGATE_LOG__LEVEL"] = "WARNING"
    await asyncio.to_thread(firegate.start)
    assert await stop(firegate) == 0
    lines = log_lines(firegate)
    assert lines, "a WARNING is expected: dispatch119.url is not set"
    assert {e["level"] for e in lines} <= {"WARNING", "ERROR", "CRITICAL"}


async def test_sigint_stops_cleanly_and_the_files_log_level_is_obeyed(tmp_path: Path) -> None:
    config = tmp_path / "firegate.yaml"
    config.write_text("log:\n  level: warning\n", encoding="utf-8")
    fg = Firegate(tmp_path, "--config", str(config))
    del fg.env["FIREGATE_LOG__LEVEL"]  # the file decides
    try:
        await asyncio.to_thread(fg.start)
        assert nats_servers_under(tmp_path)
        assert await stop(fg, signal.SIGINT) == 0
        await asyncio.sleep(0.3)
        assert not port_open(fg.nats) and not port_open(fg.gb) and not port_open(fg.http)
        assert not nats_servers_under(tmp_path), "SIGINT left the embedded nats-server behind"
        lines = log_lines(fg)
        assert lines and {e["level"] for e in lines} <= {"WARNING", "ERROR", "CRITICAL"}
    finally:
        fg.kill_all()


# -- bad configuration --------------------------------------------------------------------------


def firegate_command(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FIREGATE, *args], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=60
    )


def test_bad_config_commands_exit_non_zero_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gb26875:\n  listen: 'not-a-host-port'\nbus:\n  spool_max_bytes: lots\n", encoding="utf-8")
    check = firegate_command(tmp_path, "config", "check", str(bad))
    assert check.returncode != 0
    assert "gb26875.listen" in check.stderr and "bus.spool_max_bytes" in check.stderr
    assert "Traceback" not in check.stderr + check.stdout
    run = firegate_command(tmp_path, "run", "--config", str(bad))
    assert run.returncode == 2
    assert "bad configuration" in run.stderr
    assert "gb26875.listen" in run.stderr and "bus.spool_max_bytes" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert not (tmp_path / "firegate-data").exists(), "nothing starts with a bad configuration"
    env = firegate_command(tmp_path, "run", FIREGATE_HTTP__LISTEN="nowhere")
    assert env.returncode == 2
    assert "FIREGATE_HTTP__LISTEN" in env.stderr and "Traceback" not in env.stderr
