"""Installed codecs, found through the ``firegate.codecs`` entry-point group.

The built-in codecs register the same way as a plugin (see pyproject.toml). An entry point
loads a `LineCodec` or `MessageCodec` subclass, or a callable returning one codec instance
(or class) or a list of them (a pack of declarative dialects). A plugin that fails to load is
kept as `Broken` with its reason, so one bad package never hides the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Literal

from firegate.codecs.api import LineCodec, MessageCodec

GROUP = "firegate.codecs"
log = logging.getLogger("firegate.codecs")

Codec = LineCodec[Any] | MessageCodec
Factory = Callable[..., Codec]


@dataclass(frozen=True, slots=True)
class Installed:
    name: str
    kind: Literal["line", "message"]
    summary: str
    source: str  # the distribution (and version) or file it came from
    make: Factory  # called with the source's codec_options (message codecs) or no arguments


@dataclass(frozen=True, slots=True)
class Broken:
    name: str
    source: str
    reason: str


class UnknownCodec(LookupError):
    def __init__(self, name: str, kind: str, registry: Registry) -> None:
        self.name = name
        broken = registry.broken.get(name)
        if broken is not None:
            text = f"codec {name!r} is installed but broken ({broken.source}): {broken.reason}"
        else:
            names = ", ".join(sorted(n for n, c in registry.codecs.items() if c.kind == kind)) or "none"
            text = f"no {kind} codec named {name!r} is installed (installed: {names})"
        super().__init__(text)


@dataclass(slots=True)
class Registry:
    codecs: dict[str, Installed] = field(default_factory=dict)
    broken: dict[str, Broken] = field(default_factory=dict)

    def add(self, codec: Any, source: str, name: str | None = None) -> None:
        """Register a codec class or instance; raises TypeError for anything else."""
        if isinstance(codec, type) and issubclass(codec, LineCodec | MessageCodec):
            cls = codec
            make: Factory = codec
        elif isinstance(codec, LineCodec | MessageCodec):
            cls = type(codec)
            instance = codec

            def make(*_: Any, **__: Any) -> Codec:
                return instance

        else:
            raise TypeError(f"{codec!r} is not a LineCodec or MessageCodec (class or instance)")
        codec_name = getattr(codec, "name", None) or name
        if not isinstance(codec_name, str) or not codec_name:
            raise TypeError(f"{cls.__name__} has no name")
        if codec_name in self.codecs:
            raise TypeError(f"codec {codec_name!r} is registered twice ({self.codecs[codec_name].source})")
        kind: Literal["line", "message"] = "line" if issubclass(cls, LineCodec) else "message"
        self.codecs[codec_name] = Installed(codec_name, kind, getattr(codec, "summary", ""), source, make)

    def line_codec(self, name: str) -> LineCodec[Any]:
        """The installed line codec ``name``, or the dialect file ``name`` names (a path ending
        .yaml or .yml: a site's own dialect, no packaging); a bad file raises ConfigError."""
        installed = self.codecs.get(name)
        if installed is None and name.endswith((".yaml", ".yml")):
            from firegate.codecs.declarative import load_dialect

            return load_dialect(name)
        if installed is None or installed.kind != "line":
            raise UnknownCodec(name, "line", self)
        codec = installed.make()
        assert isinstance(codec, LineCodec)
        return codec

    def message_codec(self, name: str, options: dict[str, Any] | None = None) -> MessageCodec:
        installed = self.codecs.get(name)
        if installed is None or installed.kind != "message":
            raise UnknownCodec(name, "message", self)
        codec = installed.make(options or {})
        assert isinstance(codec, MessageCodec)
        return codec


def _source(ep: EntryPoint) -> str:
    dist = ep.dist
    where = f"{dist.name} {dist.version}" if dist is not None else "?"
    return f"{where}: {ep.value}"


def _loaded(ep: EntryPoint) -> Iterable[Any]:
    obj = ep.load()
    if isinstance(obj, type | LineCodec | MessageCodec):
        return [obj]
    if callable(obj):
        made = obj()
        return made if isinstance(made, list | tuple) else [made]
    raise TypeError(f"{ep.value} is neither a codec nor a callable returning codecs")


def discover(eps: Iterable[EntryPoint] | None = None, *, dialect_dirs: Iterable[str | Path] = ()) -> Registry:
    """Every installed codec, and the dialect files (*.yaml, *.yml) in ``dialect_dirs``; each
    broken one named with its reason, logged once here."""
    registry = Registry()
    for folder in dialect_dirs:
        _add_dialect_files(registry, Path(folder))
    for ep in eps if eps is not None else entry_points(group=GROUP):
        source = _source(ep)
        try:
            for codec in _loaded(ep):
                origin = getattr(codec, "source", None)  # a pack's dialect file
                registry.add(
                    codec, f"{source} {origin}" if isinstance(origin, str) and origin else source, ep.name
                )
        except Exception as e:  # a plugin's bug, whatever it is, must not stop the others
            reason = f"{type(e).__name__}: {e}"
            registry.broken[ep.name] = Broken(ep.name, source, reason)
            log.error("codec plugin %r cannot be loaded (%s): %s", ep.name, source, reason)
    return registry


def _add_dialect_files(registry: Registry, folder: Path) -> None:
    from firegate.codecs.declarative import load_dialect

    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            registry.add(load_dialect(path), str(path))
        except Exception as e:  # a bad file is named like a broken plugin, the others still load
            reason = f"{type(e).__name__}: {e}"
            registry.broken[path.stem] = Broken(path.stem, str(path), reason)
            log.error("dialect file %s cannot be loaded: %s", path, reason)
