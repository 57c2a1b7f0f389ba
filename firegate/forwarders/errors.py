"""Errors of the forwarders layer. Each carries a metric ``reason`` and the offending value."""

from __future__ import annotations

from firegate.errors import FiregateError


class ForwarderError(FiregateError):
    """Root of every error raised by firegate.forwarders."""


class DeliveryError(ForwarderError):
    """An outside system did not accept a delivery: `DeliveryFailed` (trying again later can
    succeed: endpoint down, 5xx, timeout) or `DeliveryRefused` (the payload itself was refused:
    400/413/422, dead-lettered at once, loudly). ``reason`` is the metric label: ``connect``,
    ``timeout``, ``http_5xx``, ``http_4xx``, ``tls``, ``refused``, ``broker``...
    """

    retryable: bool

    def __init__(self, reason: str, detail: str, *, value: object = None) -> None:
        self.reason = reason
        self.detail = detail
        self.value = value
        super().__init__(f"{reason}: {detail}")


class DeliveryFailed(DeliveryError, ConnectionError):
    """The outside system could not be reached or did not take it now: retried."""

    retryable = True


class DeliveryRefused(DeliveryError, ValueError):
    """The outside system refused the payload itself: retrying cannot help."""

    retryable = False


class AlarmError(ForwarderError, ValueError):
    """An operator action the alarm lifecycle refuses (unknown id, already decided, bad reason)."""

    def __init__(self, reason: str, detail: str, value: object = None) -> None:
        self.reason = reason
        self.detail = detail
        self.value = value
        super().__init__(detail)
