"""VocabularySyncBridge: PostgreSQL NOTIFY -> one load -> Redis snapshot -> Redis PUBLISH.

The bridge is the only process that turns a database change into a Redis snapshot, so the
database pays one load per change for the whole deployment, however many API instances listen.

It runs as a supervised loop. A *session* connects to both sides, LISTENs, does a full resync
(NOTIFY and Pub/Sub are at-most-once: whatever changed while a link was down is caught up here),
then serves notifications, coalescing everything that arrived during the previous load into one
load of the affected fields. Any link failure ends the session; the supervisor waits (first retry
at once, then 5, 10, 20 ... s with jitter, capped) and starts a new one. SIGTERM/SIGINT end it
within seconds.

Run it with ``vocabsync bridge`` or ``python -m app.services.vocabulary_sync_bridge``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable

import psycopg
from psycopg import sql
from redis.exceptions import RedisError

from app.backoff import Backoff
from app.config import Settings, get_settings
from app.db.connection import AsyncConn, connect, describe_pg_error, execute_with_deadline
from app.errors import VocabSyncError
from app.services.snapshot_store import SnapshotStore, describe_redis_error, redis_client
from app.services.vocabulary_loader import VocabularyLoader
from app.vocabulary import FIELDS, Snapshot

logger = logging.getLogger(__name__)

RESYNC_MESSAGE = "*"
"""Published after a full resync: every field may have changed."""

_LINK_ERRORS = (VocabSyncError, psycopg.Error, RedisError, OSError, TimeoutError)


class VocabularySyncBridge:
    """Forwards ``vocabulary_changed`` notifications as fresh Redis snapshots."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.loader = VocabularyLoader(self.settings, purpose="bridge")
        self.snapshot = Snapshot.empty()
        self.backoff = Backoff(
            self.settings.reconnect_initial_delay,
            self.settings.reconnect_max_delay,
            self.settings.reconnect_jitter,
        )
        self.running = False
        self.connected = False
        self.notifications_received = 0
        self.messages_published = 0
        self.sessions_started = 0
        self.unknown_tables = 0
        self._stop: asyncio.Event | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the bridge to stop; safe from a signal handler."""
        self.running = False
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        """Run sessions until :meth:`stop`; reconnect with backoff after any failure."""
        self._stop = asyncio.Event()
        self.running = True
        logger.info(
            "bridge starting: PostgreSQL %s (LISTEN %s), Redis %s (key %s, channel %s)",
            self.settings.postgres_display,
            self.settings.pg_channel,
            self.settings.redis_display,
            self.settings.redis_key,
            self.settings.redis_channel,
            extra={"action": "bridge_starting"},
        )
        try:
            while not self._stop.is_set():
                delay = self.backoff.next_delay()
                if delay and await self._wait_for_stop(delay):
                    break
                session = asyncio.create_task(self._session(), name="vocabsync-bridge-session")
                stopper = asyncio.create_task(self._stop.wait(), name="vocabsync-bridge-stop")
                done, _ = await asyncio.wait(
                    {session, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                stopper.cancel()
                if session not in done:
                    session.cancel()
                # Outcome handled below; gather never raises with return_exceptions.
                await asyncio.gather(session, return_exceptions=True)
                self._log_session_end(session)
        finally:
            self.running = False
            self.connected = False
            logger.info("bridge stopped", extra={"action": "bridge_stopped"})

    async def _wait_for_stop(self, delay: float) -> bool:
        assert self._stop is not None
        logger.info(
            "reconnecting in %.1f s", delay, extra={"action": "reconnect_wait", "delay": delay}
        )
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        except TimeoutError:
            return False
        return True

    def _log_session_end(self, session: asyncio.Task[None]) -> None:
        if session.cancelled():
            return
        exc = session.exception()
        if exc is None:
            return
        if isinstance(exc, _LINK_ERRORS):
            logger.error(
                "bridge session failed: %s", self._describe(exc), extra={"action": "link_failed"}
            )
        else:
            logger.error(
                "bridge session crashed: %s",
                self._describe(exc),
                exc_info=exc,
                extra={"action": "session_crashed"},
            )

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, RedisError):
            return describe_redis_error(self.settings, exc)
        if isinstance(exc, psycopg.Error):
            return describe_pg_error(self.settings, exc)
        return self.settings.redact(str(exc) or type(exc).__name__)

    # --- one session -----------------------------------------------------------------------

    async def _session(self) -> None:
        conn: AsyncConn | None = None
        client = redis_client(self.settings)
        try:
            conn = await connect(self.settings, "bridge")
            await conn.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(self.settings.pg_channel))
            )
            async with asyncio.timeout(self.settings.network_timeout):
                await client.ping()
            store = SnapshotStore(client, self.settings)
            self.sessions_started += 1
            await self._sync(conn, store, None, [RESYNC_MESSAGE])
            self.connected = True
            self.backoff.reset()
            logger.info(
                "bridge connected and resynced (version %d); listening",
                self.snapshot.version,
                extra={"action": "bridge_listening", "version": self.snapshot.version},
            )
            await self._serve(conn, store)
        finally:
            self.connected = False
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=self.settings.network_timeout)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), timeout=self.settings.network_timeout)

    async def _serve(self, conn: AsyncConn, store: SnapshotStore) -> None:
        interval = self.settings.health_check_interval
        last_check = time.monotonic()
        next_resync = time.monotonic() + self.settings.resync_interval
        while True:
            tables = await self._collect(conn, wait=min(1.0, interval))
            if tables:
                self.notifications_received += len(tables)
                await self._on_tables(conn, store, tables)
                last_check = time.monotonic()
            elif time.monotonic() - last_check >= interval:
                await self._check_links(conn, store)
                last_check = time.monotonic()
            if time.monotonic() >= next_resync:
                await self._sync(conn, store, None, [RESYNC_MESSAGE])
                next_resync = time.monotonic() + self.settings.resync_interval

    async def _collect(self, conn: AsyncConn, wait: float) -> list[str]:
        """Wait up to ``wait`` s for a notification, then take whatever else is already queued."""
        payloads: list[str] = []
        async for notify in conn.notifies(timeout=wait, stop_after=1):
            payloads.append(notify.payload)
        if payloads:
            async for notify in conn.notifies(timeout=0.0):
                payloads.append(notify.payload)
        return payloads

    async def _check_links(self, conn: AsyncConn, store: SnapshotStore) -> None:
        """A liveness query on each link: a silent half-open connection fails here, in seconds."""
        await execute_with_deadline(conn, "SELECT 1", self.settings.network_timeout)
        async with asyncio.timeout(self.settings.network_timeout):
            await store.client.ping()

    async def _on_tables(self, conn: AsyncConn, store: SnapshotStore, payloads: list[str]) -> None:
        tables = list(dict.fromkeys(payloads))
        fields: set[str] = set()
        for table in tables:
            table_fields = self.loader.fields_for_table(table)
            if not table_fields:
                self.unknown_tables += 1
                logger.warning(
                    "notification names an unknown table %r; reloading everything",
                    table[:100],
                    extra={"action": "unknown_table"},
                )
                fields.update(FIELDS)
            fields.update(table_fields)
        logger.info(
            "change in %s (%d notifications)",
            ", ".join(t[:100] for t in tables),
            len(payloads),
            extra={"action": "notification_received", "tables": tables},
        )
        known = [t for t in tables if self.loader.fields_for_table(t)]
        await self._sync(conn, store, fields, known or [RESYNC_MESSAGE])

    async def _sync(
        self,
        conn: AsyncConn,
        store: SnapshotStore,
        fields: Iterable[str] | None,
        messages: list[str],
    ) -> None:
        """Load ``fields`` (all when None), merge, store in Redis, then announce it."""
        started = time.perf_counter()
        loaded = await self.loader.load_on(conn, None if fields is None else sorted(fields))
        self.snapshot = self.snapshot.merge(loaded)
        stored, changed = await store.write(self.snapshot)
        self.snapshot = self.snapshot.merge(stored)
        for message in messages:
            await store.publish(message)
            self.messages_published += 1
        logger.info(
            "published %s (version %d, %s, %.1f ms)",
            ",".join(messages),
            self.snapshot.version,
            "stored" if changed else "unchanged",
            (time.perf_counter() - started) * 1000,
            extra={"action": "published", "version": self.snapshot.version},
        )


async def serve_bridge(settings: Settings | None = None) -> None:
    """Run a bridge until SIGTERM or SIGINT."""
    bridge = VocabularySyncBridge(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, bridge.stop)
    try:
        await bridge.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run_bridge(settings: Settings | None = None) -> None:
    """Main entry point of the bridge process (the design document's name)."""
    from app.logs import configure_logging

    settings = settings or get_settings()
    configure_logging(settings.log_level)
    asyncio.run(serve_bridge(settings))


if __name__ == "__main__":
    run_bridge()
