"""The `firegate` command. Subcommands import what they need only when run: `alarm` must start fast."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _decode(args: argparse.Namespace) -> int:
    from firegate.tools.decode import run_decode

    return run_decode(args.frame, raw=args.raw, pretty=args.pretty)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="firegate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dec = sub.add_parser("decode", help="decode GB/T 26875.3 frames to JSON")
    dec.add_argument("frame", help="a frame as hex, or - to read stdin (one hex frame per line)")
    dec.add_argument("--raw", action="store_true", help="with -, read stdin as a binary stream")
    dec.add_argument("--pretty", action="store_true", help="a readable table with Chinese names")
    dec.set_defaults(func=_decode)
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
