"""The design document's ``vocabulary`` key: the whole vocabulary as one JSON value, with a TTL.

It is kept for anyone who reads the seed's key (scripts, other tools). The instances do not read
it: they follow the vocabulary log (:mod:`vocabsync.services.vocabulary_log`). At a million terms
the value is tens of megabytes, so the bridge rewrites it at most every
``VOCABSYNC_SNAPSHOT_INTERVAL`` seconds while the vocabulary changes (see :class:`SeedKeyWriter`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from vocabsync.config import Settings
from vocabsync.errors import RedisUnavailableError
from vocabsync.services.redis_client import describe_redis_error
from vocabsync.vocabulary import Snapshot, SnapshotFormatError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredRead:
    """What a read found: a valid snapshot, nothing, or something unusable (and why)."""

    snapshot: Snapshot | None
    problem: str | None = None


class SnapshotStore:
    """Reads and writes the ``vocabulary`` key."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.key = settings.redis_key
        self.channel = settings.redis_channel

    def _unavailable(self, doing: str, exc: BaseException) -> RedisUnavailableError:
        return RedisUnavailableError(
            f"cannot {doing} {self.key!r} at {self.settings.redis_display}: "
            f"{describe_redis_error(self.settings, exc)}"
        )

    async def read(self) -> StoredRead:
        """Fetch and parse the key; a bad value is reported, not raised."""
        try:
            raw = await self.client.get(self.key)
        except (RedisError, OSError) as exc:
            raise self._unavailable("read", exc) from None
        if raw is None:
            return StoredRead(None, "missing")
        try:
            return StoredRead(Snapshot.from_json(raw, self.settings.sources.fields))
        except SnapshotFormatError as exc:
            return StoredRead(None, f"corrupted: {exc}")

    async def write(self, snapshot: Snapshot) -> None:
        """Encode (a slice at a time: the bridge keeps serving meanwhile) and store the key."""
        payload = await snapshot.to_json_in_steps()
        try:
            await self.client.set(self.key, payload, ex=self.settings.vocabulary_ttl_seconds)
        except (RedisError, OSError) as exc:
            raise self._unavailable("write", exc) from None

    async def publish(self, message: str) -> int:
        """Announce a change; returns how many subscribers received it."""
        try:
            return int(await self.client.publish(self.channel, message))
        except (RedisError, OSError) as exc:
            raise RedisUnavailableError(
                f"cannot publish on {self.channel!r} at {self.settings.redis_display}: "
                f"{describe_redis_error(self.settings, exc)}"
            ) from None


class SeedKeyWriter:
    """Rewrites the ``vocabulary`` key when the vocabulary changed, at most every interval.

    The first change after a quiet period is written at once; later ones wait for the interval,
    and the key is rewritten at least every TTL/3 so it never expires under a running bridge.
    A rewrite re-encodes only the chunks of the sorted lists that changed since the last one
    (:mod:`vocabsync.sorted_terms`) and joins the rest: tens of milliseconds at a million terms.
    As a guard for larger vocabularies the interval also stretches to ten times the last
    rewrite's cost, so the key never takes more than a tenth of the bridge's CPU.
    """

    def __init__(self, store: SnapshotStore) -> None:
        self.store = store
        self.written: Snapshot | None = None
        self.written_at = float("-inf")
        self.writes = 0
        self.last_cost = 0.0

    @property
    def interval(self) -> float:
        return max(self.store.settings.snapshot_interval, 10 * self.last_cost)

    def due(self, snapshot: Snapshot) -> bool:
        elapsed = time.monotonic() - self.written_at
        if snapshot is self.written:
            return elapsed >= self.store.settings.vocabulary_ttl_seconds / 3
        return elapsed >= self.interval

    async def write_if_due(self, snapshot: Snapshot) -> bool:
        if not snapshot.is_complete or not self.due(snapshot):
            return False
        started = time.process_time()
        await self.store.write(snapshot)
        self.last_cost = time.process_time() - started
        self.written, self.written_at = snapshot, time.monotonic()
        self.writes += 1
        return True
