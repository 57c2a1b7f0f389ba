"""Metrics and health over HTTP, for Prometheus and the orchestrator.

``/metrics``  Prometheus text format from the default registry.
``/healthz``  200 while the event loop answers (liveness: restart me if not).
``/readyz``   200 when every registered check passes, else 503 with a JSON body
              naming the failing checks (readiness: send me traffic or not).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from firegate.ops.metrics import watch_event_loop_lag

log = logging.getLogger(__name__)

CheckResult = bool | tuple[bool, str]
# A readiness check: quick, no I/O when sync; an async one is bounded by check_timeout.
Check = Callable[[], CheckResult | Awaitable[CheckResult]]


async def serve(
    app: web.Application,
    host: str,
    port: int,
    shutdown_timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Listen with ``app`` (no access log); the runner's ``cleanup()`` stops it. Port 0: any."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        registry: CollectorRegistry = REGISTRY,
        check_timeout: float = 2.0,
        shutdown_timeout: float = 2.0,
        watch_loop_lag: bool = True,
    ) -> None:
        self.host = host
        self.port = port  # the bound port once started (useful with port 0)
        self._registry = registry
        self._check_timeout = check_timeout
        self._shutdown_timeout = shutdown_timeout
        self._watch_loop_lag = watch_loop_lag
        self._checks: dict[str, Check] = {}
        self._runner: web.AppRunner | None = None
        self._lag_task: asyncio.Task[None] | None = None

    def add_check(self, name: str, check: Check) -> None:
        """Register (or replace) a readiness check returning ok or (ok, detail)."""
        self._checks[name] = check

    def remove_check(self, name: str) -> None:
        self._checks.pop(name, None)

    async def readiness(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Run every check: (all passed, {name: {"ok": bool, "detail": str}})."""
        results: dict[str, dict[str, Any]] = {}
        for name, check in list(self._checks.items()):
            try:
                result = check()
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, self._check_timeout)
                ok, detail = result if isinstance(result, tuple) else (result, "")
            except TimeoutError:
                ok, detail = False, f"no answer within {self._check_timeout} s"
            except Exception as e:  # a broken check means "not ready", never a 500
                log.debug("readiness check %s raised", name, exc_info=True)
                ok, detail = False, f"{type(e).__name__}: {e}"
            results[name] = {"ok": bool(ok), "detail": str(detail)}
        return all(r["ok"] for r in results.values()), results

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self._registry), headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, checks = await self.readiness()
        body = {
            "status": "ready" if ready else "not ready",
            "failing": [name for name, r in checks.items() if not r["ok"]],
            "checks": checks,
        }
        return web.json_response(body, status=200 if ready else 503)

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("HealthServer already started")
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        # no access log: a scrape every few seconds would drown the useful lines
        self._runner = runner = await serve(app, self.host, self.port, self._shutdown_timeout)
        self.port = int(runner.addresses[0][1])
        if self._watch_loop_lag:
            self._lag_task = asyncio.create_task(watch_event_loop_lag(), name="firegate-loop-lag")
        log.info("metrics and health on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and let in-flight requests finish (bounded by shutdown_timeout)."""
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
