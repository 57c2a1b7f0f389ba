"""NATS permission violations, said so an operator can fix them: which NATS user, which subject,
which firegate setting gave the credentials.

nats-server answers a publish or subscription outside a user's permissions with ``-ERR
'Permissions Violation for Publish to "<subject>"'`` and drops it; nats-py hands that to the
error callback (in lower case) and carries on. Nothing else fails loudly: the request that was
dropped just times out. So the callback logs each refused subject once, at ERROR, and counts
every refusal; a service that needed it keeps retrying (it is not ready meanwhile) and the
log says why. At start, a refused JetStream request (a stream or bucket to open) stops the
start instead, naming the user, the subject and the setting (`refused_start`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from firegate.errors import FiregateError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

_VIOLATION: Final = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.I)


@dataclass(frozen=True, slots=True)
class PermissionViolation:
    operation: str  # publish or subscribe
    subject: str  # as nats-py reports it (lower case)

    @classmethod
    def parse(cls, error: BaseException | str) -> PermissionViolation | None:
        found = _VIOLATION.search(str(error))
        if found is None:
            return None
        operation = "publish" if found.group(1).lower() == "publish" else "subscribe"
        return cls(operation, found.group(2))

    @property
    def inbox(self) -> bool:
        """A refused reply inbox: the user may only use an inbox prefix of its own."""
        return self.operation == "subscribe" and self.subject.lower().startswith("_inbox")

    def explain(self, identity: str) -> str:
        if self.inbox:
            return (
                f"the NATS server refused {identity} its reply inbox {self.subject!r}: set "
                f"nats.inbox_prefix to the prefix that user may subscribe to (the shipped "
                f"config/nats/permissions.conf: _INBOX_<user>)"
            )
        return (
            f"the NATS server refused {self.operation} to {self.subject!r} for {identity}: that user "
            f"lacks the permission (nats-server config, see config/nats/permissions.conf), or the "
            f"credentials are another role's (the subject in lower case, as the client library "
            f"reports it: the server's log names it as sent)"
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """Who firegate connects as: the setting that says so and its value (never a secret)."""

    setting: str
    value: str

    def __str__(self) -> str:
        if self.setting == "nats.user":
            return f"NATS user {self.value!r} (nats.user)"
        if self.setting == "nats.creds_file":
            return f"the NATS credentials in {self.value} (nats.creds_file)"
        if self.setting == "nats.token":
            return "the NATS token (nats.token)"
        return "a NATS client without credentials (nats.user, nats.creds_file and nats.token unset)"


def identity(user: str | None, creds: object | None, token_set: bool, nkey: object | None = None) -> Identity:
    if user:
        return Identity("nats.user", user)
    if creds is not None:
        return Identity("nats.creds_file", str(creds))
    if nkey is not None:
        return Identity("nats.nkey_file", str(nkey))
    if token_set:
        return Identity("nats.token", "***")
    return Identity("nats.user", "")


class NatsPermissionError(FiregateError):
    """The NATS server refused subscriptions this service needs."""

    def __init__(self, operation: str, subjects: list[str]) -> None:
        self.operation, self.subjects = operation, subjects
        super().__init__(f"the NATS server refused {operation} to {', '.join(subjects)}")


@dataclass(slots=True)
class _Refusals:
    """What the server refused this process's connection: a request it refused is dropped and
    only times out, and a refused subscription just never receives anything, so a timeout or a
    service checks here whether a refusal explains it."""

    latest: tuple[PermissionViolation, Identity] | None = None
    refused: set[tuple[str, str]] = field(default_factory=set)  # (operation, subject in lower case)

    def record(self, violation: PermissionViolation, who: Identity) -> None:
        self.latest = (violation, who)
        self.refused.add((violation.operation, violation.subject.lower()))

    async def subscribed(self, nc: NATS, subjects: list[str], wait: int = 5) -> None:
        """After subscribing to ``subjects``: raise NatsPermissionError if the server refused any.
        nats-server may send the refusal after the PONG of the first round trip (about one time
        in ten here), never yet after a second one; `check` catches any later still."""
        for subject in subjects:
            self.refused.discard(("subscribe", subject.lower()))
        await nc.flush(timeout=wait)
        await nc.flush(timeout=wait)
        self.check(subjects)

    def check(self, subjects: list[str]) -> None:
        """Raise NatsPermissionError if the server refused a subscription to any of ``subjects``
        since `subscribed` (a refusal may also come later: after a reconnect, the client
        subscribes again)."""
        denied = [s for s in subjects if ("subscribe", s.lower()) in self.refused]
        if denied:
            raise NatsPermissionError("subscribe", denied)


refusals: Final = _Refusals()


def refused_start(error: BaseException) -> tuple[str, str, str] | None:
    """(setting, value, reason) for a StartupError when ``error`` is a timeout after a refusal."""
    import nats.errors

    if not isinstance(error, TimeoutError | nats.errors.TimeoutError) or refusals.latest is None:
        return None
    violation, who = refusals.latest
    if violation.inbox:
        return "nats.inbox_prefix", violation.subject.split(".", 1)[0], violation.explain(str(who))
    return who.setting, who.value, violation.explain(str(who))
