"""The shared snapshot in Redis: key ``vocabulary`` (JSON, TTL) and channel ``vocabulary_updated``.

Writes are a compare-and-set merge (WATCH / MULTI): each field keeps whichever version is newer,
so a slow writer holding an older read can never overwrite a newer one (invariant 4), and a
corrupted or foreign value is replaced instead of breaking the readers (invariant 6).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from vocabsync.config import Settings
from vocabsync.errors import RedisUnavailableError
from vocabsync.vocabulary import Snapshot, SnapshotFormatError

logger = logging.getLogger(__name__)

MAX_CAS_ATTEMPTS = 20


@dataclass(frozen=True, slots=True)
class StoredRead:
    """What a read found: a valid snapshot, nothing, or something unusable (and why)."""

    snapshot: Snapshot | None
    problem: str | None = None


def redis_client(settings: Settings, *, for_pubsub: bool = False) -> aioredis.Redis:
    """A client with timeouts on every call; no I/O until first used.

    A subscriber must block for messages, so its socket has no read timeout: liveness is checked
    by PINGs that expect an answer instead.
    """
    return aioredis.Redis.from_url(
        settings.redis_connection_url,
        socket_connect_timeout=settings.network_timeout,
        socket_timeout=None if for_pubsub else settings.network_timeout,
        socket_keepalive=True,
        health_check_interval=0 if for_pubsub else settings.health_check_interval,
        # Our own loops reconnect with backoff and resync; client-side retries would only hide
        # an outage for seconds per command (redis-py 8 retries by default).
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        decode_responses=False,
    )


def describe_redis_error(settings: Settings, exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return settings.redact(f"{type(exc).__name__}: {text}")


class SnapshotStore:
    """Reads, merges into, and announces the ``vocabulary`` key."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.key = settings.redis_key
        self.channel = settings.redis_channel
        self._last_written: bytes | None = None
        self._last_snapshot: Snapshot | None = None

    def _parse(self, raw: bytes | str) -> Snapshot:
        if raw == self._last_written and self._last_snapshot is not None:
            return self._last_snapshot
        return Snapshot.from_json(raw)

    async def read(self) -> StoredRead:
        """Fetch and parse the key; a bad value is reported, not raised."""
        try:
            raw = await self.client.get(self.key)
        except (RedisError, OSError) as exc:
            raise RedisUnavailableError(
                f"cannot read {self.key!r} from Redis at {self.settings.redis_display}: "
                f"{describe_redis_error(self.settings, exc)}"
            ) from None
        if raw is None:
            return StoredRead(None, "missing")
        try:
            return StoredRead(self._parse(raw))
        except SnapshotFormatError as exc:
            return StoredRead(None, f"corrupted: {exc}")

    async def write(self, snapshot: Snapshot) -> tuple[Snapshot, bool]:
        """Merge ``snapshot`` into the stored one; return (the stored result, whether it changed).

        The TTL is refreshed on every write, even when nothing newer was brought.
        """
        ttl = self.settings.vocabulary_ttl_seconds
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for _ in range(MAX_CAS_ATTEMPTS):
                    try:
                        await pipe.watch(self.key)
                        raw = await pipe.get(self.key)
                        current: Snapshot | None = None
                        if raw is not None:
                            try:
                                current = self._parse(raw)
                            except SnapshotFormatError as exc:
                                logger.warning(
                                    "replacing corrupted vocabulary key",
                                    extra={"action": "redis_value_corrupted", "reason": str(exc)},
                                )
                        merged = snapshot if current is None else current.merge(snapshot)
                        changed = merged is not current
                        payload: bytes
                        pipe.multi()  # type: ignore[no-untyped-call]
                        if changed:
                            payload = merged.to_json()
                            pipe.set(self.key, payload, ex=ttl)
                        else:
                            payload = raw if isinstance(raw, bytes) else str(raw).encode()
                            pipe.expire(self.key, ttl)
                        await pipe.execute()
                        self._last_written, self._last_snapshot = payload, merged
                        return merged, changed
                    except WatchError:
                        continue
        except (RedisError, OSError) as exc:
            raise RedisUnavailableError(
                f"cannot write {self.key!r} to Redis at {self.settings.redis_display}: "
                f"{describe_redis_error(self.settings, exc)}"
            ) from None
        raise RedisUnavailableError(
            f"gave up writing {self.key!r}: {MAX_CAS_ATTEMPTS} concurrent updates in a row"
        )

    async def publish(self, message: str) -> int:
        """Announce a change; returns how many subscribers received it."""
        try:
            return int(await self.client.publish(self.channel, message))
        except (RedisError, OSError) as exc:
            raise RedisUnavailableError(
                f"cannot publish on {self.channel!r} at {self.settings.redis_display}: "
                f"{describe_redis_error(self.settings, exc)}"
            ) from None
