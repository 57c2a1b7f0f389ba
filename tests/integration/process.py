"""`firegate run` as a subprocess, the way ops run it (shared by the process tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.ports import free_ports

FIREGATE = str(Path(sys.executable).with_name("firegate"))


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without the developer's own FIREGATE_* variables, plus
    ``overrides``: a child firegate reads only what the test sets."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FIREGATE_")}
    env.update(overrides)
    return env


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class Firegate:
    def __init__(self, workdir: Path, *args: str, log: str = "firegate.log") -> None:
        self.workdir = workdir
        self.args = list(args)  # e.g. --config FILE, --role forwarders
        self.log = workdir / log
        self.gb, self.http, self.nats = free_ports(3)
        self.env = clean_env(
            FIREGATE_GB26875__LISTEN=f"127.0.0.1:{self.gb}",
            FIREGATE_HTTP__LISTEN=f"127.0.0.1:{self.http}",
            FIREGATE_NATS__EMBEDDED_PORT=str(self.nats),
            FIREGATE_GB26875__CLOCK_SYNC_ON_CONNECT="false",
            FIREGATE_GB26875__DRAIN_GRACE="0",  # tests stop many processes; test_drain_process sets it
            FIREGATE_LOG__LEVEL=os.environ.get("TEST_LOG_LEVEL", "INFO"),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [FIREGATE, "run", *self.args],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{self.http}/readyz", timeout=1) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("firegate not ready in 30 s: " + self.log.read_text()[-2000:])

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
            return r.read().decode()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill_all(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
