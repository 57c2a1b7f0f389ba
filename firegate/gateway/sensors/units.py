"""Sensor units onto the standard's analog types (spec table 6).

Each quantity has one analog type, chosen for its resolution at the values sensors report:
pressure in kPa (type 5, 0.1 kPa; type 4 is 0.1 MPa, too coarse for a 0.14 MPa hydrant limit),
level as height (type 2, 0.01 m), temperature (type 3, 0.1 °C), current (type 9, 0.1 A: a
residual current in mA is kept to 0.1 A in the event; thresholds judge the sensor's own value),
voltage (type 8), gas (type 6, %LEL), flow (type 10, L/s), count (type 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from firegate.codecs.gb26875.tables import ANALOG_SCALE

INT16 = (-32768, 32767)


@dataclass(frozen=True, slots=True)
class Quantity:
    name: str
    analog_type: int
    base: str  # the unit of the analog type
    units: dict[str, float]  # unit -> factor to base


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity(
            "pressure", 5, "kPa", {"kpa": 1.0, "mpa": 1000.0, "bar": 100.0, "pa": 0.001, "psi": 6.894757}
        ),
        Quantity("level", 2, "m", {"m": 1.0, "cm": 0.01, "mm": 0.001}),
        Quantity("temperature", 3, "°C", {"°c": 1.0, "c": 1.0, "degc": 1.0, "℃": 1.0, "celsius": 1.0}),
        Quantity("current", 9, "A", {"a": 1.0, "ma": 0.001}),
        Quantity("voltage", 8, "V", {"v": 1.0, "mv": 0.001, "kv": 1000.0}),
        Quantity("gas", 6, "%LEL", {"%lel": 1.0, "lel": 1.0}),
        Quantity("flow", 10, "L/s", {"l/s": 1.0, "l/min": 1 / 60, "m3/h": 1 / 3.6, "m³/h": 1 / 3.6}),
        Quantity("count", 1, "", {"": 1.0, "count": 1.0}),
    )
}


def quantity_of(unit: str | None) -> Quantity | None:
    key = (unit or "").strip().lower()
    return next((q for q in QUANTITIES.values() if key in q.units), None)


def to_base(value: float, unit: str | None, quantity: Quantity) -> float | None:
    """The value in the quantity's base unit; None when the unit is not one of the quantity's."""
    factor = quantity.units.get((unit or "").strip().lower())
    if factor is None and unit is None:
        factor = 1.0  # no unit given: the value is in the base unit
    return None if factor is None else value * factor


def raw_value(base_value: float, quantity: Quantity) -> tuple[int, bool]:
    """The analog object's raw int16 at the type's step; clamped (True) when it does not fit."""
    step = ANALOG_SCALE[quantity.analog_type][0]
    raw = round(base_value / step)
    clamped = min(max(raw, INT16[0]), INT16[1])
    return clamped, clamped != raw
