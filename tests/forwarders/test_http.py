"""HttpPoster against the fake 119 receiver, over real loopback sockets (plain HTTP and mutual TLS)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from firegate.bus.events import FaultRaised, Point
from firegate.forwarders.delivery import Delivery
from firegate.forwarders.errors import DeliveryError
from firegate.forwarders.http import HttpPoster
from firegate.tools.fake119 import FakeDispatch119
from tests.ports import free_port

pytestmark = pytest.mark.timeout(15)

MakePoster = Callable[..., HttpPoster]


def delivery(n: int = 1, device: str = "74565") -> Delivery:
    event = FaultRaised(
        id=f"{device}.2.{n:020x}.fault",
        device=device,
        site="site-0042",
        occurred_at=datetime(2026, 11, 23, 10, 30, 5),
        received_at=datetime.now(UTC),
        condition="fault",
        point=Point(system_type=1, component_address=n),
    )
    return Delivery(event=event, subject=event.subject, data=event.model_dump_json().encode(), stream_seq=n)


def incident_body(incident: str, update: int | str) -> Callable[[Delivery], bytes]:
    def body(d: Delivery) -> bytes:
        return json.dumps({"incident_id": incident, "update": update, "event": d.event.id}).encode()

    return body


@pytest.fixture
async def fake() -> AsyncIterator[FakeDispatch119]:
    async with FakeDispatch119() as server:
        yield server


@pytest.fixture
async def make_poster() -> AsyncIterator[MakePoster]:
    posters: list[HttpPoster] = []

    def make(url: str, **kwargs: Any) -> HttpPoster:
        kwargs.setdefault("name", "119")
        kwargs.setdefault("timeout", 2.0)
        poster = HttpPoster(url, **kwargs)
        posters.append(poster)
        return poster

    yield make
    for p in posters:
        await p.close()


async def refused(poster: HttpPoster, d: Delivery) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await poster.deliver(d)
    return info.value


# -- outcomes -------------------------------------------------------------------------


async def test_accepted_once_per_idempotency_key(fake: FakeDispatch119, make_poster: MakePoster) -> None:
    poster = make_poster(fake.url, user_agent="firegate/test")
    d = delivery()
    await poster.deliver(d)
    await poster.deliver(d)  # a retry after a lost answer
    await poster.deliver(delivery(2))
    assert [r.status for r in fake.requests] == [201, 200, 201]
    assert fake.accepted == [d.event.id, delivery(2).event.id]
    first = fake.requests[0]
    assert first.key == d.event.id
    assert first.body is not None and first.body["id"] == d.event.id and first.body["type"] == "fault_raised"
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["User-Agent"] == "firegate/test"
    assert "Authorization" not in first.headers
    assert set(fake.incidents) == {d.event.id, delivery(2).event.id}


async def test_custom_idempotency_key(fake: FakeDispatch119, make_poster: MakePoster) -> None:
    poster = make_poster(fake.url, idempotency_key=lambda d: f"k-{d.stream_seq}")
    await poster.deliver(delivery(7))
    assert fake.accepted == ["k-7"]


async def test_5xx_is_retryable(fake: FakeDispatch119, make_poster: MakePoster) -> None:
    poster = make_poster(fake.url)
    fake.fail_next(1, status=503)
    e = await refused(poster, delivery())
    assert (e.reason, e.retryable, e.value) == ("http_5xx", True, 503)
    assert "503" in e.detail and "injected failure" in e.detail
    await poster.deliver(delivery())  # the same session goes on working
    assert len(fake.accepted) == 1


@pytest.mark.parametrize("status", [400, 413, 415, 422])
async def test_refused_payload_is_not_retryable(
    fake: FakeDispatch119, make_poster: MakePoster, status: int
) -> None:
    fake.fail_next(1, status=status)
    e = await refused(make_poster(fake.url), delivery())
    assert (e.reason, e.retryable, e.value) == ("http_4xx", False, status)


async def test_receiver_answers_422_to_a_bad_update(fake: FakeDispatch119, make_poster: MakePoster) -> None:
    e = await refused(make_poster(fake.url, body=incident_body("inc-1", "second")), delivery())
    assert (e.reason, e.retryable, e.value) == ("http_4xx", False, 422)
    assert "update must be an integer" in e.detail
    assert fake.accepted == []


@pytest.mark.parametrize("status", [404, 408, 429])
async def test_other_4xx_are_retryable(fake: FakeDispatch119, make_poster: MakePoster, status: int) -> None:
    fake.fail_next(1, status=status)
    e = await refused(make_poster(fake.url), delivery())
    assert (e.reason, e.retryable, e.value) == ("http_4xx", True, status)


async def test_409_means_already_accepted(fake: FakeDispatch119, make_poster: MakePoster) -> None:
    fake.fail_next(1, status=409)
    await make_poster(fake.url).deliver(delivery())
    assert [r.status for r in fake.requests] == [409]


async def test_closed_port_is_a_retryable_connect_error(make_poster: MakePoster) -> None:
    e = await refused(make_poster(f"http://127.0.0.1:{free_port()}/incidents"), delivery())
    assert (e.reason, e.retryable) == ("connect", True)


async def test_slow_receiver_times_out(fake: FakeDispatch119, make_poster: MakePoster) -> None:
    fake.delay = 3.0
    poster = make_poster(fake.url, timeout=0.3)
    started = time.monotonic()
    e = await refused(poster, delivery())
    elapsed = time.monotonic() - started
    assert (e.reason, e.retryable) == ("timeout", True)
    assert 0.25 < elapsed < 1.5


def test_rejects_a_bad_url() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpPoster("ftp://example.org/x", name="119")
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        HttpPoster("https://example.org/x", name="119", tls_cert=Path("cert.pem"))


async def test_bearer_token() -> None:
    async with FakeDispatch119(token="s3cret") as fake:
        posters = [
            HttpPoster(fake.url, name="119"),
            HttpPoster(fake.url, name="119", token="wrong"),
            HttpPoster(fake.url, name="119", token="s3cret"),
        ]
        try:
            for poster in posters[:2]:
                e = await refused(poster, delivery())
                assert (e.reason, e.retryable, e.value) == ("http_4xx", True, 401)
            await posters[2].deliver(delivery())
        finally:
            for p in posters:
                await p.close()
        assert [r.status for r in fake.requests] == [401, 401, 201]
        assert fake.requests[2].headers["Authorization"] == "Bearer s3cret"
        assert len(fake.accepted) == 1


# -- mutual TLS -----------------------------------------------------------------------


class Pki:
    def __init__(self, tmp: Path) -> None:
        self.ca = trustme.CA()
        self.ca_pem = tmp / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        client = self.ca.issue_cert("firegate-client.example")
        self.cert, self.key = tmp / "client.pem", tmp / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.cert))
        client.private_key_pem.write_to_path(str(self.key))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        self.ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
        return ctx


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    yield Pki(tmp_path_factory.mktemp("pki"))


async def test_mutual_tls(pki: Pki, make_poster: MakePoster) -> None:
    async with FakeDispatch119(ssl_context=pki.server_context()) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        good = make_poster(fake.url, tls_ca=pki.ca_pem, tls_cert=pki.cert, tls_key=pki.key)
        await good.deliver(delivery())
        assert len(fake.accepted) == 1

        e = await refused(make_poster(fake.url, tls_ca=pki.ca_pem), delivery())
        assert e.retryable and e.reason in ("tls", "connect"), e

        # the system CAs do not know the test CA: the server's certificate fails verification
        e = await refused(make_poster(fake.url, tls_cert=pki.cert, tls_key=pki.key), delivery())
        assert (e.reason, e.retryable) == ("tls", True)
        assert len(fake.accepted) == 1


# -- the fake receiver itself ---------------------------------------------------------


async def test_highest_update_wins(fake: FakeDispatch119, make_poster: MakePoster) -> None:
    for n, update in enumerate([2, 1, 3, 3], 1):
        poster = make_poster(fake.url, body=incident_body("inc-1", update))
        await poster.deliver(delivery(n))
        if update == 1:
            assert fake.incidents["inc-1"]["update"] == 2  # an older update arriving late is kept out
    assert fake.incidents["inc-1"]["update"] == 3
    assert fake.incidents["inc-1"]["event"] == delivery(4).event.id  # the latest of equals
    assert len(fake.accepted) == 4


async def test_wait_for(fake: FakeDispatch119, make_poster: MakePoster) -> None:
    poster = make_poster(fake.url)

    async def later() -> None:
        for n in range(3):
            await asyncio.sleep(0.05)
            await poster.deliver(delivery(n))
            await poster.deliver(delivery(n))  # duplicates do not count

    task = asyncio.create_task(later())
    assert len(await fake.wait_for(2, timeout=5)) >= 2
    await task
    assert len(await fake.wait_for(3, timeout=0.01)) == 3
    with pytest.raises(TimeoutError, match="3 of 4"):
        await fake.wait_for(4, timeout=0.1)


async def test_control_endpoint(fake: FakeDispatch119, make_poster: MakePoster) -> None:
    base = fake.url.removesuffix("/incidents")
    poster = make_poster(fake.url)
    async with aiohttp.ClientSession() as http:

        async def control(doc: object) -> tuple[int, Any]:
            async with http.post(f"{base}/control", json=doc) as r:
                return r.status, await r.json()

        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
        assert (await control({"down": True}))[0] == 200
        e = await refused(poster, delivery())
        assert (e.reason, e.value) == ("http_5xx", 503)

        status, state = await control({"down": False, "fail_next": 1, "status": 429})
        assert status == 200 and state == {"down": False, "delay": 0.0, "fail_next": 1, "status": 429}
        assert (await refused(poster, delivery())).value == 429
        await poster.deliver(delivery())

        assert (await control({"delay": "slow"}))[0] == 400
        assert (await control({"fail_next": 1, "status": 99}))[0] == 400
        assert (await control({"delay": 0.2}))[1]["delay"] == 0.2
        started = time.monotonic()
        await poster.deliver(delivery(2))
        assert time.monotonic() - started >= 0.2
        healthy = {"down": False, "delay": 0.0, "fail_next": 0, "status": 503}
        assert (await control({"reset": True}))[1] == healthy

        async with http.get(fake.url) as r:
            listing = await r.json()
        assert listing["accepted"] == [delivery().event.id, delivery(2).event.id]
        assert set(listing["incidents"]) == set(listing["accepted"])
        assert listing["requests"] == 4


async def test_not_json_is_refused(fake: FakeDispatch119) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(fake.url, data=b"<alarm/>", headers={"Idempotency-Key": "k"}) as r,
    ):
        assert r.status == 415
    assert fake.accepted == []


LAUNCHER = Path(__file__).resolve().parents[2] / "tools" / "fake119"


@pytest.mark.parametrize("how", ["module", "launcher"])
async def test_cli_serves_until_sigterm(make_poster: MakePoster, how: str) -> None:
    port = free_port()
    # the launcher as the docs show it, from a shell whose python3 is not the project's
    command = [sys.executable, "-m", "firegate.tools.fake119"] if how == "module" else [str(LAUNCHER)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if how == "launcher":
        env["PATH"] = "/usr/bin:/bin"
    proc = await asyncio.create_subprocess_exec(
        *command,
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        banner = await asyncio.wait_for(proc.stderr.readline(), 10)
        assert f"http://127.0.0.1:{port}/incidents" in banner.decode()
        await make_poster(f"http://127.0.0.1:{port}/incidents").deliver(delivery())
        line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 5))
        assert line["status"] == 201 and line["key"] == delivery().event.id
        assert line["incident_id"] == delivery().event.id

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
