"""The local spool: where events go, durably, while NATS does not answer.

Layout: one directory per priority lane (``fire/``, ``other/``), each an
append-only log of segment files ``<seq>.seg`` plus a ``committed`` file
holding how far the head segment has been replayed. A record is framed as

    u32 body length | u32 CRC32(length bytes + body) | body
    body = u8 version | u8 flags (bit 0: fire) | u16 subject len | u16 msg-id len
           | subject | msg id | payload                      (little-endian)

so a record torn by a crash (or damaged on disk) is detected, and reading
stops there. After a restart firegate never appends to an old segment: the
torn tail stays behind the last good record and new records go to a fresh
segment. Appends are fsync'd (and a new segment's directory too) before
``append`` returns; concurrent appends share one fsync (group commit).

All file work runs on one worker thread: it serializes writers even when a
caller is cancelled (a thread cannot be interrupted mid-write, a lock held by
a cancelled coroutine could be), and keeps the event loop free of fsyncs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, NamedTuple, ParamSpec, Self, TypeVar

from firegate.bus import metrics
from firegate.bus.errors import SpoolClosedError, SpoolError, SpoolFullError, SpoolRecordError

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

_FRAME: Final = struct.Struct("<II")  # body length, crc32
_HEAD: Final = struct.Struct("<BBHH")  # version, flags, subject length, msg id length
VERSION: Final = 1
FLAG_FIRE: Final = 0x01
MAX_BODY: Final = 64 * 1024**2  # far above NATS's max payload; a larger length is damage
_COMMITTED: Final = struct.Struct("<QQI")  # segment seq, offset, crc32 of the first 16 bytes
LANES: Final = ("fire", "other")  # replay order: fire first


@dataclass(frozen=True, slots=True)
class Record:
    """One event as the bus publishes it: subject, JetStream msg id, payload, priority."""

    subject: str
    msg_id: str
    payload: bytes
    fire: bool = False


# -- record codec ---------------------------------------------------------------------


def encode_record(record: Record) -> bytes:
    subject = record.subject.encode()
    msg_id = record.msg_id.encode()
    if not 0 < len(subject) <= 0xFFFF:
        raise SpoolRecordError("subject", record.subject, "must be 1..65535 bytes of UTF-8")
    if not 0 < len(msg_id) <= 0xFFFF:
        raise SpoolRecordError("msg_id", record.msg_id, "must be 1..65535 bytes of UTF-8")
    head = _HEAD.pack(VERSION, FLAG_FIRE if record.fire else 0, len(subject), len(msg_id))
    size = _HEAD.size + len(subject) + len(msg_id) + len(record.payload)
    if size > MAX_BODY:
        raise SpoolRecordError("payload", f"<{len(record.payload)} bytes>", f"record over {MAX_BODY} bytes")
    length = size.to_bytes(4, "little")
    crc = zlib.crc32(
        record.payload, zlib.crc32(msg_id, zlib.crc32(subject, zlib.crc32(head, zlib.crc32(length))))
    )
    return b"".join((length, crc.to_bytes(4, "little"), head, subject, msg_id, record.payload))


def _decode_body(body: bytes) -> Record | None:
    if len(body) < _HEAD.size:
        return None
    version, flags, n_subject, n_msg_id = _HEAD.unpack_from(body)
    end_subject = _HEAD.size + n_subject
    end_msg_id = end_subject + n_msg_id
    if version != VERSION or n_subject == 0 or n_msg_id == 0 or end_msg_id > len(body):
        return None
    try:
        subject = body[_HEAD.size : end_subject].decode()
        msg_id = body[end_subject:end_msg_id].decode()
    except UnicodeDecodeError:
        return None
    return Record(subject, msg_id, body[end_msg_id:], bool(flags & FLAG_FIRE))


class Scan(NamedTuple):
    """What a buffer holds: whole records, where each ends, and what stopped the scan."""

    records: list[Record]
    ends: list[int]  # offset just past each record
    end: int  # offset past the last good record
    incomplete: bool  # stopped at a record cut short by the end of the data (a torn tail)
    corrupt: bool  # stopped at bytes that are no valid record

    @property
    def damaged(self) -> bool:
        return self.incomplete or self.corrupt


def scan_records(data: bytes, start: int = 0, max_records: int | None = None) -> Scan:
    """Decode records from ``data[start:]``; never raises on bad input."""
    records: list[Record] = []
    ends: list[int] = []
    pos = start
    size = len(data)
    incomplete = corrupt = False
    while pos < size and (max_records is None or len(records) < max_records):
        if size - pos < _FRAME.size:
            incomplete = True
            break
        length, crc = _FRAME.unpack_from(data, pos)
        body_start = pos + _FRAME.size
        if length > MAX_BODY:  # no writer produced this
            corrupt = True
            break
        if body_start + length > size:
            incomplete = True
            break
        body = data[body_start : body_start + length]
        record = None
        if zlib.crc32(body, zlib.crc32(data[pos : pos + 4])) == crc:
            record = _decode_body(body)
        if record is None:
            corrupt = True
            break
        records.append(record)
        pos = body_start + length
        ends.append(pos)
    return Scan(records, ends, pos, incomplete, corrupt)


# -- on-disk state --------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_sync_data = getattr(os, "fdatasync", os.fsync)  # an append needs the data and the size, not mtime


@dataclass(slots=True)
class _Segment:
    seq: int
    path: Path
    end: int  # offset past the last good record
    records: int  # records not yet replayed


@dataclass(slots=True)
class _Lane:
    index: int
    name: str
    directory: Path
    segments: list[_Segment] = field(default_factory=list)
    head_offset: int = 0  # replayed bytes of segments[0]
    next_seq: int = 1
    fd: int | None = None  # open for append: always segments[-1]
    records: int = 0
    bytes: int = 0

    def publish_gauges(self) -> None:
        metrics.spool_records[self.name].set(self.records)
        metrics.spool_bytes[self.name].set(self.bytes)


@dataclass(slots=True)
class _AppendJob:
    items: list[tuple[int, bytes]]  # (lane index, encoded record)
    error: OSError | None = None


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    """Records read for replay from one lane's head; commit them with Spool.commit()."""

    lane: int
    seq: int
    start: int
    records: list[Record]
    ends: list[int]

    @property
    def fire(self) -> bool:
        return self.lane == 0


class Spool:
    """Bounded, crash-safe, priority-ordered spool of records.

    ``max_bytes`` bounds what is waiting; past it ``append`` refuses non-fire
    records with SpoolFullError and still takes fire records: a fire alarm is
    never refused.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 256 * 1024**2,
        segment_bytes: int = 4 * 1024**2,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError(f"max_bytes and segment_bytes must be > 0, got {max_bytes}, {segment_bytes}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lanes = [_Lane(i, name, self.directory / name) for i, name in enumerate(LANES)]
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[_AppendJob] = []
        self._queue_lock = threading.Lock()
        self._used = 0  # bytes written or being written, not yet replayed
        self._used_lock = threading.Lock()
        self._nonempty = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = 256 * 1024**2,
        segment_bytes: int = 4 * 1024**2,
    ) -> Spool:
        """Open (or create) a spool and find what a previous run left in it."""
        spool = cls(directory, max_bytes=max_bytes, segment_bytes=segment_bytes)
        await spool.start()
        return spool

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="firegate-spool")
        try:
            await self._run(self._recover)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        if self.pending_records:
            self._nonempty.set()
            log.info(
                "spool %s: %d records (%d fire) from a previous run wait for replay",
                self.directory,
                self.pending_records,
                self._lanes[0].records,
            )

    async def close(self) -> None:
        executor = self._executor
        if executor is None:
            return
        try:
            await self._run(self._flush_and_close)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- state ------------------------------------------------------------------------

    @property
    def pending_records(self) -> int:
        return sum(lane.records for lane in self._lanes)

    @property
    def pending_bytes(self) -> int:
        return sum(lane.bytes for lane in self._lanes)

    def pending_by_lane(self) -> dict[str, int]:
        return {lane.name: lane.records for lane in self._lanes}

    async def wait_nonempty(self) -> None:
        """Return once the spool holds a record (at once if it already does)."""
        await self._nonempty.wait()

    # -- API --------------------------------------------------------------------------

    async def append(self, record: Record) -> None:
        await self.append_many((record,))

    async def append_many(self, records: Sequence[Record]) -> None:
        """Store records durably (fsync'd when this returns).

        Fire records are always written. The others are written only if all
        of them fit under ``max_bytes``; otherwise SpoolFullError is raised
        after the fire records are safely down.
        """
        if self._executor is None:
            raise SpoolClosedError(f"spool {self.directory} is closed")
        encoded = [(0 if r.fire else 1, encode_record(r), r) for r in records]
        other_bytes = sum(len(data) for lane, data, _ in encoded if lane)
        with self._used_lock:
            used = self._used
            fits = not other_bytes or used + other_bytes <= self.max_bytes
            items = [(lane, data) for lane, data, _ in encoded if fits or lane == 0]
            self._used += sum(len(data) for _, data in items)
        if items:
            job = _AppendJob(items)
            with self._queue_lock:
                self._queue.append(job)
            # Shielded: a cancelled caller's records still go down now rather
            # than wait in the queue for the next append.
            assert self._executor is not None
            flush = asyncio.get_running_loop().run_in_executor(self._executor, self._flush)
            await asyncio.shield(flush)
            if job.error is not None:
                metrics.spool_refused["io_error"].inc(len(items))
                raise SpoolError(f"spool {self.directory}: cannot write: {job.error}") from job.error
        if not fits:
            refused = [r for lane, _, r in encoded if lane]
            metrics.spool_refused["full"].inc(len(refused))
            raise SpoolFullError(refused[0].subject, refused[0].msg_id, other_bytes, used, self.max_bytes)

    async def read_batch(self, max_records: int = 256, max_bytes: int = 1024**2) -> SpoolBatch | None:
        """The oldest unreplayed records of the highest-priority non-empty lane (None: empty)."""
        if self._executor is None:
            raise SpoolClosedError(f"spool {self.directory} is closed")
        if max_records < 1 or max_bytes < 1:
            raise ValueError(f"max_records and max_bytes must be >= 1, got {max_records}, {max_bytes}")
        batch = await self._run(self._read_batch, max_records, max_bytes)
        if batch is None and self.pending_records == 0:
            self._nonempty.clear()  # e.g. damaged records skipped: nothing left to wait for
        return batch

    async def commit(self, batch: SpoolBatch, count: int | None = None) -> None:
        """Mark the first ``count`` (default: all) records of ``batch`` as delivered, durably."""
        if self._executor is None:
            raise SpoolClosedError(f"spool {self.directory} is closed")
        count = len(batch.records) if count is None else count
        if not 0 <= count <= len(batch.records):
            raise ValueError(f"count must be 0..{len(batch.records)}, got {count}")
        if count:
            await self._run(self._commit, batch, count)
        if self.pending_records == 0:
            self._nonempty.clear()

    # -- worker-thread side -----------------------------------------------------------

    async def _run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _recover(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(parents=True)
            _fsync_dir(self.directory.parent)
        for lane in self._lanes:
            if not lane.directory.exists():
                lane.directory.mkdir()
                _fsync_dir(self.directory)
            committed_seq, committed_offset = self._read_committed(lane)
            found_paths = {int(p.stem): p for p in lane.directory.glob("*.seg") if p.stem.isdigit()}
            seqs = sorted(found_paths)
            for seq in seqs:
                path = found_paths[seq]
                if seq < committed_seq:  # replayed; a crash came before its deletion
                    path.unlink()
                    continue
                data = path.read_bytes()
                start = min(committed_offset, len(data)) if seq == committed_seq else 0
                found = scan_records(data, start)
                if found.damaged:
                    metrics.spool_discarded_bytes.inc(len(data) - found.end)
                    log.warning(
                        "spool %s: %d bytes after offset %d are a torn or damaged record; "
                        "kept the %d records before them",
                        path,
                        len(data) - found.end,
                        found.end,
                        len(found.records),
                    )
                if not lane.segments:
                    lane.head_offset = start
                lane.segments.append(_Segment(seq, path, found.end, len(found.records)))
                lane.records += len(found.records)
                lane.bytes += found.end - start
            lane.next_seq = max([committed_seq, *seqs]) + 1
            self._drop_replayed(lane)
            lane.publish_gauges()
        self._used = self.pending_bytes

    def _flush(self) -> None:
        """Write every queued job: one write and one fsync per lane for all of them."""
        with self._queue_lock:
            jobs, self._queue = self._queue, []
        if not jobs:
            return
        for lane in self._lanes:
            chunks = [data for job in jobs for i, data in job.items if i == lane.index]
            if not chunks:
                continue
            try:
                self._append(lane, chunks)
            except OSError as e:
                log.error("spool %s: write failed: %s", lane.directory, e)
                failed_bytes = 0
                for job in jobs:
                    mine = [len(data) for i, data in job.items if i == lane.index]
                    if mine:
                        job.error = e
                        failed_bytes += sum(mine)
                with self._used_lock:
                    self._used -= failed_bytes
            lane.publish_gauges()
        if self.pending_records and self._loop is not None:
            self._loop.call_soon_threadsafe(self._nonempty.set)

    def _append(self, lane: _Lane, chunks: list[bytes]) -> None:
        segment = self._writable_segment(lane)
        assert lane.fd is not None
        data = b"".join(chunks)
        try:
            view = memoryview(data)
            while view:
                written = os.write(lane.fd, view)
                view = view[written:]
            _sync_data(lane.fd)
        except OSError:
            # The file may now end in a partial record: never append after it.
            with contextlib.suppress(OSError):
                os.ftruncate(lane.fd, segment.end)
            self._seal(lane)
            raise
        segment.end += len(data)
        segment.records += len(chunks)
        lane.records += len(chunks)
        lane.bytes += len(data)

    def _writable_segment(self, lane: _Lane) -> _Segment:
        if lane.fd is not None and lane.segments[-1].end >= self.segment_bytes:
            self._seal(lane)
        if lane.fd is None:
            seq = lane.next_seq
            path = self._segment_path(lane, seq)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                _fsync_dir(lane.directory)
            except OSError:
                os.close(fd)
                raise
            lane.next_seq = seq + 1
            lane.fd = fd
            if not lane.segments:
                lane.head_offset = 0
            lane.segments.append(_Segment(seq, path, 0, 0))
        return lane.segments[-1]

    def _seal(self, lane: _Lane) -> None:
        if lane.fd is not None:
            fd, lane.fd = lane.fd, None
            os.close(fd)

    def _read_batch(self, max_records: int, max_bytes: int) -> SpoolBatch | None:
        for lane in self._lanes:
            self._drop_replayed(lane)
            while lane.records:
                segment = lane.segments[0]
                start = lane.head_offset
                left = segment.end - start
                with open(segment.path, "rb") as f:
                    f.seek(start)
                    data = f.read(min(left, max_bytes))
                    if len(data) >= _FRAME.size:
                        first = _FRAME.size + _FRAME.unpack_from(data)[0]
                        if len(data) < first <= left:  # one record larger than max_bytes: read it whole
                            data += f.read(first - len(data))
                found = scan_records(data, 0, max_records)
                if found.records:
                    return SpoolBatch(
                        lane.index, segment.seq, start, found.records, [start + end for end in found.ends]
                    )
                # Nothing readable where the segment says records are: damaged
                # since written or recovered. The next segment is still good.
                self._skip_damage(lane, segment, start)
                self._drop_replayed(lane)
        return None

    def _skip_damage(self, lane: _Lane, segment: _Segment, start: int) -> None:
        lost = segment.end - start
        log.error(
            "spool %s: %d bytes (%d records) at offset %d are damaged; skipping them",
            segment.path,
            lost,
            segment.records,
            start,
        )
        metrics.spool_discarded_bytes.inc(lost)
        lane.records -= segment.records
        lane.bytes -= lost
        segment.records = 0
        segment.end = start
        if segment is lane.segments[-1]:
            self._seal(lane)
        with self._used_lock:
            self._used -= lost
        lane.publish_gauges()

    def _commit(self, batch: SpoolBatch, count: int) -> None:
        lane = self._lanes[batch.lane]
        if not lane.segments or lane.segments[0].seq != batch.seq or lane.head_offset != batch.start:
            raise SpoolError(
                f"spool {self.directory}: stale batch (lane {lane.name}, segment "
                f"{batch.seq}, offset {batch.start}) committed twice or out of order"
            )
        segment = lane.segments[0]
        offset = batch.ends[count - 1]
        done_bytes = offset - batch.start
        segment.records -= count
        lane.records -= count
        lane.bytes -= done_bytes
        lane.head_offset = offset
        with self._used_lock:
            self._used -= done_bytes
        if offset < segment.end:  # partly replayed: remember how far, durably
            self._write_committed(lane, segment.seq, offset)
        self._drop_replayed(lane)
        lane.publish_gauges()

    def _drop_replayed(self, lane: _Lane) -> None:
        """Delete fully replayed head segments (the live one too: the next append starts a new one)."""
        removed = False
        while lane.segments and lane.head_offset >= lane.segments[0].end:
            head = lane.segments[0]
            if head is lane.segments[-1]:
                self._seal(lane)
            head.path.unlink(missing_ok=True)
            lane.segments.pop(0)
            lane.head_offset = 0
            removed = True
        if removed:
            _fsync_dir(lane.directory)

    def _flush_and_close(self) -> None:
        self._flush()
        for lane in self._lanes:
            self._seal(lane)

    @staticmethod
    def _segment_path(lane: _Lane, seq: int) -> Path:
        return lane.directory / f"{seq:020d}.seg"

    @staticmethod
    def _read_committed(lane: _Lane) -> tuple[int, int]:
        try:
            data = (lane.directory / "committed").read_bytes()
        except FileNotFoundError:
            return 0, 0
        if len(data) != _COMMITTED.size:
            return 0, 0
        seq, offset, crc = _COMMITTED.unpack(data)
        if zlib.crc32(data[:16]) != crc:
            log.warning(
                "spool %s: committed marker damaged; replaying from the oldest segment", lane.directory
            )
            return 0, 0
        return seq, offset

    @staticmethod
    def _write_committed(lane: _Lane, seq: int, offset: int) -> None:
        head = struct.pack("<QQ", seq, offset)
        data = head + zlib.crc32(head).to_bytes(4, "little")
        tmp = lane.directory / "committed.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, lane.directory / "committed")
        _fsync_dir(lane.directory)
