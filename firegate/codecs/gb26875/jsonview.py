"""The decoded-frame JSON (`firegate decode`): a contract other programs read."""

from __future__ import annotations

from typing import Any

from firegate.codecs.gb26875.dataunit import DataUnit, TimeLayout
from firegate.codecs.gb26875.errors import DataUnitError
from firegate.codecs.gb26875.frame import Frame


def data_unit_json(unit: DataUnit) -> dict[str, Any]:
    out: dict[str, Any] = {"type": unit.type, "type_name": unit.type_name}
    if unit.heartbeat:
        out["type_name"] = "heartbeat"
        out["heartbeat"] = True
        out["objects"] = []
        return out
    objects = [obj.json() for obj in unit.objects]
    if unit.layout is TimeLayout.PER_OBJECT and unit.vendor_times:
        for obj, tag in zip(objects, unit.vendor_times, strict=True):
            obj.update(tag.json_fields("time_tag"))
    elif unit.layout is TimeLayout.TRAILING:
        out["time_layout"] = "trailing"
        if unit.vendor_times:
            out.update(unit.vendor_times[0].json_fields("time_tag"))
    out["objects"] = objects
    if not unit.known:
        out["raw"] = unit.raw.hex()
    return out


def frame_to_json(frame: Frame) -> dict[str, Any]:
    out: dict[str, Any] = {
        "serial": frame.serial,
        "version": list(frame.version),
    }
    out.update(frame.time.json_fields("time"))
    out.update(
        {
            "source": frame.source,
            "destination": frame.destination,
            "command": frame.command,
            "command_name": frame.command_name,
            "checksum_ok": frame.checksum_ok,
            "length": len(frame.data),
        }
    )
    if frame.data:
        try:
            unit = frame.data_unit
        except DataUnitError as e:
            out["type"] = frame.data[0]
            out["data_unit_error"] = str(e)
            out["raw"] = frame.data.hex()
        else:
            assert unit is not None
            out.update(data_unit_json(unit))
    return out
