"""nats-servers started from the shipped deployment config (config/nats/), for the permission tests.

The shipped files are copied unchanged, except the lines that say where a server listens and
stores (a free loopback port and a temporary directory instead of 4222 and /var/lib/nats): the
accounts, users and permissions are exactly what a center deploys. The passwords are example-only
values given to the server through the environment, as accounts.conf expects them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import nats.errors
from nats.aio.client import Client as NATS

from firegate.bus.server import find_nats_server
from tests.ports import free_ports

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config" / "nats"
SHARED_FILES = ("permissions.conf", "accounts.conf", "accounts-nkeys.conf")
START_TIMEOUT = 15.0
# user -> example-only password (never a real one), and the server's variable for it
USERS = (
    "gateway",
    "lifecycle",
    "forwarders",
    "lifecycle-forwarders",
    "dispatch119",
    "monitor",
    "seat-1",
    "seat-2",
)
PASSWORDS = {user: f"example-only-{user}-pw-7Hq2" for user in USERS}


def inbox_prefix(user: str) -> str:
    """The reply inbox each shipped user may subscribe to (the seats share account OPS's)."""
    return "_INBOX" if user.startswith("seat-") else f"_INBOX_{user}"


def password_variable(user: str) -> str:
    return f"NATS_{user.upper().replace('-', '_')}_PASSWORD"


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({password_variable(user): pw for user, pw in PASSWORDS.items()})
    return env


def _rewrite(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"the shipped config no longer has {old!r}: update natsdeploy.py"
        text = text.replace(old, new)
    return text


def copy_shared(into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FILES:
        shutil.copy(CONFIG_DIR / name, into / name)


@dataclass
class NatsProcess:
    name: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, config: Path) -> None:
        with self.log.open("ab") as out:
            command = [find_nats_server(), "-c", str(config)]
            self.proc = subprocess.Popen(command, env=server_env(), stdout=out, stderr=subprocess.STDOUT)

    async def wait_listening(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: {self.log_text()[-2000:]}")
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 0.5)
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    why = f"nats-server {self.name} not listening: {self.log_text()[-2000:]}"
                    raise TimeoutError(why) from None
                await asyncio.sleep(0.05)
            else:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def violations(self) -> list[str]:
        """The server's log lines about refused publishes and subscriptions."""
        return [line for line in self.log_text().splitlines() if "Violation" in line]


@contextlib.asynccontextmanager
async def shipped_single(tmp_path: Path) -> AsyncIterator[NatsProcess]:
    """config/nats/single.conf on a free loopback port with its store in ``tmp_path``."""
    folder = tmp_path / "nats-config"
    copy_shared(folder)
    (port,) = free_ports(1)
    text = _rewrite(
        (CONFIG_DIR / "single.conf").read_text(),
        {"listen: 127.0.0.1:4222": f"listen: 127.0.0.1:{port}", "/var/lib/nats": str(tmp_path / "store")},
    )
    config = folder / "single.conf"
    config.write_text(text)
    server = NatsProcess("single", port, tmp_path / "nats-server.log")
    server.start(config)
    try:
        await server.wait_listening()
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def shipped_cluster(tmp_path: Path) -> AsyncIterator[list[NatsProcess]]:
    """The three node files of config/nats/cluster/, their hosts mapped to loopback ports."""
    folder = tmp_path / "nats-config"
    copy_shared(folder)
    (folder / "cluster").mkdir()
    ports = free_ports(6)
    clients, routes = ports[:3], ports[3:]
    servers: list[NatsProcess] = []
    for n in (1, 2, 3):
        replacements = {
            "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{clients[n - 1]}",
            "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{routes[n - 1]}",
            "/var/lib/nats": str(tmp_path / f"store-{n}"),
        }
        for i in (1, 2, 3):
            replacements[f"nats-route://n{i}:6222"] = f"nats-route://127.0.0.1:{routes[i - 1]}"
        text = _rewrite((CONFIG_DIR / "cluster" / f"node-{n}.conf").read_text(), replacements)
        config = folder / "cluster" / f"node-{n}.conf"
        config.write_text(text)
        servers.append(NatsProcess(f"n{n}", clients[n - 1], tmp_path / f"nats-n{n}.log"))
    try:
        for server, n in zip(servers, (1, 2, 3), strict=True):
            server.start(folder / "cluster" / f"node-{n}.conf")
        for server in servers:
            await server.wait_listening()
        yield servers
    finally:
        for server in servers:
            server.stop()


@dataclass
class Client:
    """A NATS client of one shipped user, collecting what the server refused it."""

    user: str
    nc: NATS
    errors: list[str] = field(default_factory=list)

    async def refused(self, what: str, within: float = 3.0) -> None:
        """Wait until the server has refused ``what`` (a subject) to this user."""
        deadline = time.monotonic() + within
        while not any("permissions violation" in e and what.lower() in e for e in self.errors):
            assert time.monotonic() < deadline, f"{what} not refused to {self.user}: {self.errors}"
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def client(url: str, user: str) -> AsyncIterator[Client]:
    errors: list[str] = []

    async def on_error(e: Exception) -> None:
        errors.append(str(e).lower())

    nc = await nats.connect(
        url.split(","),  # one URL, or a cluster's
        user=user,
        password=PASSWORDS[user],
        name=f"test-{user}",
        inbox_prefix=inbox_prefix(user),
        allow_reconnect=False,
        connect_timeout=5,
        error_cb=on_error,
    )
    try:
        yield Client(user, nc, errors)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 5)


def leaked(text: str, secrets: dict[str, str] | None = None) -> list[str]:
    """Whose secrets (of ``secrets``, default the example passwords) appear in ``text``."""
    return [who for who, secret in (secrets or PASSWORDS).items() if secret in text]
