from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from firegate.ops.logging import setup_logging


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_with_extra_fields() -> None:
    out = io.StringIO()
    setup_logging("info", "json", stream=out)
    log = logging.getLogger("firegate.gateway")
    log.info("confirmed %s", "frame", extra={"device": "74565", "serial": 7, "raw": b"\x40\x40"})
    log.debug("hidden")
    try:
        raise ValueError("bad\nframe")
    except ValueError:
        log.exception("decode failed 火警")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == "firegate.gateway"
    assert first["msg"] == "confirmed frame"
    assert first["device"] == "74565" and first["serial"] == 7 and first["raw"] == "4040"
    assert "T" in first["ts"]
    assert second["level"] == "ERROR" and "ValueError: bad" in second["exc"]
    assert second["msg"] == "decode failed 火警"


def test_extra_cannot_overwrite_fixed_fields() -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    logging.getLogger("x").info("real", extra={"msg_id": 1, "level_hint": 2})
    entry = json.loads(out.getvalue())
    assert entry["msg"] == "real" and entry["level"] == "INFO" and entry["msg_id"] == 1


def test_idempotent_and_text() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("INFO", "json", stream=first)
    setup_logging("WARNING", "text", stream=second)
    setup_logging("WARNING", "text", stream=second)
    logging.getLogger("firegate").warning("device offline", extra={"device": "74565"})
    logging.getLogger("firegate").info("not shown")
    assert first.getvalue() == ""
    lines = second.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("WARNING firegate: device offline device=74565")


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        setup_logging("LOUD")
    with pytest.raises(ValueError):
        setup_logging("INFO", "xml")  # type: ignore[arg-type]
