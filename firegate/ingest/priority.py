"""What goes first: the one place that says whether what a device reported is a fire.

Every input maps its frames onto the standard's information objects, so this answers for a UITD,
a panel dialect and a sensor alike. A fire is a set fire bit in a status object (system status
type 1, component status type 2, UITD status type 21), or the UITD's manual alarm key in its
operation record (type 24, bit 2; GB 26875.1 4.1.2).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from firegate.codecs.gb26875 import ComponentStatus, InfoObject, SystemStatus, UitdOperation, UitdStatus

UITD_MANUAL_ALARM = 0b100
_FIRE_BIT = 0b10


class Lane(enum.IntEnum):
    """Ingest's queues, served in this order across every connection and input."""

    FIRE = 0  # fire alarms: never shed, never held behind anything else
    NORMAL = 1  # faults, status, analog values, operations
    LINK = 2  # a device's first words on a new connection (its online event): a reconnect storm


def is_fire(obj: InfoObject) -> bool:
    if isinstance(obj, SystemStatus | ComponentStatus | UitdStatus):
        return bool(obj.status & _FIRE_BIT)
    return isinstance(obj, UitdOperation) and bool(obj.operation & UITD_MANUAL_ALARM)


def carries_fire(objects: Iterable[InfoObject]) -> bool:
    return any(is_fire(o) for o in objects)
