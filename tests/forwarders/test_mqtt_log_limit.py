"""The third-party ``mqtt`` logger (aiomqtt, paho) is rate-limited: the first of each kind, then
at most one every 10 s with the count of those left out."""

from __future__ import annotations

import logging

import pytest

from firegate.forwarders.mqtt import THIRD_PARTY_LOG_LIMIT, RateLimit

PENDING = "There are %d pending publish calls."  # aiomqtt's, by the thousand under load


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited() -> tuple[logging.Logger, list[str], Clock]:
    clock = Clock()
    logger = logging.getLogger(f"test.rate_limit.{id(clock)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(f"{record.levelname} {record.getMessage()}")

    logger.addHandler(Keep())
    logger.addFilter(RateLimit(10.0, clock=clock))
    return logger, seen, clock


def test_first_of_a_kind_then_a_count_every_10_s(limited: tuple[logging.Logger, list[str], Clock]) -> None:
    logger, seen, clock = limited
    start = clock.now
    for n in range(11, 1011):
        logger.warning(PENDING, n)
        clock.now += 0.005  # 1,000 in 5 s
    assert seen == ["WARNING There are 11 pending publish calls."]
    clock.now = start + 9.99
    logger.warning(PENDING, 12)  # still within 10 s of the first
    clock.now = start + 10.0
    logger.warning(PENDING, 12)
    assert seen[1:] == [
        "WARNING There are 12 pending publish calls. (and 1000 more like it in the last 10 s, not logged)"
    ]
    clock.now += 10.0
    logger.warning(PENDING, 13)  # nothing left out since: as it is
    assert seen[2:] == ["WARNING There are 13 pending publish calls."]


def test_kinds_are_counted_apart_and_info_is_not_limited(
    limited: tuple[logging.Logger, list[str], Clock],
) -> None:
    logger, seen, _ = limited
    for _ in range(3):
        logger.warning(PENDING, 20)
        logger.error("failed to receive on socket: %s", "reset")
        logger.warning("Message queue is full. Discarding message.")
        logger.info("Sending PUBLISH %d", 1)
    assert seen == [
        "WARNING There are 20 pending publish calls.",
        "ERROR failed to receive on socket: reset",
        "WARNING Message queue is full. Discarding message.",
        "INFO Sending PUBLISH 1",
        "INFO Sending PUBLISH 1",
        "INFO Sending PUBLISH 1",
    ]


def test_the_mqtt_logger_is_limited(caplog: pytest.LogCaptureFixture) -> None:
    assert THIRD_PARTY_LOG_LIMIT in logging.getLogger("mqtt").filters
    THIRD_PARTY_LOG_LIMIT._kinds.clear()
    with caplog.at_level(logging.WARNING, logger="mqtt"):
        for n in range(500):
            logging.getLogger("mqtt").warning(PENDING, n)
    assert [r.getMessage() for r in caplog.records if r.name == "mqtt"] == [
        "There are 0 pending publish calls."
    ]
