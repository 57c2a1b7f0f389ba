"""NATS authentication (token, user/password) and TLS against real private nats-servers.

The servers are nats-server binaries started here with a config of their own
(EmbeddedNatsServer writes its own config, without auth or TLS) on a free
loopback port, and always killed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from firegate.bus.errors import NatsConnectError
from firegate.bus.jetstream import connect, connect_options, tls_context
from firegate.bus.server import find_nats_server
from firegate.config import Nats
from tests.ports import free_port

START_TIMEOUT = 10.0
FAIL_TIMEOUT = 1.0  # connect_timeout for the attempts that must fail
FAIL_BOUND = FAIL_TIMEOUT + 3.0  # ... and how long they may take at most


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


def _start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [find_nats_server(), "-c", str(config), "-a", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited with {proc.returncode}: {_tail(log)}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server not listening on {port} after {START_TIMEOUT} s") from None
            await asyncio.sleep(0.02)
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


@contextlib.asynccontextmanager
async def nats_server_with(tmp_path: Path, config: str) -> AsyncIterator[int]:
    """A nats-server with ``config`` on a free loopback port; yields the port, killed on exit."""
    port = free_port()
    conf = tmp_path / f"nats-{port}.conf"
    conf.write_text(config)
    log = tmp_path / f"nats-{port}.log"
    proc = _start(conf, port, log)
    try:
        await _wait_for_port(proc, port, log)
        yield port
    finally:
        proc.kill()
        proc.wait(timeout=5.0)


async def _connect_ok(url: str, **kwargs: Any) -> None:
    nc = await connect(url, "firegate-test", connect_timeout=5.0, **kwargs)
    try:
        assert nc.is_connected
        await nc.flush(timeout=2)  # a round trip: the server really accepted us
    finally:
        await nc.close()


async def _connect_fails(url: str, reason: str | None = None, **kwargs: Any) -> NatsConnectError:
    """Connecting fails in bounded time, the error naming the URL and (when given) ``reason``."""
    started = time.monotonic()
    with pytest.raises(NatsConnectError) as info:
        nc = await connect(url, "firegate-test", connect_timeout=FAIL_TIMEOUT, attempt_timeout=1, **kwargs)
        await nc.close()
    assert time.monotonic() - started < FAIL_BOUND
    assert url in str(info.value)
    if reason is not None:
        assert reason in str(info.value)
    return info.value


# -- token and user/password ----------------------------------------------------------


async def test_token(tmp_path: Path) -> None:
    async with nats_server_with(tmp_path, 'authorization { token: "s3cret" }\n') as port:
        url = f"nats://127.0.0.1:{port}"
        await _connect_ok(url, token="s3cret")
        await _connect_fails(url, "Authorization Violation", token="wrong")
        await _connect_fails(url, "Authorization Violation")


async def test_user_password(tmp_path: Path) -> None:
    config = "authorization { user: a, password: b }\n"
    async with nats_server_with(tmp_path, config) as port:
        url = f"nats://127.0.0.1:{port}"
        await _connect_ok(url, user="a", password="b")
        await _connect_fails(url, "Authorization Violation", user="a", password="wrong")
        await _connect_fails(url, "Authorization Violation", user="x", password="b")
        await _connect_fails(url, "Authorization Violation")


async def test_connect_options_from_settings(tmp_path: Path) -> None:
    config = "authorization { user: a, password: b }\n"
    async with nats_server_with(tmp_path, config) as port:
        url = f"nats://127.0.0.1:{port}"
        options = connect_options(Nats(url=url, user="a", password="b"))
        assert options == {
            "creds": None,
            "nkey": None,
            "tls": None,
            "user": "a",
            "password": "b",
            "token": None,
        }
        await _connect_ok(url, **options)
        bad = connect_options(Nats(url=url, user="a", password="nope"))
        await _connect_fails(url, "Authorization Violation", **bad)


def test_connect_options_token_and_nothing() -> None:
    assert connect_options(Nats(token="t0k"))["token"] == "t0k"
    assert connect_options(Nats()) == {
        "creds": None,
        "nkey": None,
        "tls": None,
        "user": None,
        "password": None,
        "token": None,
    }


def _user_nkey(d: Path) -> tuple[str, Path]:
    """A new user nkey: its public key for the server, its seed in a file for firegate."""
    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    d.mkdir(parents=True, exist_ok=True)
    path = d / "user.nk"
    path.write_bytes(seed)
    return public, path


async def test_nkey_from_settings(tmp_path: Path) -> None:
    """nats.nkey_file: the server holds only the public key; the seed signs its challenge."""
    public, seed = _user_nkey(tmp_path)
    async with nats_server_with(tmp_path, f"authorization {{ users: [ {{ nkey: {public} }} ] }}\n") as port:
        url = f"nats://127.0.0.1:{port}"
        options = connect_options(Nats(url=url, nkey_file=seed))
        assert options["nkey"] == seed
        await _connect_ok(url, **options)
        _, other = _user_nkey(tmp_path / "other")
        await _connect_fails(
            url, "Authorization Violation", **connect_options(Nats(url=url, nkey_file=other))
        )


async def test_the_cli_signs_with_the_nkey_in_the_environment(tmp_path: Path) -> None:
    """`firegate alarm list` with FIREGATE_NATS__NKEY_FILE: connected (no lifecycle answers here,
    so it says so, rather than failing on authorization)."""
    public, seed = _user_nkey(tmp_path)
    async with nats_server_with(tmp_path, f"authorization {{ users: [ {{ nkey: {public} }} ] }}\n") as port:
        env = {**os.environ, "FIREGATE_NATS__URL": f"nats://127.0.0.1:{port}"}
        env.pop("FIREGATE_NATS__NKEY_FILE", None)
        cli = [sys.executable, "-m", "firegate.cli", "alarm", "list"]
        denied = await asyncio.to_thread(
            subprocess.run, cli, env=env, capture_output=True, text=True, timeout=30
        )
        assert denied.returncode != 0 and "authorization" in (denied.stdout + denied.stderr).lower()
        env["FIREGATE_NATS__NKEY_FILE"] = str(seed)
        signed = await asyncio.to_thread(
            subprocess.run, cli, env=env, capture_output=True, text=True, timeout=30
        )
        out = signed.stdout + signed.stderr
        assert "authorization" not in out.lower(), out
        assert "no lifecycle service is running" in out, out  # connected, and nobody answers


# -- TLS ------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _signed_cert(d: Path, name: str, ca: Path, ca_key: Path, ext: str) -> tuple[Path, Path]:
    key, csr, crt, extfile = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")  # fmt: skip
    extfile.write_text(ext)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-out", str(crt), "-days", "2", "-extfile", str(extfile))  # fmt: skip
    return crt, key


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return crt, key


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A test CA, a server cert for 127.0.0.1 and a client cert it signed, plus an unrelated CA."""
    if shutil.which("openssl") is None:  # the `cryptography` package is not in the venv either
        pytest.skip("neither the cryptography package nor the openssl CLI is available to make certs")
    d = tmp_path / "pki"
    d.mkdir()
    ca, ca_key = _ca(d, "test-ca")
    other_ca, _ = _ca(d, "other-ca")
    server, server_key = _signed_cert(
        d, "server", ca, ca_key, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    client, client_key = _signed_cert(d, "client", ca, ca_key, "extendedKeyUsage=clientAuth\n")
    yield {
        "ca": ca,
        "other_ca": other_ca,
        "server": server,
        "server_key": server_key,
        "client": client,
        "client_key": client_key,
    }


def _tls_block(pki: dict[str, Path], *, verify: bool = False) -> str:
    lines = [
        f"cert_file: {json.dumps(str(pki['server']))}",
        f"key_file: {json.dumps(str(pki['server_key']))}",
    ]
    if verify:
        lines += [f"ca_file: {json.dumps(str(pki['ca']))}", "verify: true"]
    return "tls {\n  " + "\n  ".join(lines) + "\n  timeout: 2\n}\n"


def test_tls_context_none_when_unset() -> None:
    assert tls_context(None, None, None) is None


def test_tls_context_cert_without_key(pki: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="together"):
        tls_context(pki["ca"], pki["client"], None)


async def test_tls_server_verified_with_ca(tmp_path: Path, pki: dict[str, Path]) -> None:
    async with nats_server_with(tmp_path, _tls_block(pki)) as port:
        url = f"tls://127.0.0.1:{port}"
        await _connect_ok(url, tls=tls_context(pki["ca"], None, None))
        # a server cert from a CA we were not told to trust is refused
        await _connect_fails(url, "CERTIFICATE_VERIFY_FAILED", tls=tls_context(pki["other_ca"], None, None))


async def test_tls_with_client_cert_and_token(tmp_path: Path, pki: dict[str, Path]) -> None:
    config = _tls_block(pki, verify=True) + 'authorization { token: "s3cret" }\n'
    async with nats_server_with(tmp_path, config) as port:
        url = f"tls://127.0.0.1:{port}"
        settings = Nats(
            url=url, tls_ca=pki["ca"], tls_cert=pki["client"], tls_key=pki["client_key"], token="s3cret"
        )
        await _connect_ok(url, **connect_options(settings))
        # the server demands a client certificate
        await _connect_fails(url, tls=tls_context(pki["ca"], None, None), token="s3cret")
