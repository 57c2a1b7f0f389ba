"""Samples onto the standard's information objects, through a source's point table.

Every sample with a value is an analog value (type 3) of the point's quantity (`units`), its time
tag the sensor's own time: a resent sample is the same object, so the same event id, and the
stream's duplicate window drops it. A point with a threshold or with flags of the sensor's own
also gets a component status (type 2): the fire bit for a fire flag (or a threshold that raises
an alarm), the fault bit for a fault flag (or a threshold that raises a fault), the supervisory
bit for a supervisory threshold. One for each sample whose status differs from the point's
previous one or that carries flags, and one for the newest sample of the point in each message
(so a state lost in a restart is restated at once). The normalizer turns a fire bit into a fire alarm
and the other bits into raised/cleared events by their edges against the point's stored state,
so a state repeated (a resent sample, however late) raises nothing new.

A sample no point entry matches, or whose unit fits no quantity, is unmapped: counted, not stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from firegate.codecs.api import STATUS, Sample
from firegate.codecs.gb26875 import AnalogValue, ComponentStatus, InfoObject, TimeTag
from firegate.config import SensorPoint, SensorThreshold
from firegate.devicetime import device_local
from firegate.gateway.sensors.thresholds import Limit, Thresholds
from firegate.gateway.sensors.units import QUANTITIES, Quantity, quantity_of, raw_value, to_base

_RAISES = {"fault": STATUS["fault"], "alarm": STATUS["fire"], "supervisory": STATUS["supervisory"]}


@dataclass(frozen=True, slots=True)
class Judged:
    limit: Limit
    quantity: Quantity
    bit: int


@dataclass(slots=True)
class Mapped:
    analog: list[InfoObject] = field(default_factory=list)
    status: list[InfoObject] = field(default_factory=list)
    unmapped: int = 0
    clamped: int = 0
    stale: int = 0  # samples older than their point's state: kept as values, not judged


def limits(thresholds: Mapping[str, SensorThreshold]) -> dict[str, Judged]:
    """Thresholds in their quantity's base unit (config validation checked the units)."""
    out: dict[str, Judged] = {}
    for name, t in thresholds.items():
        quantity = quantity_of(t.unit)
        assert quantity is not None

        def base(value: float | None, q: Quantity = quantity, unit: str = t.unit) -> float | None:
            return None if value is None else to_base(value, unit, q)

        hysteresis = base(t.hysteresis) or 0.0
        limit = Limit(base(t.low), base(t.high), hysteresis, t.min_duration)
        out[name] = Judged(limit, quantity, _RAISES[t.raises])
    return out


class Mapper:
    def __init__(self, points: Sequence[SensorPoint], thresholds: Mapping[str, SensorThreshold]) -> None:
        self._points = list(points)
        self._judged = limits(thresholds)
        self.thresholds = Thresholds()
        self._last_status: dict[tuple[str, str], int] = {}  # of points that have a status

    def point_for(self, device: str, point: str) -> SensorPoint | None:
        """The most specific entry: this device and point, this device, this point, any."""
        best: tuple[int, SensorPoint] | None = None
        for entry in self._points:
            if entry.device not in (None, device) or entry.point not in ("*", point):
                continue
            rank = (entry.device is not None) * 2 + (entry.point != "*")
            if best is None or rank > best[0]:
                best = (rank, entry)
        return best[1] if best else None

    def unseeded(self, device: str, samples: Sequence[Sample]) -> dict[str, tuple[SensorPoint, int]]:
        """Points of these samples judged by a threshold whose state this process does not know
        yet: point name -> (its entry, the status bit its threshold raises)."""
        out: dict[str, tuple[SensorPoint, int]] = {}
        for sample in samples:
            entry = self.point_for(device, sample.point)
            judged = self._judged.get(entry.threshold) if entry is not None and entry.threshold else None
            if entry is not None and judged is not None and not self.thresholds.known((device, sample.point)):
                out[sample.point] = (entry, judged.bit)
        return out

    def map(self, device: str, samples: Sequence[Sample], received: datetime) -> Mapped:
        """``samples`` oldest first; a sample without a time takes ``received``."""
        out = Mapped()
        newest = {s.point: s for s in samples}  # a status for the newest of each point, at least
        for sample in samples:
            entry = self.point_for(device, sample.point)
            if entry is None:
                out.unmapped += 1
                continue
            when = sample.time or received
            tag = TimeTag.from_datetime(device_local(when))
            status = STATUS["normal"]
            judged_by = self._judged.get(entry.threshold) if entry.threshold else None
            # what the point measures: as configured, else what its threshold judges, else the unit's
            if entry.quantity:
                quantity: Quantity | None = QUANTITIES[entry.quantity]
            elif judged_by is not None:
                quantity = judged_by.quantity
            else:
                quantity = quantity_of(sample.unit)
            if sample.value is not None:
                value = to_base(sample.value, sample.unit, quantity) if quantity else None
                if quantity is None or value is None:
                    out.unmapped += 1
                    continue
                raw, clamped = raw_value(value, quantity)
                out.clamped += clamped
                out.analog.append(
                    AnalogValue(
                        entry.system_type,
                        entry.system_address,
                        entry.component_type,
                        entry.component_address,
                        quantity.analog_type,
                        raw,
                        tag,
                    )
                )
                if judged_by is not None and judged_by.quantity is quantity:
                    if self.thresholds.stale((device, sample.point), when) and not (
                        sample.flags & set(entry.fire_flags)
                    ):
                        out.stale += 1  # its analog value is kept (stored once by its id), no more
                        continue
                    raised = self.thresholds.judge((device, sample.point), judged_by.limit, value, when)
                    status |= judged_by.bit if raised else 0
            if sample.flags & set(entry.fire_flags):
                status |= STATUS["fire"]
            if sample.flags & set(entry.fault_flags):
                status |= STATUS["fault"]
            key = (device, sample.point)
            changed = self._last_status.get(key) != status
            about_status = judged_by is not None or sample.flags or sample.value is None
            if (about_status or key in self._last_status) and (
                changed or sample.flags or sample is newest.get(sample.point)
            ):
                self._last_status[key] = status
                out.status.append(
                    ComponentStatus.make(
                        entry.system_type,
                        entry.system_address,
                        entry.component_type,
                        entry.component_address,
                        status,
                        entry.description,
                        tag,
                    )
                )
        return out
