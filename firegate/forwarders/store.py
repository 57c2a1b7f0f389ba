"""Incidents in a JetStream key-value bucket, changed only by compare-and-set.

Keys (all in bucket ``FIRE_ALARMS``):
  ``incident.<id>``       the incident (JSON of `Incident`), the unit of every change
  ``head.<site>[.test]``  the site's newest incident: where its next alarm may join
  ``alarm.<alarm id>``    which incident an alarm went to (deduplication, lookup by alarm id)

Any number of lifecycle instances share the bucket: a change reads the value and its
revision, applies a pure transition, and writes back only if nobody wrote in between.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import nats.errors
import nats.js.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from firegate.forwarders.errors import ForwarderError
from firegate.forwarders.incident import Incident

BUCKET = "FIRE_ALARMS"


class Conflict(ForwarderError):
    """Somebody else wrote the key since we read it: read again and retry."""


def _key_safe(text: str) -> str:
    # KV keys allow [-/_=.a-zA-Z0-9]; ids are made of those already, this guards odd panel ids
    return "".join(c if c.isalnum() or c in "-_=." else "_" for c in text)


class AlarmStore:
    def __init__(self, kv: KeyValue, *, timeout: float = 2.0) -> None:
        self.kv = kv
        self.timeout = timeout

    async def _get(self, key: str) -> tuple[bytes, int] | None:
        try:
            async with asyncio.timeout(self.timeout):
                entry = await self.kv.get(key)
        except nats.js.errors.KeyNotFoundError:  # also a deleted or purged key
            return None
        if entry.value is None or entry.revision is None:
            return None
        return entry.value, entry.revision

    async def _write(self, key: str, value: bytes, revision: int | None) -> int:
        try:
            async with asyncio.timeout(self.timeout):
                if revision is None:
                    return int(await self.kv.create(key, value))
                return int(await self.kv.update(key, value, last=revision))
        except nats.js.errors.KeyWrongLastSequenceError as e:
            raise Conflict(key) from e
        except nats.js.errors.APIError as e:
            if e.err_code == 10071:  # wrong last sequence, as some server versions report it
                raise Conflict(key) from e
            raise

    async def load(self, incident_id: str) -> tuple[Incident, int] | None:
        got = await self._get(f"incident.{incident_id}")
        if got is None:
            return None
        return Incident.model_validate_json(got[0]), got[1]

    async def save(self, incident: Incident, revision: int | None) -> int:
        return await self._write(f"incident.{incident.id}", incident.model_dump_json().encode(), revision)

    async def head(self, head_key: str) -> tuple[str | None, int | None]:
        got = await self._get(f"head.{_key_safe(head_key)}")
        return (got[0].decode(), got[1]) if got else (None, None)

    async def set_head(self, head_key: str, incident_id: str, revision: int | None) -> None:
        await self._write(f"head.{_key_safe(head_key)}", incident_id.encode(), revision)

    async def incident_of(self, alarm_id: str) -> str | None:
        got = await self._get(f"alarm.{_key_safe(alarm_id)}")
        return got[0].decode() if got else None

    async def remember(self, alarm_id: str, incident_id: str) -> None:
        async with asyncio.timeout(self.timeout):
            await self.kv.put(f"alarm.{_key_safe(alarm_id)}", incident_id.encode())

    async def withdraw(self, incident_id: str, revision: int) -> bool:
        """Remove an incident that lost the race for its site's head, only if nobody changed it
        since we created it (a policy or an operator may have acted on it); True if removed."""
        try:
            async with asyncio.timeout(self.timeout):
                await self.kv.delete(f"incident.{incident_id}", last=revision)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except nats.js.errors.APIError as e:
            if e.err_code == 10071:  # wrong last sequence, as the delete reports it
                return False
            raise
        return True

    async def forget(self, incident: Incident) -> None:
        """Remove a closed incident past its retention (its events stay in the stream)."""
        async with asyncio.timeout(self.timeout):
            for alarm in incident.alarms:
                with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                    await self.kv.purge(f"alarm.{_key_safe(alarm.id)}")
            await self.kv.purge(f"incident.{incident.id}")

    async def incident_ids(self) -> set[str]:
        """Every stored incident's id (a full listing; the watch is the cheap way to follow).
        Not `kv.keys(filters=...)`: nats-py matches those filters as substrings, not subjects."""
        ids: set[str] = set()
        watcher = await self.kv.watch("incident.>", meta_only=True, ignore_deletes=True)
        try:
            async with asyncio.timeout(self.timeout * 5):
                async for entry in watcher:
                    if entry is None:
                        break
                    ids.add(entry.key.removeprefix("incident."))
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return ids

    async def watch(self) -> AsyncIterator[tuple[str, Incident | None]]:
        """Every incident now and every later change: (id, incident) or (id, None) when removed.
        Yields ("", None) once the current values have all been delivered."""
        watcher = await self.kv.watch("incident.>")
        try:
            async for entry in watcher:
                if entry is None:
                    yield "", None
                    continue
                incident_id = entry.key.removeprefix("incident.")
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    yield incident_id, None
                    continue
                try:
                    yield incident_id, Incident.model_validate_json(entry.value)
                except ValidationError:
                    yield incident_id, None  # not ours to read; never crash the view
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
