"""`firegate decode` as a capture analysis tool: it shows what a frame says, a reserved command
byte included (the gateway still denies such a frame)."""

from __future__ import annotations

import io
import json

import pytest

from firegate.codecs.gb26875 import CommandError, build_frame, parse_frame
from firegate.tools.decode import run_decode


def _run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    stdin: bytes = b"",
    **kw: bool,
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    rc = run_decode(source, **kw)
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_reserved_command_byte_is_decoded_and_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = build_frame(serial=5, command=7, source=100, destination=0)
    rc, out, err = _run(monkeypatch, capsys, frame.hex())
    doc = json.loads(out)
    assert (doc["command"], doc["command_name"], doc["serial"], doc["source"]) == (7, "reserved", 5, 100)
    assert rc == 0 and "reserved" in err


def test_a_raw_stream_shows_reserved_commands_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = build_frame(serial=1, command=7, source=9, destination=0) + build_frame(
        serial=2, command=2, source=9, destination=0
    )
    rc, out, _ = _run(monkeypatch, capsys, "-", frames, raw=True)
    assert [json.loads(line)["command"] for line in out.splitlines()] == [7, 2]
    assert rc == 0


def test_the_gateway_path_still_refuses_a_reserved_command() -> None:
    with pytest.raises(CommandError):
        parse_frame(build_frame(serial=5, command=7, source=100, destination=0))
    with pytest.raises(CommandError):
        parse_frame(build_frame(serial=5, command=7, source=100, destination=0), verify_checksum=False)
