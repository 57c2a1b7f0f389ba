"""Process limits and claims a gateway holding thousands of connections needs."""

from __future__ import annotations

import os
from pathlib import Path


def raise_nofile_limit() -> int | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (hard, 1 << 20, 1 << 16):
        if target == resource.RLIM_INFINITY or (soft != resource.RLIM_INFINITY and target <= soft):
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            continue
    return soft


GC_THRESHOLDS = (50_000, 20, 100)


def calm_garbage_collector() -> None:
    """Keep the cyclic garbage collector from stalling the event loop.

    With 10,000 connections and their point states in memory, a full (generation 2) collection
    walked every object and stopped the loop for 120-300 ms every few seconds under load
    (measured: bench/gateway.py's 10,000 devices at 2,000 frames/s). What start-up made (modules,
    the pydantic schemas) never becomes garbage: frozen, no collection walks it again. Fewer
    young collections then rarely promote enough for a full one. Reference counting still frees
    everything at once; only the rare reference cycle waits longer."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class DataDirLock:
    """This process's claim on its data directory (the spool, the embedded nats-server's store):
    two processes on one directory would replay and delete the same spool. An advisory lock that
    the kernel drops when the process ends, however it ends."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "firegate.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raise DataDirInUse (naming the holder's pid) if another process holds it."""
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                raise DataDirInUse(self.path.parent, holder) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)  # closing also drops a lock taken before the failure
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


class DataDirInUse(OSError):
    def __init__(self, data_dir: Path, holder: str) -> None:
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(f"in use by another firegate process (pid {holder}); give each process its own")
