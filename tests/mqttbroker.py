"""Private Mosquitto brokers for tests.

Each broker listens on a free loopback port (never 1883, where a machine's
own Mosquitto may run), keeps its config, log and persistence database in the
given temporary directory, and is always stopped afterwards:

    from tests.mqttbroker import running_mosquitto

    async def test_something(tmp_path):
        async with running_mosquitto(tmp_path / "mqtt") as broker:
            ...  # connect to broker.host, broker.port

``broker.kill()`` then ``await broker.start()`` simulates a crash and a
restart on the same port. Retained messages survive it once Mosquitto has
saved them (it saves after every change here); ``broker.db_path`` is the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from tests.ports import RESERVED_PORTS, free_port

_FALLBACK_BINARY = "/usr/sbin/mosquitto"
_START_TIMEOUT = 5.0
_STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 5


def find_mosquitto() -> str:
    """The mosquitto binary; RuntimeError (not a skip) when it is missing."""
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(_FALLBACK_BINARY, os.X_OK):
        return _FALLBACK_BINARY
    raise RuntimeError(
        "mosquitto not found (PATH, /usr/sbin/mosquitto); the MQTT tests need it: apt-get install mosquitto"
    )


class MosquittoStartError(RuntimeError):
    def __init__(self, message: str, *, exited: bool) -> None:
        super().__init__(message)
        self.exited = exited  # the process died (e.g. lost a bind race), vs. never became ready


class MosquittoBroker:
    """One Mosquitto child process bound to 127.0.0.1:``port``."""

    host = "127.0.0.1"

    def __init__(self, tmp_dir: Path, port: int, binary: str) -> None:
        self.tmp_dir = tmp_dir
        self.port = port
        self._binary = binary
        self._proc: asyncio.subprocess.Process | None = None
        self._log_start = 0

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.tmp_dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.tmp_dir / "mosquitto.log"

    @property
    def db_path(self) -> Path:
        return self.tmp_dir / "mosquitto.db"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def _config_text(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.tmp_dir}/",
            # Save after every change, so retained messages survive kill() too.
            "autosave_on_changes true",
            "autosave_interval 1",
            "log_dest stderr",
        ]
        if os.geteuid() == 0:
            # As root Mosquitto drops to user "mosquitto", which cannot write tmp_dir.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        return "\n".join(lines) + "\n"

    async def start(self) -> None:
        """Start (or restart, same port and data) and wait until it accepts connections."""
        if self.running:
            return
        await self.stop()  # reap a killed predecessor so its port is free
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config_text(), encoding="utf-8")
        with self._open_log() as log:
            self._log_start = log.tell()
            self._proc = await asyncio.create_subprocess_exec(
                self._binary,
                "-c",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C is for pytest, which stops us in order
            )
        try:
            await self._wait_ready(self._proc)
        except BaseException:
            await self.stop()
            raise

    def _open_log(self) -> BinaryIO:
        return open(self.log_path, "ab")  # appended across restarts; log_tail reads this run's part

    async def _wait_ready(self, proc: asyncio.subprocess.Process) -> None:
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                while True:
                    if proc.returncode is not None:
                        raise MosquittoStartError(
                            f"mosquitto exited with {proc.returncode} on port {self.port}:\n"
                            f"{self.log_tail()}",
                            exited=True,
                        )
                    # "running" is logged after the listener is bound: a connection
                    # before that could reach whoever else holds the port.
                    if " running" in self.log_tail() and await self._accepts():
                        return
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise MosquittoStartError(
                f"mosquitto not ready on port {self.port} within {_START_TIMEOUT:g} s:\n{self.log_tail()}",
                exited=False,
            ) from None

    async def _accepts(self) -> bool:
        try:
            _, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def kill(self) -> None:
        """SIGKILL now (a crash); start() or stop() reaps it."""
        if self.running and self._proc is not None:
            self._proc.kill()

    async def stop(self) -> None:
        """SIGTERM, wait up to 5 s, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(_STOP_TIMEOUT):
                        await proc.wait()
                except TimeoutError:
                    pass
        finally:
            # Also reached when cancelled mid-stop: never leave the child behind.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())

    def log_tail(self, max_lines: int = 20) -> str:
        """The last lines Mosquitto wrote during the current (or last) run."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                data = f.read()
        except OSError:
            return ""
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-max_lines:])


@contextlib.asynccontextmanager
async def running_mosquitto(tmp_dir: str | os.PathLike[str]) -> AsyncIterator[MosquittoBroker]:
    """A started private Mosquitto; stopped (SIGKILL at worst) on exit."""
    binary = find_mosquitto()
    path = Path(tmp_dir)
    broker: MosquittoBroker | None = None
    for attempt in range(_PORT_ATTEMPTS):
        broker = MosquittoBroker(path, free_port(), binary)
        try:
            await broker.start()
            break
        except MosquittoStartError as e:
            if not e.exited or attempt == _PORT_ATTEMPTS - 1:
                raise
    assert broker is not None and broker.port not in RESERVED_PORTS
    try:
        yield broker
    finally:
        await broker.stop()
