"""`firegate sim`: a load run against a center, `firegate sim alarm`: one fire alarm, one latency, or
`firegate sim storm`: the district-wide storm (every device reports within one second).

Every command's devices are in the standard's test state unless `--real` is given: bit 0 of each
status they report is clear (§4: 0 test, 1 normal operation), so their fire alarms reach a center
as test alarms, which firegate's lifecycle never confirms by policy nor sends to 119 as a real
fire. `--real` sends real alarms (bit 0 set), e.g. to try the path to 119. The library functions
(`run_load`, `run_storm`, `one_alarm`, `SimulatedUitd`) send what their `DeviceSettings.test_mode`
says; only the commands choose test mode for their user.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from time import perf_counter
from typing import Any, TypeVar

from firegate.sim.device import DeviceSettings, ExchangeResult, Outcome, SimulatedUitd, UdpSimulatedUitd
from firegate.sim.load import DEFAULT_MIX, FIRST_ADDRESS, Mix, parse_mix, run_load
from firegate.sim.payloads import Kind
from firegate.sim.storm import FAULT_KINDS, FIRE_KINDS, run_storm

_T = TypeVar("_T")
_N = TypeVar("_N", int, float)


def _mix(text: str) -> Mix:
    try:
        return parse_mix(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _delay(text: str) -> float | None:
    if text.strip().lower() in ("never", "none", "-"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'never', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("the delay must be >= 0")
    return value


def _number(kind: Callable[[str], _N], *, zero_ok: bool = False) -> Callable[[str], _N]:
    """An argparse type: a number > 0 (or >= 0 with zero_ok)."""

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value >= 0 if zero_ok else value > 0):
            raise argparse.ArgumentTypeError(f"must be {'>=' if zero_ok else '>'} 0, got {text}")
        return value

    return parse


def _address(text: str) -> int:
    """A 6-byte address as a decimal integer (device ids are the decimal LE address)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 1 << 48:
        raise argparse.ArgumentTypeError(f"an address fits 6 bytes (0 to {(1 << 48) - 1}), got {value}")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share is within 0..1, got {text}")
    return value


REAL_HELP = (
    "send real alarms: bit 0 of every status set (normal operation), so that a center treats "
    "fire and manual-call-point alarms as real fires (its policies may confirm them and send them "
    "to 119). Default: the standard's test state (bit 0 clear), test alarms that firegate never "
    "confirms by policy nor sends to 119 as a real fire"
)
TEST_NOTE = (
    "test mode (status bit 0 clear): test alarms, never confirmed by policy nor sent to 119 as a "
    "real fire; --real for real ones"
)


def _common(p: argparse.ArgumentParser, *, udp: bool = True, test_mode_flag: bool = False) -> None:
    p.add_argument("--host", default="127.0.0.1", help="the center's address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9001, help="the center's port (default 9001)")
    if udp:
        p.add_argument("--udp", action="store_true", help="send over UDP instead of TCP")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--confirm-timeout",
        type=_number(float),
        default=10.0,
        metavar="S",
        help="seconds to wait for a confirm before retransmitting (default 10)",
    )
    p.add_argument(
        "--retries",
        type=_number(int, zero_ok=True),
        default=3,
        help="retransmissions before failing (default 3)",
    )
    p.add_argument(
        "--serial-start",
        type=int,
        choices=(0, 1),
        default=0,
        help="first serial on each connection (default 0)",
    )
    p.add_argument(
        "--connect-timeout",
        type=_number(float),
        default=5.0,
        metavar="S",
        help="seconds to wait for a connection (default 5)",
    )
    p.add_argument("--center-address", type=_address, default=0, help="destination address (default 0)")
    p.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop (auto: uvloop when installed)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--real", action="store_true", help=REAL_HELP)
    if test_mode_flag:
        mode.add_argument(
            "--test-mode",
            action="store_true",
            help="the standard's test mode (status bit 0 clear): the default; kept for older scripts",
        )


def load_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="firegate sim",
        description="Simulated UITDs against a GB/T 26875.3 center: one TCP connection per device, "
        "heartbeats plus a random traffic mix. The devices are in the standard's test state (their "
        "fire alarms are test alarms) unless --real. Exit 0 when nothing failed and every device was "
        "still connected at the end. "
        "`firegate sim alarm --help`: one fire alarm from one device; "
        "`firegate sim storm --help`: every device reports within one second.",
    )
    _common(p)
    p.add_argument("--devices", type=_number(int), default=1, help="simulated UITDs (default 1)")
    p.add_argument(
        "--rate",
        type=_number(float, zero_ok=True),
        default=10.0,
        help="mix items per second over all devices, the mix's own heartbeat share included; "
        "the periodic heartbeats (--heartbeat) come on top (default 10)",
    )
    p.add_argument("--duration", type=_number(float), default=10.0, metavar="S", help="default 10")
    default_mix = ",".join(f"{k}={v}" for k, v in DEFAULT_MIX.items())
    p.add_argument(
        "--mix",
        type=_mix,
        default=parse_mix(default_mix),
        help=f"kind=weight,...; kinds fire, manual, fault, clear, status, uitd, analog, "
        f"main_power, backup_power, heartbeat; the rest of 1 goes to heartbeats (default {default_mix})",
    )
    p.add_argument(
        "--heartbeat",
        type=_number(float, zero_ok=True),
        default=30.0,
        metavar="S",
        help="heartbeat interval per device, 0 for none (default 30)",
    )
    p.add_argument(
        "--ramp",
        type=_number(float, zero_ok=True),
        default=None,
        metavar="S",
        help="seconds over which devices connect and load rises (default: ~2000 devices/s)",
    )
    p.add_argument(
        "--window",
        type=_number(int),
        default=1,
        help="outstanding exchanges per device (default 1, as real UITDs)",
    )
    p.add_argument(
        "--duty-delay",
        type=_delay,
        default=5.0,
        metavar="S|never",
        help="seconds until a duty check (type 91) is answered (default 5)",
    )
    p.add_argument(
        "--first-address",
        type=_address,
        default=FIRST_ADDRESS,
        help=f"address of the first device; the others follow (default {FIRST_ADDRESS})",
    )
    p.add_argument(
        "--drain",
        type=_number(float, zero_ok=True),
        default=1.0,
        metavar="S",
        help="after the run, seconds to collect confirms still in flight (default 1)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable mix")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return p


def alarm_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="firegate sim alarm",
        description="Connect as one UITD, send one fire alarm (type 2, fire bit), print the time from "
        "sending it to the center's confirm. A test alarm (status bit 0 clear: the standard's test "
        "state) unless --real. Exit 0 when the center confirmed the frame.",
    )
    _common(p)
    p.add_argument("--device", type=_address, default=889, help="the UITD's address (default 889)")
    p.add_argument("--manual", action="store_true", help="a manual call point instead of a detector")
    return p


def storm_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="firegate sim storm",
        description="The district-wide storm: N UITDs connect over TCP (ramped over --connect-over "
        "seconds) and settle (a heartbeat each, confirmed); then within --burst-over seconds every "
        "device reports a fault (--fault-kind, default its main-power fault: type 21, bit 3) and "
        "--fire-share of them a fire alarm (type 2) just before it. Devices behave as the standard "
        "says: one frame outstanding, the same bytes resent after --confirm-timeout, up to --retries "
        "times; the center's commands are answered. Ends when every burst frame is confirmed or "
        "failed, or after --timeout. The devices are in the standard's test state (status bit 0 "
        "clear: test alarms and test faults) unless --real. Prints a summary (--json: one JSON "
        "object, with each fire's first-send wall-clock time). Exit 0 only when every burst frame "
        "was confirmed.",
    )
    _common(p, udp=False, test_mode_flag=True)
    p.add_argument("--devices", type=_number(int), default=10_000, help="simulated UITDs (default 10000)")
    p.add_argument(
        "--connect-over",
        type=_number(float, zero_ok=True),
        default=10.0,
        metavar="S",
        help="seconds over which the devices connect (default 10)",
    )
    p.add_argument(
        "--settle-timeout",
        type=_number(float, zero_ok=True),
        default=30.0,
        metavar="S",
        help="after the ramp, seconds to wait for every device to settle; the burst comes anyway "
        "after that (default 30)",
    )
    p.add_argument(
        "--burst-over",
        type=_number(float, zero_ok=True),
        default=1.0,
        metavar="S",
        help="seconds over which the burst's devices start reporting, in random order (default 1)",
    )
    p.add_argument(
        "--fire-share",
        type=_share,
        default=0.01,
        metavar="SHARE",
        help="share of devices that report a fire alarm before their fault, 0..1; at least one "
        "device when > 0 (default 0.01)",
    )
    p.add_argument(
        "--fire-kind",
        choices=tuple(FIRE_KINDS),
        default="detector",
        help="detector (smoke/heat detector) or manual (a manual call point, type 23: with --real, "
        "the center's default policy confirms it at once and forwards it to 119) (default detector)",
    )
    p.add_argument(
        "--fault-kind",
        choices=tuple(FAULT_KINDS),
        default="main_power",
        help="what every device reports: main_power or backup_power (the UITD's own status, type 21), "
        "component (a building component's fault, type 2), none (only the fires) "
        "(default main_power)",
    )
    p.add_argument(
        "--timeout",
        type=_number(float),
        default=60.0,
        metavar="S",
        help="seconds from the burst's start until the run gives up on unanswered frames (default 60)",
    )
    p.add_argument(
        "--heartbeat",
        type=_number(float, zero_ok=True),
        default=30.0,
        metavar="S",
        help="periodic heartbeat interval per device (random phases), 0 for none (default 30)",
    )
    p.add_argument(
        "--first-address",
        type=_address,
        default=FIRST_ADDRESS,
        help=f"address of the first device; the others follow (default {FIRST_ADDRESS})",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed: which devices fire, the order")
    p.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return p


def _run(coro: Coroutine[Any, Any, _T], loop: str) -> _T:
    factory = None
    if loop != "asyncio":
        try:
            import uvloop

            factory = uvloop.new_event_loop
        except ImportError:
            if loop == "uvloop":
                raise SystemExit("firegate sim: uvloop is not installed") from None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _settings(args: argparse.Namespace, **extra: Any) -> DeviceSettings:
    """The devices' settings from the common options: test mode unless --real."""
    return DeviceSettings(
        confirm_timeout=args.confirm_timeout,
        retries=args.retries,
        serial_start=args.serial_start,
        connect_timeout=args.connect_timeout,
        center_address=args.center_address,
        test_mode=not args.real,
        **extra,
    )


def _load(argv: Sequence[str]) -> int:
    parser = load_parser()
    args = parser.parse_args(argv)
    if args.first_address + args.devices > 1 << 48:
        parser.error(f"--first-address {args.first_address} leaves no room for {args.devices} devices")
    try:
        settings = _settings(args, window=args.window, duty_answer_delay=args.duty_delay)
    except ValueError as e:
        parser.error(str(e))
    report = _run(
        run_load(
            args.host,
            args.port,
            devices=args.devices,
            rate=args.rate,
            duration=args.duration,
            mix=args.mix,
            heartbeat_interval=args.heartbeat or None,
            ramp=args.ramp,
            udp=args.udp,
            settings=settings,
            first_address=args.first_address,
            drain=args.drain,
            seed=args.seed,
            progress=not args.quiet,
        ),
        args.loop,
    )
    if settings.test_mode:
        report = replace(report, notes=(*report.notes, TEST_NOTE))
    if args.json:
        print(json.dumps({**report.to_json(), "test_mode": settings.test_mode}, ensure_ascii=False))
    else:
        print(report.render())
    return 0 if report.ok else 1


async def one_alarm(
    host: str,
    port: int,
    *,
    device: int = 889,
    manual: bool = False,
    udp: bool = False,
    settings: DeviceSettings | None = None,
) -> tuple[ExchangeResult | None, float | None]:
    """Send one fire alarm from a fresh device: (its result, seconds to connect). (None, None) when
    no connection was made within the connect timeout. A test alarm when `settings.test_mode`
    (the `firegate sim alarm` default), else a real one (the `DeviceSettings` default)."""
    s = replace(settings or DeviceSettings(), heartbeat_interval=None, heartbeat_on_connect=False)
    cls = UdpSimulatedUitd if udp else SimulatedUitd
    async with cls(device, host, port, settings=s) as uitd:
        began = perf_counter()
        try:
            async with asyncio.timeout(s.connect_timeout):
                await uitd.wait_connected()
        except TimeoutError:
            return None, None
        connect = perf_counter() - began
        try:
            # every exchange is bounded; this bounds a link that keeps dropping mid-exchange too
            async with asyncio.timeout(s.confirm_timeout * (s.retries + 1) + 1.0):
                result = await uitd.send_fire_alarm(manual=manual)
        except TimeoutError:
            kind = Kind.MANUAL if manual else Kind.FIRE
            result = ExchangeResult(Outcome.ABANDONED, kind, None, 0, None, b"")
    return result, connect


def _alarm(argv: Sequence[str]) -> int:
    parser = alarm_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except ValueError as e:
        parser.error(str(e))
    what = "manual call point alarm" if args.manual else "fire alarm"
    if settings.test_mode:
        what = f"test {what}"
    where = f"{args.host}:{args.port}"
    result, connect = _run(
        one_alarm(
            args.host, args.port, device=args.device, manual=args.manual, udp=args.udp, settings=settings
        ),
        args.loop,
    )
    doc: dict[str, Any] = {
        "device": args.device,
        "center": where,
        "kind": "manual" if args.manual else "fire",
        "test": settings.test_mode,
    }
    if result is None:
        doc.update(outcome="no_connection", latency_ms=None)
        text = f"device {args.device}: no connection to {where} within {args.connect_timeout:g} s"
    else:
        latency = None if result.latency is None else round(result.latency * 1000, 3)
        doc.update(
            outcome=str(result.outcome),
            latency_ms=latency,
            serial=result.serial,
            attempts=result.attempts,
            connect_ms=round((connect or 0.0) * 1000, 3),
        )
        tries = f"{result.attempts} transmission{'s' if result.attempts != 1 else ''}"
        if result.ok:
            text = (
                f"device {args.device} -> {where}: {what} confirmed in {latency:.2f} ms "
                f"(serial {result.serial}, {tries})"
            )
            if settings.test_mode:
                text += f"\n{TEST_NOTE}"
        else:
            text = f"device {args.device} -> {where}: {what} {result.outcome} after {tries}"
    print(json.dumps(doc, ensure_ascii=False) if args.json else text)
    return 0 if result is not None and result.ok else 1


def _storm(argv: Sequence[str]) -> int:
    parser = storm_parser()
    args = parser.parse_args(argv)
    if args.first_address + args.devices > 1 << 48:
        parser.error(f"--first-address {args.first_address} leaves no room for {args.devices} devices")
    try:
        settings = _settings(args)
    except ValueError as e:
        parser.error(str(e))
    report = _run(
        run_storm(
            args.host,
            args.port,
            devices=args.devices,
            connect_over=args.connect_over,
            settle_timeout=args.settle_timeout,
            burst_over=args.burst_over,
            fire_share=args.fire_share,
            fire_kind=args.fire_kind,
            fault_kind=args.fault_kind,
            test_mode=settings.test_mode,
            burst_timeout=args.timeout,
            heartbeat_interval=args.heartbeat or None,
            settings=settings,
            first_address=args.first_address,
            seed=args.seed,
            progress=not args.quiet,
        ),
        args.loop,
    )
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print(report.render())
    return 0 if report.ok else 1


def sim_main(argv: list[str]) -> int:
    """`firegate sim [load options]`, `firegate sim load ...`, `firegate sim alarm ...` or
    `firegate sim storm ...`."""
    if argv and argv[0] == "alarm":
        return _alarm(argv[1:])
    if argv and argv[0] == "storm":
        return _storm(argv[1:])
    return _load(argv[1:] if argv and argv[0] == "load" else argv)
