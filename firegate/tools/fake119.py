"""A fake 119 dispatch receiver: stands in for the 119 center's fire information terminal.

For tests and demos, never production. ``POST /incidents`` takes a JSON incident with an
``Idempotency-Key`` header and deduplicates by that key, as the real receiver is expected to;
failures (down, slow, the next n requests failing) can be injected from Python or over
``POST /control``. Run it alone with ``python -m firegate.tools.fake119`` (or ``tools/fake119``).

Incidents: the body's ``incident_id`` names the incident (else its ``id``, else the key) and its
``update`` (int, default 0) orders updates of one incident; the highest update is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiohttp import web

from firegate.ops.http import serve as serve_app


@dataclass(frozen=True, slots=True)
class Received:
    """One ``POST /incidents`` as it arrived, and what it was answered."""

    key: str | None  # the Idempotency-Key header
    body: dict[str, Any] | None  # None when it was not a JSON object
    headers: dict[str, str]
    received_at: float  # time.monotonic(), to measure delays between attempts
    received_wall: datetime  # UTC, for people reading the log
    status: int


class FakeDispatch119:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_receive: Callable[[Received], None] | None = None,
        shutdown_timeout: float = 1.0,
    ) -> None:
        self.host = host
        self.port = port  # the bound port once started (useful with port 0)
        self.token = token
        self._ssl = ssl_context
        self._on_receive = on_receive
        self._shutdown_timeout = shutdown_timeout
        self.requests: list[Received] = []
        self.incidents: dict[str, dict[str, Any]] = {}
        self.accepted: list[str] = []  # unique idempotency keys, in the order first accepted
        self._keys: set[str] = set()
        self._changed = asyncio.Event()  # set on each new acceptance, for wait_for
        self._stopping = asyncio.Event()  # cuts injected delays short on stop
        self._runner: web.AppRunner | None = None
        self.reset()

    # -- failure injection ----------------------------------------------------------

    def reset(self) -> None:
        """Back to healthy: no outage, no delay, no pending failures. Recorded data stays."""
        self.down = False  # answer 503 to every POST /incidents
        self.delay = 0.0  # seconds to wait before answering a POST /incidents
        self._fail_count = 0
        self._fail_status = 503

    def fail_next(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` POSTs to /incidents with ``status`` (recorded, never accepted)."""
        if n < 0 or not 200 <= status <= 599:
            raise ValueError(f"expected n >= 0 and a status 200-599, got {n}, {status}")
        self._fail_count, self._fail_status = n, status

    @property
    def url(self) -> str:
        """The POST URL of incidents."""
        scheme = "https" if self._ssl is not None else "http"
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        host = "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.port}/incidents"

    # a plain timeout, like the test clients' waits: callers are tests and demos
    async def wait_for(self, n_unique: int, timeout: float) -> list[str]:  # noqa: ASYNC109
        """The accepted keys, once at least ``n_unique`` were accepted; TimeoutError after ``timeout`` s."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.accepted) < n_unique:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"{len(self.accepted)} of {n_unique} incidents within {timeout} s") from None
        return list(self.accepted)

    # -- handlers -------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "down": self.down,
            "delay": self.delay,
            "fail_next": self._fail_count,
            "status": self._fail_status,
        }

    async def _post_incident(self, request: web.Request) -> web.Response:
        raw = await request.read()  # received in full; a slow receiver then takes its time
        if self.delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.delay)
        key = request.headers.get("Idempotency-Key")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        status, answer = self._answer(request, key, body)
        received = Received(
            key=key,
            body=body,
            headers=dict(request.headers),
            received_at=time.monotonic(),
            received_wall=datetime.now(UTC),
            status=status,
        )
        self.requests.append(received)
        if self._on_receive is not None:
            self._on_receive(received)
        return web.json_response(answer, status=status)

    def _answer(self, request: web.Request, key: str | None, body: dict[str, Any] | None) -> tuple[int, Any]:
        """Status and JSON answer; records the incident when it is new."""
        if self.down or self._stopping.is_set():
            return 503, {"status": "down"}
        if self._fail_count > 0:
            self._fail_count -= 1
            return self._fail_status, {"status": "injected failure"}
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"status": "unauthorized"}
        if request.content_type != "application/json":
            return 415, {"status": "expected application/json"}
        if body is None:
            return 400, {"status": "expected a JSON object"}
        if not key:
            return 400, {"status": "missing Idempotency-Key"}
        update = body.get("update", 0)
        if not isinstance(update, int) or isinstance(update, bool):
            return 422, {"status": "update must be an integer"}
        if key in self._keys:
            return 200, {"status": "duplicate"}
        incident = str(body.get("incident_id") or body.get("id") or key)
        kept = self.incidents.get(incident)
        if kept is None or update >= kept.get("update", 0):
            self.incidents[incident] = body
        self._keys.add(key)
        self.accepted.append(key)
        self._changed.set()
        return 201, {"status": "accepted", "incident_id": incident}

    async def _get_incidents(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"incidents": self.incidents, "accepted": self.accepted, "requests": len(self.requests)}
        )

    async def _control(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object")
            if doc.get("reset"):
                self.reset()
            if "down" in doc:
                if not isinstance(doc["down"], bool):
                    raise ValueError("down: expected true or false")
                self.down = doc["down"]
            if "delay" in doc:
                delay = doc["delay"]
                if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
                    raise ValueError("delay: expected seconds >= 0")
                self.delay = float(delay)
            if "fail_next" in doc or "status" in doc:
                n, status = doc.get("fail_next", self._fail_count), doc.get("status", 503)
                if not isinstance(n, int) or not isinstance(status, int):
                    raise ValueError("fail_next and status: expected integers")
                self.fail_next(n, status)
        except ValueError as e:  # includes malformed JSON
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(self._state())

    async def _get_control(self, request: web.Request) -> web.Response:
        return web.json_response(self._state())

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeDispatch119 already started")
        self._stopping.clear()
        app = web.Application()
        app.router.add_post("/incidents", self._post_incident)
        app.router.add_get("/incidents", self._get_incidents)
        app.router.add_post("/control", self._control)
        app.router.add_get("/control", self._get_control)
        app.router.add_get("/healthz", self._healthz)
        self._runner = runner = await serve_app(app, self.host, self.port, self._shutdown_timeout, self._ssl)
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        self._stopping.set()  # delayed requests answer 503 now instead of holding up the stop
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeDispatch119:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


# -- command line ---------------------------------------------------------------------


def _print_line(received: Received) -> None:
    body = received.body or {}
    line = {
        "at": received.received_wall.isoformat(),
        "status": received.status,
        "key": received.key,
        "incident_id": body.get("incident_id") or body.get("id"),
        "update": body.get("update"),
        "body": received.body,
    }
    print(json.dumps(line, ensure_ascii=False, default=str), flush=True)


def _server_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:  # mutual TLS: only clients with a certificate from this CA
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fake119",
        description="A fake 119 dispatch receiver for tests and demos: prints one JSON line per POST.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8119)
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN'")
    p.add_argument("--cert", help="serve HTTPS with this certificate (PEM), with --key")
    p.add_argument("--key", help="the private key of --cert (PEM)")
    p.add_argument("--client-ca", help="require client certificates issued by this CA (PEM)")
    return p


async def serve(args: argparse.Namespace) -> None:
    ctx = _server_context(args.cert, args.key, args.client_ca) if args.cert else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with FakeDispatch119(
        args.host, args.port, token=args.token, ssl_context=ctx, on_receive=_print_line
    ) as fake:
        print(
            f"fake 119 receiving on {fake.url} (POST /control to inject failures)",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (args.cert is None) != (args.key is None):
        parser().error("--cert and --key go together")
    if args.client_ca and not args.cert:
        parser().error("--client-ca needs --cert and --key")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(serve(args))
    except OSError as e:  # the port is taken, a certificate file is missing...
        print(f"fake119: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
