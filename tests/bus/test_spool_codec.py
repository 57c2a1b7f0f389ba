"""The spool's record framing: round trips, and junk never crashes the reader."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firegate.bus.errors import SpoolRecordError
from firegate.bus.spool import Record, encode_record, scan_records

tokens = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
records = st.builds(
    Record, subject=tokens, msg_id=tokens, payload=st.binary(max_size=300), fire=st.booleans()
)


@given(st.lists(records, max_size=20))
def test_round_trip(batch: list[Record]) -> None:
    data = b"".join(encode_record(r) for r in batch)
    found = scan_records(data)
    assert found.records == batch
    assert found.end == len(data)
    assert not found.damaged
    assert found.ends == sorted(found.ends) and (not batch or found.ends[-1] == len(data))


@given(st.lists(records, min_size=1, max_size=8), st.data())
def test_torn_tail_keeps_every_complete_record(batch: list[Record], data: st.DataObject) -> None:
    encoded = [encode_record(r) for r in batch]
    whole = b"".join(encoded)
    cut = data.draw(st.integers(0, len(whole) - 1))
    found = scan_records(whole[:cut])
    complete = 0
    while complete < len(batch) and sum(map(len, encoded[: complete + 1])) <= cut:
        complete += 1
    assert found.records == batch[:complete]
    assert found.incomplete == (found.end < cut) and not found.corrupt


@given(st.lists(records, min_size=1, max_size=8), st.data())
def test_flipped_byte_is_detected(batch: list[Record], data: st.DataObject) -> None:
    whole = bytearray(b"".join(encode_record(r) for r in batch))
    at = data.draw(st.integers(0, len(whole) - 1))
    whole[at] ^= data.draw(st.integers(1, 255))
    found = scan_records(bytes(whole))
    assert found.records == batch[: len(found.records)]  # only good records, in order
    assert found.damaged


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.integers(0, 50), st.one_of(st.none(), st.integers(1, 10)))
def test_random_bytes_never_crash_the_reader(junk: bytes, start: int, max_records: int | None) -> None:
    found = scan_records(junk, min(start, len(junk)), max_records)
    assert found.end <= len(junk)
    assert len(found.ends) == len(found.records)


@pytest.mark.parametrize(
    ("field", "record"),
    [
        ("subject", Record("", "id", b"")),
        ("msg_id", Record("fire.alarm.1", "", b"")),
        ("subject", Record("x" * 70000, "id", b"")),
    ],
)
def test_encode_rejects_bad_fields(field: str, record: Record) -> None:
    with pytest.raises(SpoolRecordError) as e:
        encode_record(record)
    assert e.value.field == field
