"""`firegate codec list|test|new`: the integrator's commands.

- ``list``: the installed codecs (entry-point group ``firegate.codecs``) and the broken ones.
- ``test``: replay a capture through a codec, print the events the live path would store (JSON,
  one per line) and every framing/decoding error with its reason and byte offset.
- ``new``: a plugin package from the template, with its tests and a golden capture.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections import Counter
from datetime import datetime
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from firegate.codecs.api import MessageCodec
from firegate.codecs.errors import CodecError
from firegate.codecs.registry import Registry, UnknownCodec, discover
from firegate.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firegate codec", description="codec tools for integrators: list, test a capture, new plugin"
    )
    codec_sub = parser.add_subparsers(dest="codec_command", required=True, metavar="ACTION")

    listing = codec_sub.add_parser("list", help="installed codecs (and broken plugins, with the reason)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument(
        "--dialects", action="append", default=[], metavar="DIR", help="also dialect files here"
    )

    test = codec_sub.add_parser(
        "test",
        help="replay a capture through a codec: events as JSON lines (a message codec: its samples)",
        description="A line codec's capture is raw bytes or hex text. A message (MQTT payload) "
        "codec's capture is one message a line: its topic, a space, its payload as sent (# comments).",
    )
    test.add_argument("capture", help="a capture file (raw bytes, hex text or messages), or - for stdin")
    test.add_argument("--codec", required=True, help="a codec name (see list) or a dialect file (.yaml)")
    form = test.add_mutually_exclusive_group()
    form.add_argument("--hex", dest="form", action="store_const", const="hex", help="the capture is hex text")
    form.add_argument(
        "--raw", dest="form", action="store_const", const="raw", help="the capture is raw bytes"
    )
    test.add_argument("--device", default="panel-1", help="the line's device id (default panel-1)")
    test.add_argument("--options", help="the line's codec_options as JSON")
    test.add_argument("--points", metavar="FILE", help="a point table CSV (the panels' points_file)")
    test.add_argument("--at", help="device time for frames without one, ISO 8601 (default: now)")
    test.add_argument("--strict", action="store_true", help="exit 1 when there were framing/decoding errors")
    test.add_argument(
        "--dialects", action="append", default=[], metavar="DIR", help="also dialect files here"
    )

    new = codec_sub.add_parser("new", help="create a codec plugin package from the template")
    new.add_argument("name", help="the codec's name: lower-case letters, digits, - or _")
    new.add_argument("--dir", default=".", help="where to create firegate-codec-NAME/ (default: here)")
    return parser


def main(argv: list[str]) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    command: str = args.codec_command
    try:
        if command == "list":
            return _list(discover(dialect_dirs=args.dialects), args.json)
        if command == "test":
            return _test(args)
        return _new(args.name, Path(args.dir))
    except (UnknownCodec, ConfigError, ValueError, OSError) as e:
        sys.stderr.write(f"firegate codec {command}: {e}\n")
        return 2


def _list(registry: Registry, as_json: bool) -> int:
    codecs = sorted(registry.codecs.values(), key=lambda c: (c.kind, c.name))
    broken = sorted(registry.broken.values(), key=lambda b: b.name)
    if as_json:
        doc = {
            "codecs": [
                {"name": c.name, "kind": c.kind, "source": c.source, "summary": c.summary} for c in codecs
            ],
            "broken": [{"name": b.name, "source": b.source, "reason": b.reason} for b in broken],
        }
        print(json.dumps(doc, ensure_ascii=False))
        return 0
    # the source (distribution and object) last: it is long, and the columns before it stay aligned
    from firegate.ops.terminal import cell

    print(f"{'NAME':<16} {'KIND':<8} {'SUMMARY':<60} SOURCE")
    for c in codecs:
        print(f"{cell(c.name, 16)} {c.kind:<8} {cell(c.summary, 60)} {c.source}")
    for b in broken:
        print(f"{cell(b.name, 16)} {'BROKEN':<8} {cell(b.reason, 60)} {b.source}")
    return 0


def _test(args: argparse.Namespace) -> int:
    from firegate.codecs.replay import read_capture, replay

    options = json.loads(args.options) if args.options else {}
    if not isinstance(options, dict):
        raise ValueError("--options must be a JSON object")
    registry = discover(dialect_dirs=args.dialects)
    data = sys.stdin.buffer.read() if args.capture == "-" else Path(args.capture).read_bytes()
    installed = registry.codecs.get(args.codec)
    if installed is not None and installed.kind == "message":
        return _test_messages(registry.message_codec(args.codec, options), data, args.strict)
    codec = registry.line_codec(args.codec)
    data = read_capture(data, args.form or "auto")
    points = None
    if args.points:
        from firegate.gateway.serial.config import read_points_file
        from firegate.gateway.serial.points import PanelPoints

        points = PanelPoints(read_points_file(Path(args.points)))
    at = datetime.fromisoformat(args.at) if args.at else None
    if at is not None and at.tzinfo is not None:
        from firegate.devicetime import device_zone

        at = at.astimezone(device_zone()).replace(tzinfo=None)  # device time carries no zone
    result = asyncio.run(replay(codec, [data], device=args.device, options=options, points=points, at=at))
    for item in result.items:
        print(json.dumps(item, ensure_ascii=False))
    reasons = Counter(e["error"] for e in result.errors)
    summary = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "no errors"
    sys.stderr.write(f"{len(data)} bytes: {len(result.events)} events; {summary}\n")
    return 1 if args.strict and result.errors else 0


def _test_messages(codec: MessageCodec, data: bytes, strict: bool) -> int:
    """Each line ``TOPIC PAYLOAD``: the samples the codec reads (which events they make depends
    on the sensor source's point table and thresholds), and every payload it cannot read."""
    samples = errors = messages = 0
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(b"#"):
            continue
        raw_topic, _, payload = line.strip().partition(b" ")
        topic = raw_topic.decode("utf-8", "replace")
        messages += 1
        where: dict[str, object] = {"line": number, "topic": topic}
        try:
            decoded = codec.decode(payload.strip(), topic)
        except CodecError as e:
            errors += 1
            print(json.dumps({"error": e.reason, **where, "message": str(e)}, ensure_ascii=False))
            continue
        for sample in decoded:
            samples += 1
            doc = {
                **where,
                "device": sample.device,
                "point": sample.point,
                "time": sample.time.isoformat() if sample.time is not None else None,
                "value": sample.value,
                "unit": sample.unit,
                "flags": sorted(sample.flags),
            }
            print(json.dumps(doc, ensure_ascii=False))
    sys.stderr.write(f"{messages} messages: {samples} samples; {errors} unreadable\n")
    return 1 if strict and errors else 0


NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _new(name: str, where: Path) -> int:
    if not NAME.match(name):
        raise ValueError(
            f"{name!r}: a codec name is lower-case letters, digits, - or _ (starting with a letter)"
        )
    module = "firegate_codec_" + name.replace("-", "_")
    words = re.split(r"[-_]", name)
    names = {
        "__NAME__": name,
        "__DIST__": f"firegate-codec-{name}",
        "__MODULE__": module,
        "__CLASS__": "".join(w[:1].upper() + w[1:] for w in words) + "Codec",
    }
    root = where / names["__DIST__"]
    if root.exists():
        raise ValueError(f"{root} exists already")
    template = resources.files("firegate.codecs") / "template"
    _render(template, root, names)
    _write_golden(root, module, names["__CLASS__"])
    # a path, never a bare name (pip would look that up on the package index), and firegate's
    # own interpreter: the plugin must land in the environment firegate runs from
    path = str(root) if root.is_absolute() else f"./{root}"
    python = sys.executable
    print(f"created {root}")
    print(f"  install it: {python} -m pip install -e '{path}[test]'   (then: firegate codec list)")
    print(f"  test it:    {python} -m pytest {path}")
    return 0


def _render(source: Traversable, target: Path, names: dict[str, str]) -> None:
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name == "__pycache__":
            continue
        name = "." + item.name.removeprefix("dot-") if item.name.startswith("dot-") else item.name  # dotfiles
        for token, value in names.items():
            name = name.replace(token, value)
        if item.is_dir():
            _render(item, target / name, names)
            continue
        text = item.read_text(encoding="utf-8")
        for token, value in names.items():
            text = text.replace(token, value)
        (target / name.removesuffix(".tmpl")).write_text(text, encoding="utf-8")


def _write_golden(root: Path, module: str, cls: str) -> None:
    """The generated capture's golden events, made by the generated codec itself."""
    import importlib

    from firegate.codecs.testing import check_golden

    sys.path.insert(0, str(root))
    try:
        codec = getattr(importlib.import_module(f"{module}.codec"), cls)()
        data = root / "tests" / "data"
        check_golden(codec, data / "capture.hex", data / "capture.golden.json", regenerate=True)
    finally:
        sys.path.remove(str(root))
        for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            del sys.modules[loaded]
