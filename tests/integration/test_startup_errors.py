"""`firegate run` that cannot start says why in one JSON log line naming the setting, exits 1,
and leaves no nats-server behind."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.process import FIREGATE, Firegate
from tests.integration.test_run_process import nats_servers_under
from tests.natsserver import running_nats_server
from tests.ports import free_port


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def failed_start(workdir: Path, **variables: str) -> dict[str, Any]:
    """Run `firegate run` with these variables; it must stop at once, as promised above. Returns
    its one ERROR line."""
    env = {**Firegate(workdir).env, "FIREGATE_NATS__CONNECT_TIMEOUT": "1", **variables}
    done = subprocess.run(
        [FIREGATE, "run"], cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]  # all JSON
    (error,) = [line for line in lines if line["level"] == "ERROR"]
    assert error["msg"].startswith(f"cannot start: {error['key']}: ")
    assert not nats_servers_under(workdir)
    return error


@pytest.mark.parametrize(
    ("key", "variable", "value"),
    [
        ("http.listen", "FIREGATE_HTTP__LISTEN", "127.0.0.1:{taken}"),
        ("gb26875.listen", "FIREGATE_GB26875__LISTEN", "127.0.0.1:{taken}"),
        ("nats.embedded_port", "FIREGATE_NATS__EMBEDDED_PORT", "{taken}"),
        ("nats.url", "FIREGATE_NATS__URL", "nats://127.0.0.1:{free}"),
        ("data_dir", "FIREGATE_DATA_DIR", "{file}/data"),
    ],
)
def test_a_start_that_fails_names_the_setting(
    tmp_path: Path, taken_port: int, key: str, variable: str, value: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    value = value.format(taken=taken_port, free=free_port(), file=blocker)
    assert failed_start(tmp_path, **{variable: value})["key"] == key


async def test_a_stream_bigger_than_the_nats_store_names_bus_max_bytes(tmp_path: Path) -> None:
    workdir = tmp_path / "firegate"  # apart from the test's own server, which must stay up
    workdir.mkdir()
    async with running_nats_server(tmp_path / "nats") as server:  # a 1 GB store
        error = await asyncio.to_thread(
            failed_start, workdir, FIREGATE_NATS__URL=server.url, FIREGATE_BUS__MAX_BYTES="50G"
        )
    assert error["key"] == "bus.max_bytes", error


def test_a_udp_port_taken_names_gb26875_udp_listen(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        error = failed_start(tmp_path, FIREGATE_GB26875__UDP_LISTEN=f"127.0.0.1:{taken.getsockname()[1]}")
    assert error["key"] == "gb26875.udp_listen", error


def test_a_second_process_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    """Two gateways on one data directory would replay and delete the same spool (and start two
    nats-servers on one store): the second one stops, naming data_dir and the first's pid."""
    first = Firegate(tmp_path)
    try:
        first.start()
        assert first.proc is not None
        second = tmp_path / "second"
        second.mkdir()
        error = failed_start(second, FIREGATE_DATA_DIR=str(tmp_path / "firegate-data"))  # own ports
        assert error["key"] == "data_dir"
        assert f"pid {first.proc.pid}" in error["msg"]
        assert first.proc.poll() is None  # the first one runs on, untouched
    finally:
        first.kill_all()
    again = Firegate(tmp_path)
    try:
        again.start()  # the lock went with the process, even killed
    finally:
        again.kill_all()
