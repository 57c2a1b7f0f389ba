"""Gateway metrics (docs/metrics.md).

Every label value is declared here as a Final tuple and its child bound once: `.labels()` per frame
costs four times a bound `.inc()`. ``LABEL_VALUES`` lists them for tests/ops/test_metrics_doc.py,
which requires each in docs/metrics.md and fails on a series with an undeclared value. Callers use
the bound children only.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from firegate.codecs.gb26875.objects import OBJECT_CLASSES
from firegate.codecs.gb26875.tables import READ_REPLY_TYPE, TypeFlag, name_of

PROTOCOLS: Final = ("tcp", "udp", "serial")
COMMAND_NAMES: Final = {1: "control", 2: "send_data", 3: "confirm", 4: "request", 5: "reply", 6: "deny"}
FRAME_COMMANDS: Final = (*COMMAND_NAMES.values(), "other")
# what a UITD uploads; a center-to-device type sent up is counted as `other`
DATA_TYPES: Final = (*(name_of(TypeFlag, t) for t in sorted(OBJECT_CLASSES) if t < 60), "other")
DECODE_REASONS: Final = (
    "checksum",  # the codec's FrameError reasons: denied when the header is readable
    "length",
    "delimiter",
    "command",
    "frame",
    "data_unit",  # confirmed and kept raw
    "direction",  # a control or request from a UITD: denied
    "user_command",  # command 128-255: ignored
    "source_changed",  # a second source address on one connection: denied
    "normalize",  # the normalizer failed on it: confirmed and kept raw
)
# the reasons a session answers DENY (cmd 6) for: a subset of DECODE_REASONS
DENY_REASONS: Final = ("checksum", "length", "delimiter", "command", "frame", "direction", "source_changed")
REPLY_COMMANDS: Final = ("confirm", "deny")
SHED_REASONS: Final = ("rate_limit", "publish_failed", "queue_full")
CLOSE_REASONS: Final = (
    "idle",
    "no_valid_frame",
    "replaced",
    "write_buffer_full",
    "max_connections",
    "unknown_device",
    "wrong_network",  # a registered device from a source network the registry does not allow
    "shutdown",
    "internal_error",
    "not_serving",  # a connection accepted while the gateway is not serving (start-up, stop)
)
COMMAND_ACTIONS: Final = (
    "clock_sync",
    "duty_check",
    "init",
    *(f"read_{t}" for t in sorted(READ_REPLY_TYPE)),
    "other",  # an action not declared here: counted, without making a new series
)
COMMAND_RESULTS: Final = ("ok", "timeout", "denied", "bad_answer", "disconnected", "not_connected")

CONNECTIONS: Final = Gauge("firegate_gateway_connections", "Open UITD connections", ["protocol"])
connections: Final = {p: CONNECTIONS.labels(p) for p in PROTOCOLS}

DEVICES_ONLINE: Final = Gauge("firegate_gateway_devices_online", "Devices heard from within the idle timeout")

FRAMES_IN: Final = Counter(
    "firegate_gateway_frames_received_total", "Frames received from devices", ["protocol", "command"]
)
frames_received: Final = {p: {c: FRAMES_IN.labels(p, c) for c in FRAME_COMMANDS} for p in PROTOCOLS}

DATA_TYPES_IN: Final = Counter(
    "firegate_gateway_data_units_received_total", "Data units received, by kind of type flag", ["type"]
)
data_units: Final = {t: DATA_TYPES_IN.labels(t) for t in DATA_TYPES}

DECODE_ERRORS: Final = Counter(
    "firegate_gateway_decode_errors_total", "Frames or data units that could not be decoded", ["reason"]
)
decode_errors: Final = {r: DECODE_ERRORS.labels(r) for r in DECODE_REASONS}

REPLIES_OUT: Final = Counter("firegate_gateway_replies_sent_total", "Confirms and denies sent", ["command"])
CONFIRMS: Final = REPLIES_OUT.labels("confirm")
DENIES: Final = REPLIES_OUT.labels("deny")

_denies_total = Counter(
    "firegate_gateway_denies_total", "Denies (cmd 6) sent to devices, by reason", ["reason"]
)
denies: Final = {r: _denies_total.labels(r) for r in DENY_REASONS}

SHED: Final = Counter(
    "firegate_gateway_frames_shed_total",
    "Frames not confirmed on purpose (the device retransmits)",
    ["reason"],
)
shed: Final = {r: SHED.labels(r) for r in SHED_REASONS}

CLOSED: Final = Counter(
    "firegate_gateway_connections_closed_total", "Connections closed, by reason", ["reason"]
)
closed: Final = {r: CLOSED.labels(r) for r in CLOSE_REASONS}

RETRANSMISSIONS: Final = Counter(
    "firegate_gateway_retransmissions_total", "Frames received again (same device, serial and bytes)"
)
CONFIRM_LATENCY: Final = Histogram(
    "firegate_gateway_confirm_latency_seconds",
    "From a send-data frame's arrival to its confirm being written",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMANDS: Final = Counter(
    "firegate_gateway_commands_total", "Commands sent down to devices, by outcome", ["action", "result"]
)
commands: Final = {(a, r): COMMANDS.labels(a, r) for a in COMMAND_ACTIONS for r in COMMAND_RESULTS}
CLOCK_SKEW: Final = Histogram(
    "firegate_gateway_device_clock_skew_seconds",
    "Device time tag minus center time on arrival (GB 50440 allows 5 s)",
    buckets=(-300, -60, -5, -1, 0, 1, 5, 60, 300),
)
REFUSED_FIRES: Final = Counter(
    "firegate_gateway_refused_fires_total",
    "Frames carrying a fire alarm from a device the site registry does not admit",
)
CLOCK_SKEW_LIMIT: Final = 5.0  # seconds, GB 50440: a session warns once past it

LABEL_VALUES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "firegate_gateway_connections": {"protocol": PROTOCOLS},
    "firegate_gateway_frames_received_total": {"protocol": PROTOCOLS, "command": FRAME_COMMANDS},
    "firegate_gateway_data_units_received_total": {"type": DATA_TYPES},
    "firegate_gateway_decode_errors_total": {"reason": DECODE_REASONS},
    "firegate_gateway_replies_sent_total": {"command": REPLY_COMMANDS},
    "firegate_gateway_denies_total": {"reason": DENY_REASONS},
    "firegate_gateway_frames_shed_total": {"reason": SHED_REASONS},
    "firegate_gateway_connections_closed_total": {"reason": CLOSE_REASONS},
    "firegate_gateway_commands_total": {"action": COMMAND_ACTIONS, "result": COMMAND_RESULTS},
}


def frames_in(protocol: str, command: int) -> Counter:
    return frames_received[protocol][COMMAND_NAMES.get(command, "other")]


def data_unit(type_flag: int) -> Counter:
    return data_units.get(name_of(TypeFlag, type_flag), data_units["other"])


def decode_error(reason: str) -> Counter:
    """A codec error's reason; one the codec adds later is counted as `frame` until declared."""
    return decode_errors.get(reason, decode_errors["frame"])


def close_reason(reason: str) -> Counter:
    """Bound for every declared reason; an undeclared one (a new caller) still counts, and
    tests/ops/test_metrics_doc.py names it."""
    child = closed.get(reason)
    return child if child is not None else CLOSED.labels(reason)


def command_result(action: str, result: str) -> Counter:
    child = commands.get((action, result))
    return child if child is not None else commands[("other", result)]
