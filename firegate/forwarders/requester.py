"""Who sent a request to the alarm API, as the NATS server attests it.

A request that crosses from an operator seat's account into firegate's through a service import
with ``share: true`` carries a ``Nats-Request-Info`` header that the server itself writes (a seat
cannot forge it: the server replaces whatever the seat sent). It names the requester's account
and user. The operator name in the request body is only what the seat claims; the lifecycle keeps
both. On the embedded server (no accounts, no users) nothing is attested.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final

from firegate import subjects

REQUEST_INFO_HEADER: Final = subjects.REQUEST_INFO_HEADER


def attested_user(headers: Mapping[str, str] | None) -> str | None:
    """``<account>/<user>`` from the server's request info, or None when it attests no user."""
    raw = (headers or {}).get(REQUEST_INFO_HEADER)
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(info, dict):
        return None
    account, user = info.get("acc"), info.get("user")
    if not isinstance(account, str) or not account or not isinstance(user, str) or not user:
        return None
    return f"{account}/{user}"
