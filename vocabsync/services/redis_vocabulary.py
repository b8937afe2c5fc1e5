"""RedisVocabularyCache: the vocabulary every API instance serves, kept current from the Redis log.

Reads (:meth:`RedisVocabularyCache.get_vocabulary`) return the in-process snapshot, an immutable
object per version, and never touch the network (invariant 1). The pieces, each in its module:

- :mod:`~vocabsync.services.vocabulary_state`: the snapshot, its log position, change listeners;
- :mod:`~vocabsync.services.log_follower`: follows the vocabulary log (``XREAD``), applies each
  delta on top of exactly its base, reads the full state once on any gap;
- :mod:`~vocabsync.services.fallback`: when Redis cannot be heard, reads go through to PostgreSQL
  (memoised, single-flight) until the follower has reconnected and caught up;
- :mod:`~vocabsync.supervisor`: the reconnect loop with backoff, shared with the bridge.

Every refresh (startup, catch-up after a reconnect, fallback, manual) goes through
:meth:`refresh_cache` (invariant 7), single-flight and coalesced (invariant 3). A manual refresh
reads PostgreSQL and writes the difference to the log with the bridge's own writer, so every
instance applies it. Garbage in Redis is logged, counted and repaired by a full read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from vocabsync.backoff import Backoff
from vocabsync.config import Settings, get_settings
from vocabsync.errors import (
    DatabaseUnavailableError,
    RedisUnavailableError,
    RefreshError,
    VocabSyncError,
)
from vocabsync.metrics import LinkStats, Metrics, MetricValues
from vocabsync.services.fallback import FallbackPolicy
from vocabsync.services.heartbeat import process_identity, remove_heartbeat, write_heartbeat
from vocabsync.services.log_follower import LogFollower, catch_up
from vocabsync.services.log_writer import LogWriter, StaleReadError
from vocabsync.services.redis_client import describe_redis_error, redis_client
from vocabsync.services.snapshot_store import SnapshotStore
from vocabsync.services.sync_control import SyncSwitch
from vocabsync.services.vocabulary_loader import VocabularyLoader
from vocabsync.services.vocabulary_log import VocabularyLog
from vocabsync.services.vocabulary_state import (
    ChangeListener,
    SnapshotListener,
    Source,
    VocabularyState,
)
from vocabsync.singleflight import CoalescingRunner
from vocabsync.supervisor import Supervisor
from vocabsync.vocabulary import Snapshot, SnapshotFormatError

logger = logging.getLogger(__name__)

Trigger = Literal["startup", "event", "resync", "manual", "fallback"]

# Refresh levels: a coalesced follow-up runs at the highest level anyone asked for.
LEVEL_REDIS = 1  # adopt the shared snapshot (load from the database only if Redis has none)
LEVEL_DATABASE = 2  # load from the database, store in Redis when it is reachable
LEVEL_MANUAL = 3  # load from the database, store in Redis and tell every instance; Redis required

_TRIGGER_LEVEL: dict[str, int] = {
    "startup": LEVEL_REDIS,
    "event": LEVEL_REDIS,
    "resync": LEVEL_REDIS,
    "fallback": LEVEL_DATABASE,
    "manual": LEVEL_MANUAL,
}

MANUAL_MESSAGE = "*"


@dataclass
class CacheStats:
    """Counters for /ready and metrics; plain integers, cheap to bump."""

    messages_received: int = 0
    malformed_messages: int = 0
    corrupted_values: int = 0
    refreshes: dict[str, int] = field(default_factory=dict)
    refresh_failures: int = 0
    database_loads: int = 0
    redis_reads: int = 0
    reconnects: int = 0
    reads: dict[str, int] = field(default_factory=lambda: {"memory": 0, "redis": 0, "database": 0})
    connection_errors: dict[str, int] = field(default_factory=lambda: {"postgres": 0, "redis": 0})


class RedisVocabularyCache:
    """The per-instance vocabulary cache with its log follower and database fallback."""

    def __init__(
        self, settings: Settings | None = None, loader: VocabularyLoader | None = None
    ) -> None:
        self._settings = settings
        self._loader = loader
        self.state = VocabularyState()
        self.redis_available = False
        self.database_ok: bool | None = None
        self.last_error: str | None = None
        self.stats = CacheStats()
        self._client: aioredis.Redis | None = None
        self._log: VocabularyLog | None = None
        self._runner: CoalescingRunner[Snapshot] | None = None
        self._follower: LogFollower | None = None
        self._supervisor: Supervisor | None = None
        self._listener: asyncio.Task[None] | None = None
        self._fallback = FallbackPolicy()
        self._redis_down_reported = False  # warn once per outage, and at startup
        self._switch: SyncSwitch | None = None
        self._connected_once = False
        self._first_attempt: asyncio.Event | None = None
        self.metrics = Metrics(self)
        self.state.on_propagated = self.metrics.propagation_seconds.observe

    # --- configuration (lazy, so importing a module-level instance does no I/O) -------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @property
    def given_settings(self) -> Settings | None:
        """The settings if given or read already (None: they will be read on first use)."""
        return self._settings

    @property
    def loader(self) -> VocabularyLoader:
        if self._loader is None:
            self._loader = VocabularyLoader(self.settings, purpose="api")
        return self._loader

    def _ensure_runtime(self) -> tuple[VocabularyLog, CoalescingRunner[Snapshot]]:
        if self._log is None:
            self._client = redis_client(self.settings)
            self._log = VocabularyLog(self._client, self.settings)
        if self._runner is None:
            self._runner = CoalescingRunner(self._refresh_work)
        return self._log, self._runner

    # --- reads ------------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The current in-process snapshot (replaced atomically, never mutated)."""
        snapshot: Snapshot = self.state.snapshot
        return snapshot

    @property
    def source(self) -> Source:
        source: Source = self.state.source
        return source

    @property
    def listener_running(self) -> bool:
        return self._follower is not None and self._follower.running

    @property
    def has_snapshot(self) -> bool:
        return self.snapshot.is_complete

    @property
    def snapshot_age(self) -> float | None:
        if not self.has_snapshot:
            return None
        return max(0.0, time.time() - self.snapshot.refreshed_at)

    @property
    def in_fallback(self) -> bool:
        """True when changes cannot reach this instance: the follower is not connected, or
        real-time sync was switched off by ``vocabsync rollback``."""
        return not self.listener_running or self.sync_disabled

    @property
    def sync_disabled(self) -> bool:
        """True while `vocabsync rollback` has switched real-time sync off."""
        return self._switch is not None and self._switch.disabled

    def _needs_read_through(self) -> bool:
        return self._fallback.needs_read_through(
            self.has_snapshot, self.in_fallback, self.settings.fallback_max_age
        )

    def get_vocabulary(self) -> Snapshot:
        """The vocabulary, from memory; never waits on the network (the design document's API).

        Returns the current immutable snapshot itself (a mapping-like object: ``.get(field)``
        is a sorted, immutable set of terms; ``.as_lists()`` copies into the design document's
        six lists). In fallback mode a stale snapshot schedules a background reload.
        """
        self.stats.reads["memory"] += 1
        if self.in_fallback and self._needs_read_through() and self._runner is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
                self._runner.submit(LEVEL_DATABASE, "fallback").add_done_callback(_consume)
        return self.snapshot

    async def read_snapshot(self) -> tuple[Snapshot, Source]:
        """The snapshot to answer a request with, and where it came from.

        From memory while the follower keeps it current. Without a snapshot, or while Redis is
        unreachable, it reads through (Redis, then PostgreSQL), memoised for ``fallback_max_age``
        and single-flight, so a traffic spike is not a query spike.
        """
        if self._needs_read_through():
            fallback = self.in_fallback
            with contextlib.suppress(VocabSyncError):
                await self.refresh_cache("fallback" if fallback else "startup")
                source: Source = "database" if fallback else self.source
                if source in self.stats.reads:
                    self.stats.reads[source] += 1
                return self.snapshot, source
        self.stats.reads["memory"] += 1
        return self.snapshot, "memory"

    # --- refresh: the one mechanism -----------------------------------------------------------

    async def refresh_cache(self, trigger: Trigger = "manual") -> Snapshot:
        """Refresh from the log or the database, depending on the trigger.

        ``manual`` reads PostgreSQL and writes the difference to the log, so every instance
        applies it; it raises :class:`RefreshError` when that is not possible. The others never
        raise for a Redis problem: they fall back to the database.
        """
        _, runner = self._ensure_runtime()
        return await runner.request(_TRIGGER_LEVEL[trigger], trigger)

    async def _refresh_work(self, level: int, reasons: frozenset[str]) -> Snapshot:
        trigger = _primary_trigger(reasons)
        started = time.perf_counter()
        finished = self.metrics.time_refresh(trigger)
        try:
            if level >= LEVEL_MANUAL:
                await self._refresh_manually()
            elif level >= LEVEL_DATABASE:
                await self._load_from_database()
            else:
                await self._catch_up()
        except VocabSyncError as exc:
            finished(False)
            self.stats.refresh_failures += 1
            self.last_error = self.settings.redact(str(exc))
            logger.warning(
                "vocabulary refresh (%s) failed: %s",
                trigger,
                self.last_error,
                extra={"action": "refresh_failed", "trigger": trigger},
            )
            raise
        finished(True)
        self.stats.refreshes[trigger] = self.stats.refreshes.get(trigger, 0) + 1
        logger.info(
            "vocabulary refreshed (%s) from %s: version %d, %s, %.1f ms",
            trigger,
            self.source,
            self.snapshot.version,
            ", ".join(f"{k}={v}" for k, v in self.snapshot.counts().items()),
            (time.perf_counter() - started) * 1000,
            extra={"action": "refreshed", "trigger": trigger, "version": self.snapshot.version},
        )
        return self.snapshot

    def add_snapshot_listener(self, listener: SnapshotListener) -> None:
        """Call ``listener(previous, current)`` after every change, in the event loop."""
        self.state.add_listener(lambda previous, current, _delta: listener(previous, current))

    def add_change_listener(self, listener: ChangeListener) -> None:
        """Call ``listener(previous, current, delta)`` after every change, in the event loop.

        ``delta`` holds the terms added and removed per field, or is None when the whole
        vocabulary was replaced. For derived state: return quickly, do heavy work elsewhere.
        """
        self.state.add_listener(listener)

    async def _catch_up(self, log: VocabularyLog | None = None) -> None:
        """Follow the log to its head; seed it from PostgreSQL when Redis holds no state."""
        log = log or self._ensure_runtime()[0]
        try:
            if await catch_up(log, self.state):
                self.stats.redis_reads += 1
                return
            await self._write_from_database(log, replace=True)
        except SnapshotFormatError as exc:
            self.stats.corrupted_values += 1
            logger.warning(
                "the vocabulary state in Redis is unusable (%s); rewriting it from the database",
                exc,
                extra={"action": "redis_value_corrupted"},
            )
            await self._write_from_database(log, replace=True)
        except RedisUnavailableError as exc:
            self._mark_redis_down(str(exc))
            await self._load_from_database()

    async def _load(self) -> Snapshot:
        try:
            loaded = await self.loader.load()
        except DatabaseUnavailableError:
            self.database_ok = False
            self.stats.connection_errors["postgres"] += 1
            raise
        self.database_ok = True
        self.stats.database_loads += 1
        return loaded

    async def _load_from_database(self) -> None:
        """Fallback: read PostgreSQL and serve that (the log is caught up with later)."""
        loaded = await self._load()
        self._fallback.loaded()
        async with self.state.lock:
            self.state.adopt(loaded, "", "database")

    async def _write_from_database(self, log: VocabularyLog, *, replace: bool = False) -> None:
        """Read PostgreSQL, write it to the log with the bridge's writer, and follow it."""
        loaded = await self._load()
        self._fallback.loaded()
        writer = LogWriter(log)
        if not replace:
            writer.state, writer.position = self.state.snapshot, self.state.position
            # What the newest read behind that state was (the writer follows the log from
            # there if the head has moved on, and learns it from the entries).
            head = await log.head()
            if head is not None and head.position == writer.position:
                writer.read_version = head.read_version
            else:
                writer.read_version = writer.state.version
        for _ in range(3):
            try:
                await writer.write_full(loaded)
                break
            except StaleReadError:
                loaded = await self._load()
        if not await catch_up(log, self.state):
            async with self.state.lock:
                self.state.adopt(loaded, "", "database")

    async def _refresh_manually(self) -> None:
        log, _ = self._ensure_runtime()
        try:
            await self._write_from_database(log)
            # The seed's key too, so whoever reads ``vocabulary`` sees the refresh at once.
            await SnapshotStore(log.client, self.settings).write(self.snapshot)
        except RedisUnavailableError as exc:
            self._mark_redis_down(str(exc))
            raise RefreshError(
                f"reloaded from the database, but could not write the vocabulary to Redis "
                f"({exc}); other instances keep their copy. Check that Redis is running "
                f"and REDIS_URL is right."
            ) from None

    def _mark_redis_down(self, reason: str) -> None:
        self.stats.connection_errors["redis"] += 1
        if self.redis_available or not self._redis_down_reported:
            self._redis_down_reported = True
            logger.warning(
                "Redis unavailable, serving from the database: %s",
                reason,
                extra={"action": "redis_unavailable"},
            )
        self.redis_available = False
        self.last_error = self.settings.redact(reason)

    # --- follower -----------------------------------------------------------------------------

    async def start_listener(self) -> None:
        """Catch up and start following the log in the background (idempotent).

        Never raises for unreachable services: the instance starts in fallback mode and the
        follower keeps reconnecting.
        """
        if self._listener is not None and not self._listener.done():
            return
        self._ensure_runtime()
        first_attempt = self._first_attempt = asyncio.Event()

        async def connected(log: VocabularyLog) -> None:
            await self._on_connected(log)
            first_attempt.set()

        self._follower = LogFollower(
            self.settings,
            self.state,
            on_connected=connected,
            on_idle=self._on_idle,
            on_applied=self._on_applied,
        )
        self._supervisor = Supervisor(
            "vocabsync-follower",
            self._follower.session,
            Backoff(
                self.settings.reconnect_initial_delay,
                self.settings.reconnect_max_delay,
                self.settings.reconnect_jitter,
            ),
            on_failure=self._on_follower_failure,
        )
        self._listener = asyncio.create_task(self._supervisor.run(), name="vocabsync-listener")
        # Wait for the first connection attempt, so startup ends caught up when Redis is up.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first_attempt.wait(), timeout=self.settings.network_timeout * 2)
        if not self.has_snapshot:
            try:
                await self.refresh_cache("startup")
            except VocabSyncError:
                logger.warning(
                    "starting without a vocabulary: neither Redis nor PostgreSQL answered",
                    extra={"action": "startup_without_vocabulary"},
                )

    async def _on_connected(self, log: VocabularyLog) -> None:
        if self._client is not None:
            # Idle connections pooled before an outage are dead: drop them before the catch-up
            # (connections in use by a running refresh are left alone).
            with contextlib.suppress(Exception):
                await self._client.connection_pool.disconnect(inuse_connections=False)
        self.redis_available = True
        self._redis_down_reported = False
        if self._connected_once:
            self.stats.reconnects += 1
        trigger: Trigger = "resync" if self._connected_once else "startup"
        self._connected_once = True
        logger.info(
            "following the vocabulary log on %s",
            self.settings.redis_display,
            extra={"action": "subscribed"},
        )
        await self._follow_switch(log)
        # The log is durable: after every (re)connect, catch up with what was missed.
        with contextlib.suppress(VocabSyncError):
            await self.refresh_cache(trigger)
        await self._heartbeat(log.client)  # before /ready turns 200: `status` sees it at once

    def _on_applied(self, entries: int, seconds: float) -> None:
        """Log entries applied as they arrived: the "event" refresh of earlier releases."""
        self.metrics.refresh_seconds.labels("event").observe(seconds)
        self.stats.refreshes["event"] = self.stats.refreshes.get("event", 0) + entries

    def _on_follower_failure(self, exc: BaseException) -> None:
        if self._first_attempt is not None:
            self._first_attempt.set()
        if isinstance(exc, RedisError | OSError | TimeoutError | VocabSyncError):
            self._mark_redis_down(describe_redis_error(self.settings, exc))
            return
        # The follower must not die (invariant 6): log with traceback and reconnect.
        self.last_error = self.settings.redact(repr(exc))
        logger.error(
            "listener (log follower) crashed; restarting",
            exc_info=exc,
            extra={"action": "listener_crashed"},
        )

    async def _on_idle(self, log: VocabularyLog) -> None:
        await self._heartbeat(log.client)
        await self._follow_switch(log)

    async def _follow_switch(self, log: VocabularyLog) -> None:
        """Enter or leave database-read mode when ``vocabsync rollback`` flips the switch."""
        if self._switch is None:
            self._switch = SyncSwitch(self.settings, "reads go to PostgreSQL")
        async with asyncio.timeout(self.settings.network_timeout):
            flipped = await self._switch.poll(log.client)
        if flipped and not self.sync_disabled and self._runner is not None:
            self._runner.submit(LEVEL_REDIS, "resync").add_done_callback(_consume)

    @property
    def identity(self) -> str:
        return self.settings.instance_name or process_identity()

    async def _heartbeat(self, client: aioredis.Redis) -> None:
        """Tell ``vocabsync status`` this instance is alive and which snapshot it serves."""
        snapshot = self.snapshot
        async with asyncio.timeout(self.settings.network_timeout):
            await write_heartbeat(
                client,
                self.settings,
                "instance",
                self.identity,
                {
                    "version": snapshot.version,
                    "position": self.state.position,
                    "refreshed_at": snapshot.refreshed_at,
                    "fallback": self.in_fallback,
                    "source": self.source,
                },
            )

    # --- shutdown -----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the follower and close every connection; nothing is left running."""
        if self._supervisor is not None:
            self._supervisor.stop()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        if self._runner is not None:
            await self._runner.close()
            self._runner = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    remove_heartbeat(self._client, self.settings, "instance", self.identity),
                    timeout=self.settings.network_timeout,
                )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.aclose(), timeout=self.settings.network_timeout)
        self._client, self._log = None, None
        await self.loader.close_connection()
        self.redis_available = False

    @property
    def metric_values(self) -> MetricValues:
        """This instance's counters and state, read at scrape time."""
        stats = self.stats
        links = LinkStats(
            up={"postgres": bool(self.database_ok), "redis": self.listener_running},
            errors=dict(stats.connection_errors),
            reconnects={"postgres": 0, "redis": stats.reconnects},
            bad_input={
                "malformed_message": stats.malformed_messages,
                "corrupted_value": stats.corrupted_values,
                "unknown_table": 0,
            },
        )
        received = self._follower.entries_received if self._follower else 0
        stats.malformed_messages = self._follower.malformed_entries if self._follower else 0
        return MetricValues(
            component="api",
            running=self._listener is not None and not self._listener.done(),
            links=links,
            snapshot=self.snapshot,
            counters={
                "vocabsync_database_loads_total": stats.database_loads,
                "vocabsync_messages_received_total": received,
            },
            gauges={"vocabsync_fallback": 1.0 if self.in_fallback else 0.0},
            reads=dict(stats.reads),
        )

    def status(self) -> dict[str, Any]:
        """The state /ready reports: links, follower, snapshot age (no secrets)."""
        age = self.snapshot_age
        return {
            "has_snapshot": self.has_snapshot,
            "version": self.snapshot.version,
            "position": self.state.position,
            "snapshot_age_seconds": None if age is None else round(age, 3),
            "source": self.source,
            "redis": "connected" if self.redis_available else "unavailable",
            "listener": "running" if self.listener_running else "stopped",
            "database": {None: "unknown", True: "ok", False: "unavailable"}[self.database_ok],
            "fallback": self.in_fallback,
            "database_loads": self.stats.database_loads,
            "deltas_applied": self.state.deltas_applied,
            "full_loads": self.state.full_loads,
            "last_error": self.last_error,
        }


def _primary_trigger(reasons: frozenset[str]) -> str:
    for trigger in ("manual", "fallback", "startup", "resync", "event"):
        if trigger in reasons:
            return trigger
    return "event"


def _consume(future: asyncio.Future[Snapshot]) -> None:
    """Done-callback for fire-and-forget refreshes: failures are already logged."""
    if not future.cancelled():
        future.exception()


redis_vocabulary_cache = RedisVocabularyCache()
"""The design document's module-level instance; connects to nothing until started."""
