"""docs/subscriber-119.md says in words where the POST goes, and firegate does what it says."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from firegate.bus.events import FaultRaised, Point
from firegate.forwarders.delivery import Delivery
from firegate.forwarders.http import HttpPoster

PAGE = Path(__file__).resolve().parents[2] / "docs" / "subscriber-119.md"


def documented_example() -> tuple[str, str]:
    """The page's (url, request path) example of where the POST goes."""
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert "The POST goes to exactly the URL written in `dispatch119.url`" in text
    m = re.search(r"With `dispatch119\.url: (\S+)` the request line is `POST (\S+)`", text)
    assert m, "subscriber-119.md: give an example url and the request line it makes"
    return m.group(1), m.group(2)


def delivery(update: int) -> Delivery:
    event = FaultRaised(
        id=f"74565.2.{update}.fault",
        device="74565",
        site="S",
        occurred_at=None,
        received_at=datetime.now(UTC),
        condition="fault",
        point=Point(),
    )
    return Delivery(
        event=event, subject=event.subject, data=event.model_dump_json().encode(), stream_seq=update
    )


async def test_the_post_goes_to_exactly_the_configured_path() -> None:
    url, request_path = documented_example()
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path_qs}")
        return web.Response(status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    parts = urlsplit(url)
    poster = HttpPoster(f"http://127.0.0.1:{port}{parts.path}?{parts.query}", name="119", timeout=2.0)
    try:
        await poster.deliver(delivery(1))
        await poster.deliver(delivery(2))  # an update: the same path
    finally:
        await poster.close()
        await runner.cleanup()
    assert seen == [f"POST {request_path}"] * 2
