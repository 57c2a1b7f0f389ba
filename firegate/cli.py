"""The `firegate` command. Subcommands import what they need only when run: `alarm` must start fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _decode(args: argparse.Namespace) -> int:
    from firegate.tools.decode import run_decode

    return run_decode(args.frame, raw=args.raw, pretty=args.pretty)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from firegate.config import load_settings
    from firegate.errors import ConfigError
    from firegate.ops.logging import setup_logging

    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        sys.stderr.write(f"firegate: bad configuration:\n{e}\n")
        return 2
    setup_logging(settings.log.level, settings.log.format)
    from firegate.app import run

    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # optional fast path; the default loop works too
        pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run(settings))
    except KeyboardInterrupt:
        return 130
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from firegate.config import config_check

    return config_check(args.file)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="firegate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dec = sub.add_parser("decode", help="decode GB/T 26875.3 frames to JSON")
    dec.add_argument("frame", help="a frame as hex, or - to read stdin (one hex frame per line)")
    dec.add_argument("--raw", action="store_true", help="with -, read stdin as a binary stream")
    dec.add_argument("--pretty", action="store_true", help="a readable table with Chinese names")
    dec.set_defaults(func=_decode)

    run = sub.add_parser("run", help="run the gateway, the bus and the forwarders")
    run.add_argument("--config", help="YAML configuration file (default: embedded defaults)")
    run.set_defaults(func=_run)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    check.set_defaults(func=_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
