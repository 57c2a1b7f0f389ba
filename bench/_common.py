"""Helpers shared by the bench scripts: free ports, `firegate run` as its own process, /proc counters.

Benches run as scripts (`python bench/x.py`), so this module is imported as `_common` from the
script's own directory.
"""

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
from typing import NamedTuple

FIREGATE = str(Path(sys.executable).with_name("firegate"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pid(pid: int, name: str) -> int | None:
    """A direct child of `pid` whose command line contains `name` (e.g. the embedded nats-server)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        with contextlib.suppress(OSError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(OSError):
                    if name in Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace"):
                        return int(child)
    return None


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without the caller's own FIREGATE_* variables, plus `overrides`:
    the bench's firegate reads only what the bench sets (never a developer's nats.url, say)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FIREGATE_")}
    env.update(overrides)
    return env


class Started(NamedTuple):
    proc: subprocess.Popen[bytes]
    gb: int  # the UITD port
    nats: int  # the embedded nats-server's port
    http: int  # metrics and health


def start_firegate(workdir: Path, **env: str) -> Started:
    """`firegate run` in its own session, data and log in `workdir`, on free private ports, at log
    level WARNING; `env` adds or overrides FIREGATE_* settings. Returns once /readyz answers;
    exits the bench with the log's tail if it does not within 30 s."""
    gb, http, nats = free_port(), free_port(), free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    full = clean_env(
        FIREGATE_GB26875__LISTEN=f"127.0.0.1:{gb}",
        FIREGATE_HTTP__LISTEN=f"127.0.0.1:{http}",
        FIREGATE_NATS__EMBEDDED_PORT=str(nats),
        FIREGATE_DATA_DIR=str(workdir / "data"),
        FIREGATE_LOG__LEVEL="WARNING",
    )
    full.update(env)
    log = open(workdir / "firegate.log", "wb")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(
        [FIREGATE, "run"], env=full, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=1),
        ):
            return Started(proc, gb, nats, http)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop(proc)
    raise SystemExit("firegate did not become ready: " + (workdir / "firegate.log").read_text()[-1500:])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, within: float = 30.0) -> None:
    """Until something accepts connections on 127.0.0.1:port; exits the bench if `proc` dies first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop(proc)
    raise SystemExit(f"{what} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to the whole session (the process and its children) after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(15)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the session is left
    proc.wait()


def scrape(http: int, *names: str) -> dict[str, float]:
    """The samples of these metric names (with their labels) from firegate's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(names):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
