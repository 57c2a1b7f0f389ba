"""The alarm lifecycle's request/reply API over NATS: `firegate alarm ...` and operator consoles.

Requests go to ``firegate.alarm.<action>`` (list, confirm, dismiss) with a JSON body; one
lifecycle instance of the queue group answers ``{"ok": true, ...}`` or ``{"ok": false,
"error": <reason>, "detail": <text>}``. This module imports only the standard library and
nats-py: the CLI must start fast (the 3 s confirm-to-119 budget starts at its launch).
"""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client as NATS

from firegate import subjects

PREFIX = subjects.ALARM_API
QUEUE = subjects.ALARM_QUEUE
ACTIONS = ("list", "confirm", "dismiss")


async def call(nc: NATS, action: str, body: dict[str, Any], wait: float = 5.0) -> dict[str, Any]:
    """Ask the running lifecycle; an answer dict whatever happens (never raises for NATS trouble)."""
    return await request(nc, f"{PREFIX}.{action}", body, wait)


async def request(nc: NATS, subject: str, body: dict[str, Any], wait: float = 5.0) -> dict[str, Any]:
    """One JSON request/reply with the lifecycle role (alarms, faults)."""
    import nats.errors

    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=wait)
    except nats.errors.NoRespondersError:
        return {"ok": False, "error": "no_lifecycle", "detail": "no lifecycle service is running"}
    except (TimeoutError, nats.errors.TimeoutError):
        return {"ok": False, "error": "timeout", "detail": f"the lifecycle did not answer in {wait} s"}
    result: dict[str, Any] = json.loads(msg.data)
    return result
