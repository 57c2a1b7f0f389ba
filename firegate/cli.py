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


def cli_nats_urls(config: str | None) -> list[str]:
    """Where the running system is: the config's nats.url, the environment's, else 127.0.0.1:4223.
    Without --config only the environment is read, keeping these commands quick to start."""
    import os

    if config:
        from firegate.config import load_settings

        return load_settings(config).nats.urls
    url = os.environ.get("FIREGATE_NATS__URL")
    if url:
        return [u.strip() for u in url.split(",") if u.strip()]
    port = os.environ.get("FIREGATE_NATS__EMBEDDED_PORT", "4223")
    return [f"nats://127.0.0.1:{port}"]


def _device(args: argparse.Namespace) -> int:
    import asyncio
    import json

    import nats

    from firegate.gateway.remote import request

    body: dict[str, object] = {}
    if args.action == "duty_check":
        body["timeout_minutes"] = args.minutes
    if args.action == "read":
        body["type"] = args.type
        if args.objects:
            body["objects"] = json.loads(args.objects)

    async def go() -> dict[str, object]:
        nc = await nats.connect(
            cli_nats_urls(args.config), connect_timeout=3, max_reconnect_attempts=1, allow_reconnect=False
        )
        try:
            return await request(nc, args.device, args.action, body, args.timeout)
        finally:
            await nc.close()

    try:
        result = asyncio.run(go())
    except OSError as e:
        sys.stderr.write(f"firegate: cannot reach NATS: {e}\n")
        return 2
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    return 0 if result.get("ok") else 1


def _sim(args: argparse.Namespace) -> int:
    from firegate.sim.cli import sim_main

    return sim_main(list(args.rest))


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

    dev = sub.add_parser("device", help="send a command to a connected UITD (over NATS)")
    dev.add_argument("device", help="device id (the decimal of its address)")
    dev.add_argument("action", choices=["clock_sync", "init", "duty_check", "read"])
    dev.add_argument("--minutes", type=int, default=10, help="duty_check: answer window (min)")
    dev.add_argument("--type", type=int, default=81, help="read: request type (61-68, 81, 84-86, 88)")
    dev.add_argument("--objects", help="read: JSON list of request objects (for 61-68, 84)")
    dev.add_argument("--timeout", type=float, default=45.0, help="seconds to wait for the answer")
    dev.add_argument("--json", action="store_true", help="one line of JSON")
    dev.add_argument("--config", help="find NATS from this configuration file")
    dev.set_defaults(func=_device)

    sim = sub.add_parser(
        "sim", help="simulated UITDs: load generator, or 'sim alarm' for one fire alarm", add_help=False
    )
    sim.add_argument("rest", nargs=argparse.REMAINDER, help="see 'firegate sim --help'")
    sim.set_defaults(func=_sim)

    sub.add_parser("schema", help="write (or --check) the events' JSON Schemas and AsyncAPI document")

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg_sub.add_parser("check", help="validate a configuration file")
    check.add_argument("file")
    check.set_defaults(func=_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:  # the simulator owns its options, --help included
        from firegate.sim.cli import sim_main

        return sim_main(argv[1:])
    if argv[:1] == ["schema"]:
        from firegate.bus.schema import main as schema_main

        return schema_main(argv[1:])
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
