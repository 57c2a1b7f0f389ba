"""firegate's root exception and the configuration error.

Errors subclass the matching builtin as well, so callers that only know the
builtin (``except ValueError``) still catch them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


class FiregateError(Exception):
    """Root of every error firegate raises on purpose."""


class _Missing:
    """Marks a problem that has no offending value (e.g. a missing file)."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the configuration.

    ``key`` is a dotted path (``gb26875.listen``) or, for file-level problems,
    the file name. ``where`` tells the operator where to look: ``firegate.yaml:3``
    or ``env FIREGATE_GB26875__LISTEN``.
    """

    key: str
    reason: str
    value: object = MISSING
    where: str | None = None

    def __str__(self) -> str:
        text = f"{self.key}: {self.reason}"
        if self.value is not MISSING:
            text += f" (got {self.value!r})"
        if self.where:
            text += f" [{self.where}]"
        return text


class ConfigError(FiregateError, ValueError):
    """A configuration (or site registry) that firegate cannot start with.

    Carries every problem found, not just the first, so one `config check`
    run shows the operator the whole list.
    """

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems: list[ConfigProblem] = list(problems)
        super().__init__(str(self))

    @classmethod
    def single(cls, key: str, reason: str, value: object = MISSING, where: str | None = None) -> ConfigError:
        return cls([ConfigProblem(key, reason, value, where)])

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class StartupError(FiregateError, RuntimeError):
    """`firegate run` cannot start: a port taken, NATS unreachable, a directory not writable.
    Names the setting to look at (``key``) and the value it had."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"{key}: {reason} (got {value!r})")


_URL_PASSWORD = re.compile(r"(//[^:/@\s]+:)[^@/\s]+@")


def mask_url(url: str) -> str:
    """A URL as it may be shown: the password in it (``nats://user:pw@host``) as ***."""
    return _URL_PASSWORD.sub(r"\1***@", url)
