"""Every NATS subject, queue group and header name firegate uses, in one place: they are
contracts other programs are built against (docs/subscriber-119.md, the AsyncAPI document)."""

from __future__ import annotations

from typing import Final

EVENTS: Final = "fire"  # fire.<kind>.<device or site>, stored in JetStream
COMMANDS: Final = "firegate.cmd"  # firegate.cmd.<device>.<action>: a command down to a device
PRESENCE: Final = "firegate.presence"  # firegate.presence.<device>: which gateway holds it
ALARM_API: Final = "firegate.alarm"  # firegate.alarm.<action>: the alarm lifecycle's API
ALARM_QUEUE: Final = "firegate-lifecycle"
FAULT_LIST: Final = "firegate.fault.list"  # the open faults, from the fault tracker
FAULT_QUEUE: Final = "firegate-faults"
DEAD_LETTERS: Final = "firegate.deadletter"  # firegate.deadletter.<destination>.<reason>

MSG_ID_HEADER: Final = "Nats-Msg-Id"  # JetStream's deduplication key: the event id
REQUEST_INFO_HEADER: Final = "Nats-Request-Info"  # set by the server across a service import
