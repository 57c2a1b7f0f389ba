"""Every `firegate sim` command sends test alarms unless `--real`: bit 0 of every status object on
the wire is clear (the standard's test state) by default, and set with `--real`.

The center here is the codec-only fake (tests/sim/center.py); what firegate does with either kind
of alarm is tested through processes in tests/integration/test_sim_test_mode.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from firegate.codecs.gb26875 import ComponentStatus, Frame, InfoObject, SystemStatus, UitdStatus
from firegate.sim import sim_main
from tests.sim.center import Center, Received

StatusObject = ComponentStatus | SystemStatus | UitdStatus


def uploads(r: Received) -> bool:
    return r.frame.command == 2 and not r.frame.is_heartbeat


def objects(frames: list[Frame]) -> list[InfoObject]:
    units = [f.data_unit for f in frames]
    return [o for u in units if u is not None for o in u.objects]


def statuses(frames: list[Frame]) -> list[StatusObject]:
    return [o for o in objects(frames) if isinstance(o, StatusObject)]


async def run_cli(argv: list[str]) -> int:
    """sim_main runs its own event loop: in a worker thread, bounded."""
    async with asyncio.timeout(30):
        return await asyncio.to_thread(sim_main, [*argv, "--loop", "asyncio"])


@pytest.mark.parametrize("manual", [False, True])
@pytest.mark.parametrize("real", [False, True])
async def test_cli_alarm_is_a_test_alarm_unless_real(
    capsys: pytest.CaptureFixture[str], manual: bool, real: bool
) -> None:
    extra = [*(["--manual"] if manual else []), *(["--real"] if real else [])]
    async with Center() as center:
        rc = await run_cli(["alarm", "--port", str(center.port), "--device", "889", "--json", *extra])
        frames = center.frames(uploads)
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["outcome"] == "confirmed" and doc["test"] is (not real)
    (alarm,) = objects(frames)
    assert isinstance(alarm, ComponentStatus) and alarm.fire
    assert alarm.component_type in ({23} if manual else {31, 42})
    assert bool(alarm.status & 0b1) is real  # bit 0: 1 normal operation, 0 test
    assert alarm.test_mode is (not real)


async def test_cli_alarm_text_says_test_mode(capsys: pytest.CaptureFixture[str]) -> None:
    async with Center() as center:
        assert await run_cli(["alarm", "--port", str(center.port), "--manual"]) == 0
        out = capsys.readouterr().out
        assert "test manual call point alarm confirmed in" in out and "--real" in out
        assert await run_cli(["alarm", "--port", str(center.port), "--manual", "--real"]) == 0
        out = capsys.readouterr().out
    assert "manual call point alarm confirmed in" in out and "test" not in out


LOAD = ["--devices", "3", "--rate", "60", "--duration", "1", "--heartbeat", "0", "--quiet", "--json"]
MIX = ["--mix", "fire=0.3,manual=0.3,status=0.2,uitd=0.2"]  # nothing but status objects


@pytest.mark.parametrize("real", [False, True])
async def test_cli_load_sends_test_mode_statuses_unless_real(
    capsys: pytest.CaptureFixture[str], real: bool
) -> None:
    async with Center() as center:
        argv = ["--port", str(center.port), *LOAD, *MIX, "--seed", "5", *(["--real"] if real else [])]
        rc = await run_cli(argv)
        frames = center.frames(uploads)
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["ok"] and doc["test_mode"] is (not real)
    assert any("test mode" in n for n in doc["notes"]) is (not real)
    sent = statuses(frames)
    assert len(sent) == len(objects(frames)) > 10
    assert any(isinstance(o, ComponentStatus) and o.fire for o in sent)  # alarms among them
    assert all(o.test_mode is (not real) for o in sent)


STORM = ["storm", "--devices", "6", "--connect-over", "0.1", "--burst-over", "0.1", "--quiet", "--json"]


@pytest.mark.parametrize(("flags", "test_mode"), [([], True), (["--test-mode"], True), (["--real"], False)])
async def test_cli_storm_sends_test_mode_unless_real(
    capsys: pytest.CaptureFixture[str], flags: list[str], test_mode: bool
) -> None:
    async with Center() as center:
        argv = [*STORM, "--port", str(center.port), "--fire-share", "0.5", "--fire-kind", "manual", *flags]
        rc = await run_cli([*argv, "--seed", "2"])
        frames = center.frames(uploads)
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["ok"] and doc["test_mode"] is test_mode
    sent = statuses(frames)
    assert len(sent) == doc["burst_frames"] == 9  # 3 manual call points, 6 main-power faults
    assert sum(1 for o in sent if isinstance(o, ComponentStatus) and o.fire) == 3
    assert all(o.test_mode is test_mode for o in sent)


def test_cli_storm_refuses_real_with_test_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        sim_main(["storm", "--real", "--test-mode"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["load"], ["alarm"], ["storm"]])
def test_every_command_documents_the_real_flag(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        sim_main([*command, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--real" in out and "test" in out
