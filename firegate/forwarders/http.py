"""`HttpPoster`: a destination that POSTs each event as JSON (the 119 dispatch system, webhooks).

One attempt per `deliver` call, bounded by ``timeout``; the courier does the retrying. Every
request carries an ``Idempotency-Key`` (the event id by default), so a retry of a request that
was in fact accepted does not make a second incident on the other side.

How answers map to outcomes:

- 2xx: accepted.
- 409 Conflict: accepted too. With an idempotency key it means "I already have this one", which
  is what a retry after a lost answer gets from a careful receiver.
- 400, 413, 415, 422: the payload itself is refused; sending it again cannot help (not retryable).
- any other 4xx (401, 403, 404, 408, 429 ...), 3xx (never followed), 5xx, timeouts, connection
  and TLS failures: retryable. Credentials, routes and certificates get fixed by people while
  the courier waits.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
from yarl import URL

from firegate.bus.jetstream import tls_context as ssl_context
from firegate.forwarders.delivery import Delivery
from firegate.forwarders.errors import DeliveryFailed, DeliveryRefused

__all__ = ["HttpPoster", "ssl_context"]

log = logging.getLogger(__name__)

# the receiver refused this payload: retrying the same bytes gets the same answer
PAYLOAD_REFUSED = frozenset({400, 413, 415, 422})
_SNIPPET = 200  # characters of a refusal's body kept in the error (and so in the logs)


def _default_body(delivery: Delivery) -> bytes:
    return delivery.data


def _default_key(delivery: Delivery) -> str:
    return delivery.event.id


def _is_tls_failure(exc: BaseException) -> bool:
    """Whether an SSL error is anywhere in the chain (a refused client certificate surfaces late,
    as a reset or disconnect on the first read, with the TLS alert only as the cause)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError | aiohttp.ClientSSLError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


class HttpPoster:
    """A `Destination` that POSTs JSON to ``url``; ``name`` is the metric label (``119``, ``webhook``)."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        timeout: float = 5.0,
        body: Callable[[Delivery], bytes] | None = None,
        idempotency_key: Callable[[Delivery], str] | None = None,
        user_agent: str = "firegate",
    ) -> None:
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self.name = name
        self.url = url
        # what errors and logs show: never credentials embedded in the URL
        self._shown = str(parsed.with_user(None).with_query(None))
        self.timeout = timeout
        self._body = body or _default_body
        self._key = idempotency_key or _default_key
        self._headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        # built now so that a missing or bad certificate file fails at startup, not on the first fire
        self._ssl = ssl_context(tls_ca, tls_cert, tls_key)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # created lazily: a ClientSession belongs to the loop it was made in
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                raise_for_status=False,
            )
        return self._session

    async def deliver(self, delivery: Delivery) -> None:
        key = self._key(delivery)
        data = self._body(delivery)
        headers = {**self._headers, "Idempotency-Key": key}
        try:
            # no redirects: a redirected POST may lose its body or Authorization, or change host
            async with self._client().post(
                self.url, data=data, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                text = (await response.read())[: _SNIPPET * 4].decode("utf-8", "replace")
        except TimeoutError as e:  # aiohttp's connect and read timeouts are TimeoutErrors too
            raise DeliveryFailed("timeout", f"no answer from {self._shown} within {self.timeout} s") from e
        except (aiohttp.ClientError, OSError) as e:
            reason = "tls" if _is_tls_failure(e) else "connect"
            raise DeliveryFailed(reason, f"{self._shown}: {type(e).__name__}: {e}") from e

        if 200 <= status < 300:
            return
        if status == 409:
            log.debug("%s answered 409 to key %s: it already has this event", self._shown, key)
            return
        snippet = " ".join(text.split())[:_SNIPPET]
        detail = f"{self._shown} answered {status}" + (f": {snippet}" if snippet else "")
        if status in PAYLOAD_REFUSED:
            raise DeliveryRefused("http_4xx", detail, value=status)
        if 400 <= status < 500:
            raise DeliveryFailed("http_4xx", detail, value=status)
        if status >= 500:
            raise DeliveryFailed("http_5xx", detail, value=status)
        # a 3xx: the URL moved; ops must update it (redirects are not followed, see above)
        raise DeliveryFailed("http_other", f"{detail} (not followed)", value=status)

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
