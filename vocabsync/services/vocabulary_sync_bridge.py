"""VocabularySyncBridge: PostgreSQL NOTIFY -> one load -> Redis snapshot -> Redis PUBLISH.

The bridge is the only process that turns a database change into a Redis snapshot, so the
database pays one load per change for the whole deployment, however many API instances listen.

It runs as a supervised loop. A *session* connects to both sides, LISTENs, does a full resync
(NOTIFY and Pub/Sub are at-most-once: whatever changed while a link was down is caught up here),
then serves notifications, coalescing everything that arrived during the previous load into one
load of the affected fields. Any link failure ends the session; the supervisor waits (first retry
at once, then 5, 10, 20 ... s with jitter, capped) and starts a new one. SIGTERM/SIGINT end it
within seconds.

Run it with ``vocabsync bridge`` or ``python -m vocabsync.services.vocabulary_sync_bridge``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterable

import psycopg
from prometheus_client import start_http_server
from psycopg import sql
from redis.exceptions import RedisError

from vocabsync.backoff import Backoff
from vocabsync.config import Settings, get_settings
from vocabsync.db.connection import AsyncConn, connect, describe_pg_error, execute_with_deadline
from vocabsync.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    RedisUnavailableError,
    VocabSyncError,
)
from vocabsync.metrics import LINKS, LinkStats, Metrics, MetricValues
from vocabsync.services.heartbeat import (
    process_identity,
    read_heartbeats,
    remove_heartbeat,
    write_heartbeat,
)
from vocabsync.services.snapshot_store import SnapshotStore, describe_redis_error, redis_client
from vocabsync.services.sync_control import SyncSwitch
from vocabsync.services.vocabulary_loader import VocabularyLoader
from vocabsync.vocabulary import FIELDS, Snapshot

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 4.0
"""SIGTERM must end the bridge within 5 s, whatever a link is doing."""

RESYNC_MESSAGE = "*"
"""Published after a full resync: every field may have changed."""

_LINK_ERRORS = (VocabSyncError, psycopg.Error, RedisError, OSError, TimeoutError)

FAILURE_LOG_EXISTS_SQL = "SELECT to_regclass('public.vocabsync_trigger_failures') IS NOT NULL"
TRIGGER_FAILURES_SQL = "SELECT coalesce(sum(failures), 0) FROM public.vocabsync_trigger_failures"
"""The liveness queries also read the trigger's failure log, where it exists."""


def _link_of(exc: BaseException) -> str | None:
    if isinstance(exc, RedisError | RedisUnavailableError):
        return "redis"
    if isinstance(exc, psycopg.Error | DatabaseUnavailableError | ConfigurationError):
        return "postgres"
    return None


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
        self.active = False
        self.takeovers = 0
        self.trigger_failures = 0
        self.switch = SyncSwitch(self.settings, "not publishing")
        self.active_since: float | None = None
        self.identity = self.settings.instance_name or process_identity()
        self.started_at = time.time()
        self.link_up = dict.fromkeys(LINKS, False)
        self.connection_errors = dict.fromkeys(LINKS, 0)
        self.reconnects = dict.fromkeys(LINKS, 0)
        self._failing_link: str | None = None
        self._last_failed_link: str | None = None
        self.metrics = Metrics(self)
        self._stop: asyncio.Event | None = None

    @property
    def sync_disabled(self) -> bool:
        """True while `vocabsync rollback` has switched real-time sync off."""
        return self.switch.disabled

    @property
    def metric_values(self) -> MetricValues:
        """This bridge's counters and state, read at scrape time."""
        return MetricValues(
            component="bridge",
            running=self.running,
            links=LinkStats(
                up=dict(self.link_up),
                errors=dict(self.connection_errors),
                reconnects=dict(self.reconnects),
                bad_input={
                    "malformed_message": 0,
                    "corrupted_value": 0,
                    "unknown_table": self.unknown_tables,
                },
            ),
            snapshot=self.snapshot,
            counters={
                "vocabsync_database_loads_total": self.loader.loads,
                "vocabsync_notifications_received_total": self.notifications_received,
                "vocabsync_messages_published_total": self.messages_published,
            },
            gauges={
                "vocabsync_bridge_active": 1.0 if self.active else 0.0,
                "vocabsync_trigger_failures": float(self.trigger_failures),
            },
        )

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
                    done, _ = await asyncio.wait({session}, timeout=STOP_GRACE_SECONDS)
                    if session not in done:
                        logger.error(
                            "session did not stop within %.0f s; abandoning it",
                            STOP_GRACE_SECONDS,
                            extra={"action": "session_abandoned"},
                        )
                        break
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
        store = SnapshotStore(client, self.settings)
        try:
            self._failing_link = "postgres"
            conn = await connect(self.settings, "bridge")
            await self._server_side_keepalives(conn)
            self.link_up["postgres"] = True
            self._failing_link = "redis"
            async with asyncio.timeout(self.settings.network_timeout):
                await client.ping()
            self.link_up["redis"] = True
            self._failing_link = None
            self._count_reconnect()
            await self._become_leader(conn, store)
            await conn.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(self.settings.pg_channel))
            )
            self.sessions_started += 1
            await self._sync(conn, store, None, [RESYNC_MESSAGE], "resync")
            await self._heartbeat(store)
            self.connected = True
            self.backoff.reset()
            logger.info(
                "bridge active: connected and resynced (version %d); listening",
                self.snapshot.version,
                extra={"action": "bridge_listening", "version": self.snapshot.version},
            )
            await self._serve(conn, store)
        except BaseException as exc:
            self._note_failure(exc)
            raise
        finally:
            self.connected = False
            self.active = False
            self.link_up = dict.fromkeys(self.link_up, False)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=self.settings.network_timeout)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    remove_heartbeat(client, self.settings, "bridge", self.identity),
                    timeout=self.settings.network_timeout,
                )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.aclose(), timeout=self.settings.network_timeout)

    async def _server_side_keepalives(self, conn: AsyncConn) -> None:
        """Let the *server* notice a vanished bridge within seconds too.

        Leadership is an advisory lock held by this session; if this host drops off the network
        the server would otherwise keep the session (and the lock) for the kernel's default two
        hours of TCP keepalive, and no standby could take over. Best effort: a pooler may
        refuse these settings, and then its own timeouts apply.
        """
        idle = max(1, round(self.settings.health_check_interval))
        try:
            await conn.execute(
                sql.SQL(
                    "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {idle}; "
                    "SET tcp_keepalives_count = 3; SET tcp_user_timeout = {user_timeout}"
                ).format(idle=sql.Literal(idle), user_timeout=sql.Literal(idle * 4000))
            )
        except psycopg.Error as exc:
            logger.info(
                "server-side keepalives not set (%s); failover waits for the server's own timeouts",
                describe_pg_error(self.settings, exc),
                extra={"action": "keepalives_not_set"},
            )

    async def _become_leader(self, conn: AsyncConn, store: SnapshotStore) -> None:
        """Wait as a standby until this session holds the bridge's advisory lock.

        The lock is held by the database session itself: a bridge that dies, or whose backend is
        terminated, loses it with its connection, and a standby takes over at its next attempt.
        """
        key = f"vocabsync-bridge:{self.settings.pg_channel}"
        announced = False
        while True:
            cursor = await execute_with_deadline(
                conn,
                sql.SQL("SELECT pg_try_advisory_lock(hashtext({}))").format(sql.Literal(key)),
                self.settings.network_timeout,
            )
            row = await cursor.fetchone()
            if row is not None and row[0]:
                self.active = True
                self.active_since = time.time()
                self.takeovers += 1
                await self._heartbeat(store)
                await self._retire_previous_leaders(store)
                return
            if not announced:
                logger.info(
                    "another bridge is active; standing by", extra={"action": "bridge_standby"}
                )
                announced = True
            await self._heartbeat(store)
            await asyncio.sleep(self.settings.leader_poll_interval)

    async def _retire_previous_leaders(self, store: SnapshotStore) -> None:
        """Remove the heartbeats of bridges that claimed leadership before this one got it.

        The lock is exclusive, so such a claim is from a bridge that died or lost its session;
        leaving it until it expires would make ``vocabsync status`` report two active bridges.
        """
        async with asyncio.timeout(self.settings.network_timeout):
            for beat in await read_heartbeats(store.client, self.settings, "bridge"):
                identity = str(beat.get("id"))
                if beat.get("role") == "active" and identity != self.identity:
                    await remove_heartbeat(store.client, self.settings, "bridge", identity)
                    logger.info(
                        "took over from %s",
                        identity,
                        extra={"action": "leader_takeover", "previous": identity},
                    )

    async def _heartbeat(self, store: SnapshotStore) -> None:
        async with asyncio.timeout(self.settings.network_timeout):
            await write_heartbeat(
                store.client,
                self.settings,
                "bridge",
                self.identity,
                {
                    "role": "active" if self.active else "standby",
                    "active_since": self.active_since if self.active else None,
                    "version": self.snapshot.version,
                    "started_at": self.started_at,
                    "published": self.messages_published,
                },
            )

    def _note_failure(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            return
        link = self._failing_link or _link_of(exc)
        if link is not None:
            self.connection_errors[link] += 1
            self._last_failed_link = link

    def _count_reconnect(self) -> None:
        if self._last_failed_link is not None:
            self.reconnects[self._last_failed_link] += 1
            self._last_failed_link = None

    async def _serve(self, conn: AsyncConn, store: SnapshotStore) -> None:
        interval = self.settings.health_check_interval
        last_check = time.monotonic()
        next_resync = time.monotonic() + self.settings.resync_interval
        while True:
            tables = await self._collect(conn, wait=min(1.0, interval))
            if tables:
                self.notifications_received += len(tables)
                await self._on_tables(conn, store, tables)
            if time.monotonic() - last_check >= interval:
                await self._check_links(conn, store)
                last_check = time.monotonic()
            if time.monotonic() >= next_resync:
                await self._sync(conn, store, None, [RESYNC_MESSAGE], "resync")
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
        """A liveness query on each link (a silent half-open connection fails here, in seconds),
        the heartbeat, and the trigger's failure count."""
        deadline = self.settings.network_timeout
        cursor = await execute_with_deadline(conn, FAILURE_LOG_EXISTS_SQL, deadline)
        row = await cursor.fetchone()
        if row is not None and row[0]:
            cursor = await execute_with_deadline(conn, TRIGGER_FAILURES_SQL, deadline)
            row = await cursor.fetchone()
            self.trigger_failures = int(row[0]) if row is not None else 0
        self._failing_link = "redis"
        await self._heartbeat(store)
        flipped = await self.switch.poll(store.client)
        self._failing_link = None
        if flipped and not self.sync_disabled:
            await self._sync(conn, store, None, [RESYNC_MESSAGE], "resync")

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
        await self._sync(conn, store, fields, known or [RESYNC_MESSAGE], "event")

    async def _sync(
        self,
        conn: AsyncConn,
        store: SnapshotStore,
        fields: Iterable[str] | None,
        messages: list[str],
        trigger: str,
    ) -> None:
        """Load ``fields`` (all when None), merge, store in Redis, then announce it."""
        if self.sync_disabled:
            return
        started = time.perf_counter()
        finished = self.metrics.time_refresh(trigger)
        try:
            loaded = await self.loader.load_on(conn, None if fields is None else sorted(fields))
            self.snapshot = self.snapshot.merge(loaded)
            self._failing_link = "redis"
            stored, changed = await store.write(self.snapshot)
            self.snapshot = self.snapshot.merge(stored)
            for message in messages:
                await store.publish(message)
                self.messages_published += 1
        except Exception:
            finished(False)  # counted in vocabsync_refresh_failures_total; the session ends
            raise
        self._failing_link = None
        finished(True)
        logger.info(
            "published %s (version %d, %s, %.1f ms)",
            ",".join(messages),
            self.snapshot.version,
            "stored" if changed else "unchanged",
            (time.perf_counter() - started) * 1000,
            extra={"action": "published", "version": self.snapshot.version},
        )


async def serve_bridge(
    settings: Settings | None = None, *, metrics_port: int | None = None, metrics_host: str = ""
) -> None:
    """Run a bridge until SIGTERM or SIGINT, with Prometheus metrics on ``metrics_port``."""
    bridge = VocabularySyncBridge(settings)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, bridge.stop)
    server = None
    if metrics_port is not None:
        server, thread = start_http_server(
            metrics_port, addr=metrics_host or "0.0.0.0", registry=bridge.metrics.registry
        )
        logger.info(
            "metrics on http://%s:%d/metrics",
            metrics_host or "0.0.0.0",
            server.server_port,
            extra={"action": "metrics_listening"},
        )
    try:
        await bridge.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if server is not None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def run_bridge(settings: Settings | None = None) -> None:
    """Main entry point of the bridge process (the design document's name)."""
    from vocabsync.logs import configure_logging

    settings = settings or get_settings()
    configure_logging(settings.log_level)
    asyncio.run(serve_bridge(settings))


if __name__ == "__main__":
    # Same options, --help and exit statuses as `vocabsync bridge` (the design's deployment files
    # run this). Only the shared command-line module is imported: the CLI imports this module,
    # so importing the CLI here would make the two import each other.
    import sys

    from vocabsync.commandline import bridge_main

    sys.exit(bridge_main(serve_bridge, prog="python -m vocabsync.services.vocabulary_sync_bridge"))
