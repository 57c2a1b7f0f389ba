"""Each panel's dialect from the codec registry, checked as `firegate run` and `firegate config
check` both need it: a dialect that is not installed (or broken), or a poll mode the dialect
cannot poll in, named by its key (``panels.N.dialect``, ``panels.N.mode``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from firegate.codecs.api import LineCodec
from firegate.codecs.registry import Registry, UnknownCodec
from firegate.errors import ConfigProblem
from firegate.gateway.serial.config import GB26875, Panel


def line_codecs(
    panels: Sequence[Panel], registry: Registry
) -> Iterator[tuple[int, LineCodec[Any] | None, ConfigProblem | None]]:
    """For each panel: its index, and its codec (None for gb26875, served by the gateway's
    session) or the problem with it."""
    for i, panel in enumerate(panels):
        key = f"panels.{i}"
        if panel.dialect == GB26875:
            yield i, None, None
            continue
        try:
            codec = registry.line_codec(panel.dialect)
        except UnknownCodec as e:
            yield i, None, ConfigProblem(f"{key}.dialect", str(e), panel.dialect, where=_broken(e, registry))
            continue
        except Exception as e:  # a plugin that fails to make its codec (a broken dialect file)
            yield i, None, ConfigProblem(f"{key}.dialect", f"{type(e).__name__}: {e}", panel.dialect)
            continue
        if panel.mode == "poll" and not codec.poll():
            why = f"dialect {panel.dialect!r} has no poll frame: use listen"
            yield i, None, ConfigProblem(f"{key}.mode", why, panel.mode)
            continue
        yield i, codec, None


BROKEN = "broken plugin"  # a ConfigProblem's `where` when the dialect is installed but broken


def _broken(error: UnknownCodec, registry: Registry) -> str | None:
    """Installed but failing to load: an install problem, not a typo in the configuration."""
    return BROKEN if error.name in registry.broken else None


def dialect_problems(panels: Sequence[Panel], registry: Registry | None = None) -> list[ConfigProblem]:
    """`firegate config check`: what would stop the start (loads the installed codec plugins)."""
    if not panels:
        return []
    if registry is None:
        from firegate.codecs.registry import discover

        registry = discover()
    return [problem for _, _, problem in line_codecs(panels, registry) if problem is not None]
