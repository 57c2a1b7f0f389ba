from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from firegate.ops.logging import FieldsAdapter, setup_logging


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


def test_fields_adapter_merges_fields_and_json_drops_none() -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    fields: dict[str, object] = {"device": None, "peer": "10.0.0.1:5000"}
    log = FieldsAdapter(logging.getLogger("firegate.gateway"), fields)
    log.info("bad frame before the first valid one", extra={"serial": 3})
    fields["device"] = "74565"  # the session learned its device: later lines carry it
    log.warning("not confirming", extra={"serial": 4})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert "device" not in first and first["peer"] == "10.0.0.1:5000" and first["serial"] == 3
    assert second["device"] == "74565" and second["serial"] == 4 and second["level"] == "WARNING"


def test_text_format_leaves_out_none_fields() -> None:
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    logging.getLogger("firegate").info("closing", extra={"device": None, "reason": "idle"})
    assert out.getvalue().rstrip().endswith("closing reason=idle")


class _Js:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, subject: str, data: bytes, **kwargs: Any) -> None:
        self.published.append(subject)


class _Msg:
    subject = "fire.device.74565"
    data = b"{}"
    headers = None
    metadata = SimpleNamespace(timestamp=None, sequence=SimpleNamespace(stream=5), num_delivered=1)

    async def ack_sync(self, timeout: float) -> None:
        pass


class _FailsThenRefuses:
    name = "webhook"

    def __init__(self) -> None:
        self.calls = 0

    async def deliver(self, delivery: object) -> None:
        from firegate.forwarders.errors import DeliveryFailed, DeliveryRefused

        self.calls += 1
        if self.calls == 1:
            raise DeliveryFailed("http_5xx", "503")
        raise DeliveryRefused("http_4xx", "400 bad payload")

    async def close(self) -> None:
        pass


async def test_courier_retry_and_dead_letter_lines_carry_the_device(caplog: pytest.LogCaptureFixture) -> None:
    from firegate.bus.events import DeviceInfo, Point
    from firegate.forwarders.courier import Courier, CourierSettings

    event = DeviceInfo(
        id="74565.raw.1",
        device="74565",
        site="s1",
        occurred_at=None,
        received_at=datetime.now(UTC),
        raw="",
        info_type=1,
        info_type_name="x",
        info_type_zh="x",
        point=Point(),
        data={},
    )
    js = _Js()
    courier = Courier(
        js,  # type: ignore[arg-type]
        _FailsThenRefuses(),
        CourierSettings("t", ("fire.>",), backoff_initial=0.001, backoff_max=0.001),
    )
    caplog.set_level(logging.INFO, "firegate.forwarders")
    await courier._deliver(_Msg(), event)  # type: ignore[arg-type]
    assert js.published == ["firegate.deadletter.t.74565"]
    retry = next(r for r in caplog.records if "retrying" in r.getMessage())
    dead = next(r for r in caplog.records if "DEAD LETTER" in r.getMessage())
    assert retry.__dict__["device"] == "74565" and retry.__dict__["event_id"] == "74565.raw.1"
    assert dead.__dict__["device"] == "74565" and dead.__dict__["reason"] == "refused"
