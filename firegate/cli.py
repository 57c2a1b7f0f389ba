"""The `firegate` command. Subcommands import what they need only when run: `alarm` must start fast."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from firegate.errors import StartupError

_T = TypeVar("_T")


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
    if args.role:
        settings = settings.model_copy(update={"roles": list(dict.fromkeys(args.role))})
    from firegate.devicetime import set_device_zone

    # before anything reads a device's time or sends one: time tags carry no zone, so they are
    # read in the device time zone
    set_device_zone(settings.gb26875.device_timezone)
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
    except Exception as e:
        startup = _startup_error(e)
        if startup is None:
            raise
        logging.getLogger("firegate").error(
            "cannot start: %s", startup, extra={"key": startup.key, "value": str(startup.value)}
        )
        return 1
    return 0


def _startup_error(error: BaseException) -> StartupError | None:
    """The StartupError behind a failed start, also from inside a task group's ExceptionGroup."""
    from firegate.errors import StartupError

    if isinstance(error, StartupError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _startup_error(inner)
            if found is not None:
                return found
    return None


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
    import json

    from firegate.gateway.remote import request

    body: dict[str, object] = {}
    if args.action == "duty_check":
        body["timeout_minutes"] = args.minutes
    if args.action == "read":
        body["type"] = args.type
        if args.objects:
            body["objects"] = json.loads(args.objects)

    result = _run_request(args.config, lambda nc: request(nc, args.device, args.action, body, args.timeout))
    if result is None:
        return 2
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))
    return 0 if result.get("ok") else 1


def _alarm(args: argparse.Namespace) -> int:
    """`firegate alarm list|confirm|dismiss`: ask the running lifecycle over NATS (light imports)."""
    import json

    from firegate.forwarders.api import call

    body: dict[str, object] = {}
    if args.action == "list":
        body = {"state": args.state, "site": args.site, "limit": args.limit}
    else:
        body = {"id": args.id, "operator": args.operator or _operator(), "note": args.note}
        if args.action == "dismiss":
            body["reason"] = args.reason

    result = _run_request(args.config, lambda nc: call(nc, args.action, body, args.timeout))
    if result is None:
        return 2
    if not result.get("ok"):
        sys.stderr.write(f"firegate alarm {args.action}: {result.get('error')}: {result.get('detail')}\n")
        return 1
    if args.action == "list":
        rows = result.get("alarms")
        total = result.get("total")
        if isinstance(rows, list) and isinstance(total, int) and total > len(rows):
            sys.stderr.write(f"firegate alarm list: the newest {len(rows)} of {total} (--limit)\n")
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        else:
            _print_alarms(rows if isinstance(rows, list) else [])
        return 0
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        already = f" already (by {result.get('decided_by')})" if result.get("already") else ""
        print(f"incident {result.get('incident')}:{already} {result.get('state')}")
    return 0


def _fault(args: argparse.Namespace) -> int:
    """`firegate fault list`: faults raised and not yet cleared, oldest first."""
    import json

    from firegate.forwarders.api import request

    result = _run_request(
        args.config, lambda nc: request(nc, "firegate.fault.list", {"site": args.site}, args.timeout)
    )
    if result is None:
        return 2
    if not result.get("ok"):
        sys.stderr.write(f"firegate fault list: {result.get('error')}: {result.get('detail')}\n")
        return 1
    rows = result.get("faults")
    rows = rows if isinstance(rows, list) else []
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        _print_faults(rows)
    return 0


def _print_faults(rows: list[Any]) -> None:
    if not rows:
        print("no open faults")
        return
    from firegate.ops.terminal import cell

    print(f"{'RAISED (UTC)':<20} {'OPEN (h)':>8}  {'SITE':<14} {'DEVICE':<12} {'CONDITION':<16} LOCATION")
    for r in rows:
        raised = str(r.get("raised_at") or "")[:19].replace("T", " ")
        hours = float(r.get("open_s") or 0) / 3600
        condition = cell(r.get("condition_zh") or r.get("condition") or "", 16)
        site, device = cell(r.get("site") or "", 14), cell(r.get("device") or "", 12)
        location = r.get("location") or ""
        print(f"{raised:<20} {hours:>8.1f}  {site} {device} {condition} {location}")


def _deadletter(args: argparse.Namespace) -> int:
    """`firegate deadletter list|replay`: events the forwarders could not deliver."""
    import asyncio
    import json
    import os

    from firegate.forwarders.deadletters import DeadLetter, dead_letter, dead_letters, replay

    if args.config:
        from firegate.config import load_settings

        stream = load_settings(args.config).bus.stream
    else:
        stream = os.environ.get("FIREGATE_BUS__STREAM") or "FIRE"

    async def go() -> int:
        nc = await _cli_connect(args.config)
        try:
            return await _until_refused(nc, work(nc))
        finally:
            await nc.close()

    async def work(nc: Any) -> int:
        js = nc.jetstream(timeout=5.0)
        if args.action == "list":
            rows = [d.row() for d in await dead_letters(js, args.limit)]
            if args.json:
                print(json.dumps(rows, ensure_ascii=False))
            elif not rows:
                print("no dead letters")
            for r in rows if not args.json else []:
                print(
                    f"{r['seq']:>6} {r['parked_at']} {r['destination']:<8} {r['reason']:<8} "
                    f"{r['subject']} {r['event_id']}  {r['detail']}"
                )
            return 0
        if args.all:
            chosen = await dead_letters(js, limit=1_000_000)
        else:
            found = [await dead_letter(js, seq) for seq in args.seq]
            missing = [seq for seq, d in zip(args.seq, found, strict=True) if d is None]
            if missing:
                sys.stderr.write(f"firegate deadletter replay: no dead letter {missing}\n")
                return 1
            chosen = [d for d in found if isinstance(d, DeadLetter)]
        done = await replay(js, chosen, stream)
        print(f"replayed {len(done)} of {len(chosen)}: {done}")
        return 0 if len(done) == len(chosen) else 1

    from firegate.bus.errors import NatsConnectError

    try:
        return asyncio.run(go())
    except _Refused:
        pass  # said already
    except NatsConnectError as e:
        _unreachable(e)
    except Exception as e:
        sys.stderr.write(f"firegate deadletter: {type(e).__name__}: {e}\n")
    return 2


def _unreachable(error: Exception) -> None:
    if "authorization violation" in str(error).lower():
        sys.stderr.write(
            f"firegate: the NATS server refused these credentials: {error}\n"
            "  (they come from --config FILE's nats section, else FIREGATE_NATS__USER with\n"
            "  FIREGATE_NATS__PASSWORD or FIREGATE_NATS__PASSWORD_FILE, FIREGATE_NATS__TOKEN[_FILE],\n"
            "  FIREGATE_NATS__NKEY_FILE or FIREGATE_NATS__CREDS_FILE)\n"
        )
        return
    sys.stderr.write(
        f"firegate: cannot reach the running system over NATS: {error}\n"
        "  (its address: nats.url of --config FILE, else FIREGATE_NATS__URL; without a URL the embedded\n"
        "  server on 127.0.0.1 at nats.embedded_port of --config FILE, else FIREGATE_NATS__EMBEDDED_PORT,\n"
        "  default 4223)\n"
    )


def _run_request(
    config: str | None, ask: Callable[[Any], Coroutine[Any, Any, dict[str, Any]]]
) -> dict[str, Any] | None:
    """One request of a CLI command to the running system; None (after one line on stderr, no
    traceback) if NATS is out of reach."""
    import asyncio

    async def go() -> dict[str, Any]:
        nc = await _cli_connect(config)
        try:
            return await _until_refused(nc, ask(nc))
        finally:
            await nc.close()

    try:
        return asyncio.run(go())
    except _Refused:
        return None  # said already, when the server refused it
    except Exception as e:  # the operator is at a console: a message, never a traceback
        _unreachable(e)
        return None


class _Refused(Exception):
    """The NATS server refused what the command asked (printed as it came)."""


async def _until_refused(nc: Any, work: Coroutine[Any, Any, _T]) -> _T:
    """``work``, unless the server refuses part of it first: a refused request is dropped, and
    waiting for its answer would only time out after the refusal was printed."""
    import asyncio
    import contextlib

    task = asyncio.ensure_future(work)
    refusal: asyncio.Future[str] | None = getattr(nc, "firegate_refusal", None)
    if refusal is None:
        return await task
    either: list[asyncio.Future[Any]] = [task, refusal]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise _Refused(refusal.result())


def _operator() -> str:
    import getpass
    import os

    try:
        return os.environ.get("FIREGATE_OPERATOR") or getpass.getuser()
    except OSError:
        return "operator"


async def _cli_connect(config: str | None) -> Any:
    """A NATS client for a one-shot CLI command: the config's credentials if given, else the
    environment's (FIREGATE_NATS__URL, __TOKEN[_FILE], __USER/__PASSWORD[_FILE], __CREDS_FILE,
    __NKEY_FILE, __INBOX_PREFIX)."""
    import asyncio
    import os

    import nats

    from firegate.secrets import read_secret

    options: dict[str, Any] = {}
    if config:
        from firegate.bus.jetstream import connect_options
        from firegate.config import load_settings

        cfg = load_settings(config).nats
        extra = connect_options(cfg)
        if extra["creds"] is not None:
            options["user_credentials"] = os.fspath(extra["creds"])
        if extra["nkey"] is not None:
            options["nkeys_seed"] = os.fspath(extra["nkey"])
        for key in ("tls", "user", "password", "token"):
            if extra[key] is not None:
                options[key] = extra[key]
        if cfg.inbox_prefix:
            options["inbox_prefix"] = cfg.inbox_prefix
    else:
        for key in ("token", "user", "password", "inbox_prefix"):
            value = os.environ.get(f"FIREGATE_NATS__{key.upper()}")
            if value:
                options[key] = value
        for key in ("token", "password"):  # a secret kept in a file
            var = f"FIREGATE_NATS__{key.upper()}_FILE"
            path = os.environ.get(var)
            if path and key not in options:
                try:
                    options[key] = await asyncio.to_thread(read_secret, path)
                except OSError as e:
                    raise SystemExit(f"firegate: {var}: cannot read {path}: {e.strerror}") from None
        for var, option in (("CREDS_FILE", "user_credentials"), ("NKEY_FILE", "nkeys_seed")):
            path = os.environ.get(f"FIREGATE_NATS__{var}")
            if path:
                options[option] = path
    who = f"NATS user {options['user']!r}" if options.get("user") else "these NATS credentials"
    refused: set[str] = set()
    refusal: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def quiet(e: Exception) -> None:  # nats-py's default prints a traceback per failure
        text = str(e)
        if "permissions violation" in text.lower() and text not in refused:
            # the request was dropped, so the command would only time out: say why
            refused.add(text)
            sys.stderr.write(
                f"firegate: the NATS server refused this to {who} ({text.removeprefix('nats: ')}); "
                "ask the NATS administrator for that permission, or use a user allowed it "
                "(nats.user of --config FILE, else FIREGATE_NATS__USER)\n"
            )
            if not refusal.done():
                refusal.set_result(text)

    from firegate.bus.errors import NatsConnectError

    urls = cli_nats_urls(config)
    try:
        async with asyncio.timeout(5):
            nc = await nats.connect(
                urls,
                connect_timeout=3,
                max_reconnect_attempts=1,
                allow_reconnect=False,
                error_cb=quiet,
                **options,
            )
    except Exception as e:
        raise NatsConnectError(urls, 3, e) from e
    nc.firegate_refusal = refusal  # type: ignore[attr-defined]  # _until_refused's stop signal
    return nc


def _print_alarms(rows: list[Any]) -> None:
    if not rows:
        print("no alarms")
        return
    from firegate.ops.terminal import cell

    print(f"{'RECEIVED (UTC)':<20} {'STATE':<10} {'SITE':<14} {'DEVICE':<10} {'LOCATION':<28} ID")
    for r in rows:
        received = str(r.get("received_at", ""))[:19].replace("T", " ")
        print(
            f"{received:<20} {cell(r.get('state', ''), 10)} {cell(r.get('site', ''), 14)} "
            f"{cell(r.get('device', ''), 10)} {cell(r.get('location') or '', 28)} {r.get('id')}"
        )


def _sim(args: argparse.Namespace) -> int:
    from firegate.sim.cli import sim_main

    return sim_main(list(args.rest))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firegate",
        description="Protocol gateway and event bus for fire-safety remote monitoring centers "
        "(GB/T 26875.3 UITDs to NATS JetStream, alarm lifecycle, 119 dispatch).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dec = sub.add_parser("decode", help="decode GB/T 26875.3 frames to JSON")
    dec.add_argument("frame", help="a frame as hex, or - to read stdin (one hex frame per line)")
    dec.add_argument("--raw", action="store_true", help="with -, read stdin as a binary stream")
    dec.add_argument("--pretty", action="store_true", help="a readable table with Chinese names")
    dec.set_defaults(func=_decode)

    run = sub.add_parser("run", help="run the gateway, the bus and the forwarders")
    run.add_argument("--config", help="YAML configuration file (default: embedded defaults)")
    run.add_argument(
        "--role",
        action="append",
        choices=["gateway", "lifecycle", "forwarders"],
        help="run only this part (repeatable; default: the config's roles, all of them)",
    )
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

    alarm = sub.add_parser("alarm", help="list, confirm or dismiss fire alarms (over NATS)")
    alarm_sub = alarm.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = alarm_sub.add_parser("list", help="alarms the lifecycle holds, newest first")
    listing.add_argument("--state", choices=["pending", "confirmed", "dismissed", "merged"])
    listing.add_argument("--site", help="only this site")
    listing.add_argument("--limit", type=int, default=500, help="at most this many rows (default 500)")
    confirm = alarm_sub.add_parser("confirm", help="confirm a real fire: its incident goes to 119")
    confirm.add_argument("id", help="an alarm id (or an incident id)")
    dismiss = alarm_sub.add_parser("dismiss", help="close an alarm's incident as false or test")
    dismiss.add_argument("id", help="an alarm id (or an incident id)")
    dismiss.add_argument("--reason", required=True, choices=["false", "test"])
    for p in (confirm, dismiss):
        p.add_argument("--operator", help="who decides (default: $FIREGATE_OPERATOR, else the login)")
        p.add_argument("--note", help="a free-text note kept with the decision")
    for p in (listing, confirm, dismiss):
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--config", help="find NATS from this configuration file")
        p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
        p.set_defaults(func=_alarm)

    fault = sub.add_parser("fault", help="faults still open (over NATS)")
    fault_sub = fault.add_subparsers(dest="action", required=True, metavar="ACTION")
    fault_list = fault_sub.add_parser("list", help="faults raised and not cleared, oldest first")
    fault_list.add_argument("--site", help="only this site")
    fault_list.add_argument("--json", action="store_true", help="machine-readable output")
    fault_list.add_argument("--config", help="find NATS from this configuration file")
    fault_list.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    fault_list.set_defaults(func=_fault)

    dead = sub.add_parser("deadletter", help="events the forwarders could not deliver: list, replay")
    dead_sub = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    dead_list = dead_sub.add_parser("list", help="the parked events, oldest first")
    dead_list.add_argument("--json", action="store_true", help="machine-readable output")
    dead_list.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    dead_replay = dead_sub.add_parser("replay", help="publish parked events again, then remove them")
    dead_replay.add_argument("seq", type=int, nargs="*", help="dead-letter sequence numbers (see list)")
    dead_replay.add_argument("--all", action="store_true", help="every parked event")
    for p in (dead_list, dead_replay):
        p.add_argument("--config", help="find NATS from this configuration file")
        p.set_defaults(func=_deadletter)

    sim = sub.add_parser(
        "sim", help="simulated UITDs: load generator, or 'sim alarm' for one fire alarm", add_help=False
    )
    sim.add_argument("rest", nargs=argparse.REMAINDER, help="see 'firegate sim --help'")
    sim.set_defaults(func=_sim)

    sub.add_parser("schema", help="write (or --check) the events' JSON Schemas and AsyncAPI document")
    sub.add_parser("codec", help="codec tools for integrators: list, test CAPTURE, new NAME", add_help=False)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = cfg_sub.add_parser(
        "check", help="validate a configuration file (without FILE: the defaults and FIREGATE_* variables)"
    )
    check.add_argument("file", nargs="?", help="the YAML file `firegate run --config` would read")
    check.set_defaults(func=_config_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:  # the simulator owns its options, --help included
        from firegate.sim.cli import sim_main

        return sim_main(argv[1:])
    if argv[:1] == ["codec"]:  # the integrator's commands own their options (firegate.tools.codec)
        from firegate.tools.codec import main as codec_main

        return codec_main(argv[1:])
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
