"""Secrets in the configuration: passwords and tokens.

Each secret key ``<name>`` (a pydantic ``SecretStr``: shown as ``**********`` in logs, reprs and
errors; `config check` masks it as ``***``) can instead be given as ``<name>_file``: a file that
holds only the secret (a Docker or Kubernetes secret, a systemd credential), read when the
configuration loads. Environment variables (``FIREGATE_NATS__PASSWORD``, or
``FIREGATE_NATS__PASSWORD_FILE``) work as for every key.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

FILE_SUFFIX = "_file"


def read_secret(path: str | Path) -> str:
    """A secret file's content: the secret, without the line end an editor or `echo` adds."""
    return Path(path).read_text(encoding="utf-8").rstrip("\r\n")


def secret_from_files(data: Any, secret_names: Iterable[str]) -> Any:
    """A section's raw input with each ``<name>_file`` read into ``<name>``. A missing or
    unreadable file is left to the ``<name>_file`` key's own check, which names it."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name in secret_names:
        path = out.get(name + FILE_SUFFIX)
        if path in (None, ""):
            continue
        if out.get(name) not in (None, ""):
            continue  # both given: conflicts() reports it, naming no secret
        try:
            out[name] = read_secret(path)
        except (OSError, UnicodeDecodeError):
            continue
    return out


def conflicts(section: object, secret_names: Iterable[str]) -> list[str]:
    """The secrets given both in clear and as a file, with different values."""
    found = []
    for name in secret_names:
        value, path = getattr(section, name, None), getattr(section, name + FILE_SUFFIX, None)
        if value is None or path is None:
            continue
        try:
            from_file = read_secret(path)
        except (OSError, UnicodeDecodeError):
            continue  # the file key's own check names it
        if value.get_secret_value() != from_file:
            found.append(name)
    return found
