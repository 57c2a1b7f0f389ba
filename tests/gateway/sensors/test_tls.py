"""A source on a broker that wants TLS, a client certificate and a password (Mosquitto)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from tests.gateway.sensors.conftest import config, running
from tests.mqttbroker import MosquittoBroker, find_mosquitto
from tests.natsserver import wait_until
from tests.ports import free_port

pytestmark = pytest.mark.timeout(30)


class SecureBroker(MosquittoBroker):
    def __init__(self, tmp_dir: Path, port: int, binary: str, ca: trustme.CA) -> None:
        super().__init__(tmp_dir, port, binary)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.ca_pem, self.cert, self.key = tmp_dir / "ca.pem", tmp_dir / "server.pem", tmp_dir / "server.key"
        ca.cert_pem.write_to_path(str(self.ca_pem))
        server = ca.issue_cert("127.0.0.1")
        server.cert_chain_pems[0].write_to_path(str(self.cert))
        server.private_key_pem.write_to_path(str(self.key))
        self.passwords = tmp_dir / "passwords"
        self.passwords.write_text("")
        subprocess.run(["mosquitto_passwd", "-b", str(self.passwords), "firegate", "s3cret"], check=True)

    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    def _config_text(self) -> str:
        plain = super()._config_text().replace("allow_anonymous true", "allow_anonymous false")
        return plain + "\n".join(
            [
                f"cafile {self.ca_pem}",
                f"certfile {self.cert}",
                f"keyfile {self.key}",
                "require_certificate true",
                f"password_file {self.passwords}",
                "",
            ]
        )


class Client:
    def __init__(self, tmp: Path, ca: trustme.CA) -> None:
        self.ca = tmp / "client-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        issued = ca.issue_cert("firegate-client.example")
        self.cert, self.key = tmp / "client.pem", tmp / "client.key"
        issued.cert_chain_pems[0].write_to_path(str(self.cert))
        issued.private_key_pem.write_to_path(str(self.key))


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[tuple[SecureBroker, Client]]:
    ca = trustme.CA()
    broker = SecureBroker(tmp_path / "mqtt", free_port(), find_mosquitto(), ca)
    await broker.start()
    try:
        yield broker, Client(tmp_path, ca)
    finally:
        await broker.stop()


async def test_tls_client_certificate_and_password(secure: tuple[SecureBroker, Client]) -> None:
    broker, client = secure
    tls = {"tls_ca": client.ca, "tls_cert": client.cert, "tls_key": client.key}
    cfg = config(broker, username="firegate", password="s3cret", **tls)
    async with running(cfg) as r:
        assert r.source.readiness() == (True, f"mqtts://127.0.0.1:{broker.port} connected")


async def test_a_wrong_password_is_named_in_readiness(secure: tuple[SecureBroker, Client]) -> None:
    broker, client = secure
    tls = {"tls_ca": client.ca, "tls_cert": client.cert, "tls_key": client.key}
    cfg = config(broker, username="firegate", password="wrong", **tls)
    async with running(cfg, wait_connected=False) as r:
        await wait_until(lambda: "down for" in r.source.readiness()[1], 10)
        ok, detail = r.source.readiness()
        assert not ok and f"mqtts://127.0.0.1:{broker.port}" in detail and "Not authorized" in detail
