"""RedisVocabularyCache: the vocabulary every API instance serves, kept current from Redis.

Reads (:meth:`RedisVocabularyCache.get_vocabulary`) return the in-process snapshot and never touch
the network (invariant 1). A background listener subscribes to ``vocabulary_updated``; each message
asks for a refresh that adopts the newer snapshot from Redis. Refreshes are single-flight and
coalesced (invariant 3), merge field by field so nothing older replaces anything newer
(invariant 4), and every trigger (startup, event, resync after a reconnect, manual) goes through
the same :meth:`refresh_cache` (invariant 7).

When Redis is unreachable the instance cannot hear about changes, so reads go through to
PostgreSQL (memoised for ``fallback_max_age``, one load at a time) until the listener has
reconnected and resynced. Garbage on the channel or in the key is logged, counted and repaired by a
reload; the listener never dies of it (invariant 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
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
from vocabsync.services.heartbeat import process_identity, remove_heartbeat, write_heartbeat
from vocabsync.services.snapshot_store import SnapshotStore, describe_redis_error, redis_client
from vocabsync.services.sync_control import SyncSwitch
from vocabsync.services.vocabulary_loader import VocabularyLoader
from vocabsync.singleflight import CoalescingRunner
from vocabsync.vocabulary import Snapshot

logger = logging.getLogger(__name__)

Source = Literal["memory", "redis", "database", "none"]
SnapshotListener = Callable[[Snapshot, Snapshot], None]
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
    """The per-instance vocabulary cache with its Redis listener and database fallback."""

    def __init__(
        self, settings: Settings | None = None, loader: VocabularyLoader | None = None
    ) -> None:
        self._settings = settings
        self._loader = loader
        self._snapshot = Snapshot.empty()
        self.source: Source = "none"
        self.redis_available = False
        self.listener_running = False
        self.database_ok: bool | None = None
        self.last_error: str | None = None
        self.stats = CacheStats()
        self._client: aioredis.Redis | None = None
        self._store: SnapshotStore | None = None
        self._runner: CoalescingRunner[Snapshot] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._stopping = False
        self._fallback_loaded_at: float | None = None
        self._listeners: list[SnapshotListener] = []
        self._redis_down_reported = False  # warn once per outage, and at startup
        self._switch: SyncSwitch | None = None
        self.metrics = Metrics(self)

    # --- configuration (lazy, so importing a module-level instance does no I/O) -------------

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    @property
    def loader(self) -> VocabularyLoader:
        if self._loader is None:
            self._loader = VocabularyLoader(self.settings, purpose="api")
        return self._loader

    def _ensure_runtime(self) -> tuple[SnapshotStore, CoalescingRunner[Snapshot]]:
        if self._store is None:
            self._client = redis_client(self.settings)
            self._store = SnapshotStore(self._client, self.settings)
        if self._runner is None:
            self._runner = CoalescingRunner(self._refresh_work)
        return self._store, self._runner

    # --- reads ------------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The current in-process snapshot (replaced atomically, never mutated)."""
        return self._snapshot

    @property
    def has_snapshot(self) -> bool:
        return self._snapshot.is_complete

    @property
    def snapshot_age(self) -> float | None:
        if not self.has_snapshot:
            return None
        return max(0.0, time.time() - self._snapshot.refreshed_at)

    @property
    def in_fallback(self) -> bool:
        """True when changes cannot reach this instance: the listener is not subscribed, or
        real-time sync was switched off by ``vocabsync rollback``."""
        return not self.listener_running or self.sync_disabled

    @property
    def sync_disabled(self) -> bool:
        """True while `vocabsync rollback` has switched real-time sync off."""
        return self._switch is not None and self._switch.disabled

    def _stale_for_fallback(self) -> bool:
        if not self.has_snapshot:
            return True
        loaded_at = self._fallback_loaded_at
        return loaded_at is None or time.monotonic() - loaded_at > self.settings.fallback_max_age

    def get_vocabulary(self) -> dict[str, list[str]]:
        """The six lists, from memory; never waits on the network (the design document's API).

        In fallback mode a stale snapshot schedules a background reload for the next reader.
        """
        self.stats.reads["memory"] += 1
        if self.in_fallback and self._stale_for_fallback() and self._runner is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to schedule on
                self._runner.submit(LEVEL_DATABASE, "fallback").add_done_callback(_consume)
        return self._snapshot.as_lists()

    async def read_snapshot(self) -> tuple[Snapshot, Source]:
        """The snapshot to answer a request with, and where it came from.

        From memory while the listener keeps it current. Without a snapshot, or while Redis is
        unreachable, it reads through (Redis, then PostgreSQL), memoised for ``fallback_max_age``
        and single-flight, so a traffic spike is not a query spike.
        """
        needs_read_through = not self.has_snapshot or (
            self.in_fallback and self._stale_for_fallback()
        )
        if needs_read_through:
            fallback = self.in_fallback
            with contextlib.suppress(VocabSyncError):
                await self.refresh_cache("fallback" if fallback else "startup")
                source: Source = "database" if fallback else self.source
                if source in self.stats.reads:
                    self.stats.reads[source] += 1
                return self._snapshot, source
        self.stats.reads["memory"] += 1
        return self._snapshot, "memory"

    # --- refresh: the one mechanism -----------------------------------------------------------

    async def refresh_cache(self, trigger: Trigger = "manual") -> Snapshot:
        """Refresh from the shared snapshot or the database, depending on the trigger.

        ``manual`` reloads from PostgreSQL, stores the result in Redis and announces it so every
        instance adopts it; it raises :class:`RefreshError` when that is not possible. The
        others never raise for a Redis problem: they fall back to the database.
        """
        _, runner = self._ensure_runtime()
        return await runner.request(_TRIGGER_LEVEL[trigger], trigger)

    async def _refresh_work(self, level: int, reasons: frozenset[str]) -> Snapshot:
        trigger = _primary_trigger(reasons)
        started = time.perf_counter()
        finished = self.metrics.time_refresh(trigger)
        try:
            if level >= LEVEL_DATABASE:
                await self._refresh_from_database(publish=level >= LEVEL_MANUAL)
            else:
                await self._refresh_from_redis()
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
            self._snapshot.version,
            ", ".join(f"{k}={v}" for k, v in self._snapshot.counts().items()),
            (time.perf_counter() - started) * 1000,
            extra={"action": "refreshed", "trigger": trigger, "version": self._snapshot.version},
        )
        return self._snapshot

    def add_snapshot_listener(self, listener: SnapshotListener) -> None:
        """Call ``listener(previous, current)`` after every snapshot swap, in the event loop.

        For derived state (an entity-matching index): it must return quickly and do any heavy
        work elsewhere, since it runs on the refresh path.
        """
        self._listeners.append(listener)

    def _adopt(self, snapshot: Snapshot, source: Source) -> bool:
        previous = self._snapshot
        merged = previous.merge(snapshot)
        if merged is previous:
            return False
        self._snapshot = merged
        self.source = source
        if source == "redis" and snapshot.refreshed_at:
            self.metrics.propagation_seconds.observe(max(0.0, time.time() - snapshot.refreshed_at))
        for listener in self._listeners:
            try:
                listener(previous, merged)
            except Exception:
                logger.exception(
                    "snapshot listener failed", extra={"action": "snapshot_listener_failed"}
                )
        return True

    async def _refresh_from_redis(self) -> None:
        store, _ = self._ensure_runtime()
        try:
            found = await store.read()
        except RedisUnavailableError as exc:
            self._mark_redis_down(str(exc))
            await self._refresh_from_database(publish=False)
            return
        self.stats.redis_reads += 1
        if found.snapshot is not None and found.snapshot.is_complete:
            self._adopt(found.snapshot, "redis")
            return
        if found.problem and found.problem != "missing":
            self.stats.corrupted_values += 1
            logger.warning(
                "the %r key in Redis is unusable (%s); reloading from the database",
                store.key,
                found.problem,
                extra={"action": "redis_value_corrupted"},
            )
        await self._refresh_from_database(publish=False)

    async def _refresh_from_database(self, *, publish: bool) -> None:
        try:
            loaded = await self.loader.load()
        except DatabaseUnavailableError:
            self.database_ok = False
            self.stats.connection_errors["postgres"] += 1
            raise
        self.database_ok = True
        self.stats.database_loads += 1
        self._adopt(loaded, "database")
        self._fallback_loaded_at = time.monotonic()
        store, _ = self._ensure_runtime()
        try:
            stored, _ = await store.write(self._snapshot)
            self._adopt(stored, "redis")
            if publish:
                await store.publish(MANUAL_MESSAGE)
        except RedisUnavailableError as exc:
            self._mark_redis_down(str(exc))
            if publish:
                raise RefreshError(
                    f"reloaded from the database, but could not store the vocabulary in Redis "
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

    # --- listener -----------------------------------------------------------------------------

    async def start_listener(self) -> None:
        """Do the startup refresh and start the background listener (idempotent).

        Never raises for unreachable services: the instance starts in fallback mode and the
        listener keeps reconnecting.
        """
        if self._listener is not None and not self._listener.done():
            return
        self._stopping = False
        self._ensure_runtime()
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(ready), name="vocabsync-listener")
        # Wait for the first subscription attempt, so startup ends subscribed when Redis is up.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout=self.settings.network_timeout * 2)
        if not self.has_snapshot:
            try:
                await self.refresh_cache("startup")
            except VocabSyncError:
                logger.warning(
                    "starting without a vocabulary: neither Redis nor PostgreSQL answered",
                    extra={"action": "startup_without_vocabulary"},
                )

    async def _listen(self, ready: asyncio.Event) -> None:
        backoff = Backoff(
            self.settings.reconnect_initial_delay,
            self.settings.reconnect_max_delay,
            self.settings.reconnect_jitter,
        )
        first = True
        while not self._stopping:
            delay = backoff.next_delay()
            if delay:
                await asyncio.sleep(delay)
            try:
                await self._listen_session(ready, backoff, first)
            except (RedisError, OSError, TimeoutError, VocabSyncError) as exc:
                self.listener_running = False
                self._mark_redis_down(describe_redis_error(self.settings, exc))
            except Exception as exc:
                # The listener must not die (invariant 6): log with traceback and reconnect.
                self.listener_running = False
                self.last_error = self.settings.redact(repr(exc))
                logger.exception(
                    "listener crashed; restarting", extra={"action": "listener_crashed"}
                )
            finally:
                ready.set()
            first = False

    async def _listen_session(self, ready: asyncio.Event, backoff: Backoff, first: bool) -> None:
        client = redis_client(self.settings, for_pubsub=True)
        pubsub = client.pubsub()
        try:
            async with asyncio.timeout(self.settings.network_timeout):
                await pubsub.subscribe(self.settings.redis_channel)
                await self._await_subscription(pubsub)
            self.redis_available = True
            self.listener_running = True
            self._redis_down_reported = False
            if not first:
                self.stats.reconnects += 1
            logger.info(
                "subscribed to %s on %s",
                self.settings.redis_channel,
                self.settings.redis_display,
                extra={"action": "subscribed"},
            )
            # Pub/Sub is at-most-once: after every (re)subscribe, catch up with the shared state.
            with contextlib.suppress(VocabSyncError):
                await self.refresh_cache("startup" if first else "resync")
            ready.set()
            backoff.reset()
            await self._receive(pubsub)
        finally:
            self.listener_running = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    pubsub.aclose(),  # type: ignore[no-untyped-call]
                    timeout=self.settings.network_timeout,
                )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), timeout=self.settings.network_timeout)

    async def _await_subscription(self, pubsub: aioredis.client.PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=self.settings.network_timeout)
            if message is not None and message.get("type") in (b"subscribe", "subscribe"):
                return

    async def _receive(self, pubsub: aioredis.client.PubSub) -> None:
        interval = self.settings.health_check_interval
        last_heard = time.monotonic()
        ping_sent = False
        last_beat = 0.0
        _, runner = self._ensure_runtime()
        while not self._stopping:
            if time.monotonic() - last_beat >= interval:
                await self._heartbeat()
                await self._follow_switch(runner)
                last_beat = time.monotonic()
            message = await pubsub.get_message(timeout=min(1.0, interval))
            now = time.monotonic()
            if message is None:
                if now - last_heard > interval + self.settings.network_timeout and ping_sent:
                    raise RedisUnavailableError(
                        f"no answer from Redis for {now - last_heard:.1f} s (PING unanswered)"
                    )
                if now - last_heard > interval and not ping_sent:
                    await pubsub.ping()
                    ping_sent = True
                continue
            last_heard, ping_sent = now, False
            self._on_message(message, runner)

    def _on_message(self, message: dict[str, Any], runner: CoalescingRunner[Snapshot]) -> None:
        kind = message.get("type")
        if kind in ("pong", b"pong"):
            return
        if kind not in ("message", b"message"):
            return
        self.stats.messages_received += 1
        data = message.get("data")
        if not isinstance(data, bytes) or len(data) > 1024 or not _printable(data):
            self.stats.malformed_messages += 1
            logger.warning(
                "ignoring malformed message on %s (%d bytes); refreshing anyway",
                self.settings.redis_channel,
                len(data) if isinstance(data, bytes | str) else 0,
                extra={"action": "malformed_message"},
            )
        runner.submit(LEVEL_REDIS, "event").add_done_callback(_consume)

    async def _follow_switch(self, runner: CoalescingRunner[Snapshot]) -> None:
        """Enter or leave database-read mode when ``vocabsync rollback`` flips the switch."""
        store, _ = self._ensure_runtime()
        if self._switch is None:
            self._switch = SyncSwitch(self.settings, "reads go to PostgreSQL")
        async with asyncio.timeout(self.settings.network_timeout):
            flipped = await self._switch.poll(store.client)
        if flipped and not self.sync_disabled:
            runner.submit(LEVEL_REDIS, "resync").add_done_callback(_consume)

    @property
    def identity(self) -> str:
        return self.settings.instance_name or process_identity()

    async def _heartbeat(self) -> None:
        """Tell ``vocabsync status`` this instance is alive and which snapshot it serves."""
        store, _ = self._ensure_runtime()
        snapshot = self._snapshot
        async with asyncio.timeout(self.settings.network_timeout):
            await write_heartbeat(
                store.client,
                self.settings,
                "instance",
                self.identity,
                {
                    "version": snapshot.version,
                    "refreshed_at": snapshot.refreshed_at,
                    "fallback": self.in_fallback,
                    "source": self.source,
                },
            )

    # --- shutdown -----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the listener and close every connection; nothing is left running."""
        self._stopping = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
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
        self._client, self._store = None, None
        await self.loader.close_connection()
        self.listener_running = False
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
        return MetricValues(
            component="api",
            running=self._listener is not None and not self._listener.done(),
            links=links,
            snapshot=self._snapshot,
            counters={
                "vocabsync_database_loads_total": stats.database_loads,
                "vocabsync_messages_received_total": stats.messages_received,
            },
            gauges={"vocabsync_fallback": 1.0 if self.in_fallback else 0.0},
            reads=dict(stats.reads),
        )

    def status(self) -> dict[str, Any]:
        """The state /ready reports: links, listener, snapshot age (no secrets)."""
        age = self.snapshot_age
        return {
            "has_snapshot": self.has_snapshot,
            "version": self._snapshot.version,
            "snapshot_age_seconds": None if age is None else round(age, 3),
            "source": self.source,
            "redis": "connected" if self.redis_available else "unavailable",
            "listener": "running" if self.listener_running else "stopped",
            "database": {None: "unknown", True: "ok", False: "unavailable"}[self.database_ok],
            "fallback": self.in_fallback,
            "database_loads": self.stats.database_loads,
            "last_error": self.last_error,
        }


def _primary_trigger(reasons: frozenset[str]) -> str:
    for trigger in ("manual", "fallback", "startup", "resync", "event"):
        if trigger in reasons:
            return trigger
    return "event"


def _printable(data: bytes) -> bool:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return False
    return text.isprintable()


def _consume(future: asyncio.Future[Snapshot]) -> None:
    """Done-callback for fire-and-forget refreshes: failures are already logged."""
    if not future.cancelled():
        future.exception()


redis_vocabulary_cache = RedisVocabularyCache()
"""The design document's module-level instance; connects to nothing until started."""
