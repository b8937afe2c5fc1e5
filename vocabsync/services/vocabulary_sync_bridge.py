"""VocabularySyncBridge: NOTIFY -> probe of the touched terms -> a delta in the Redis log.

The bridge is the only process that turns database changes into log entries, so the database pays
one small read per change for the whole deployment, however many API instances follow the log.

Each notification lists the terms a statement touched (:mod:`vocabsync.db.notifications`); the
bridge asks PostgreSQL which of them are still present, with index lookups at one snapshot
(:mod:`vocabsync.services.change_probe`), and appends the resulting delta (terms added and removed
per field) to the log (:mod:`vocabsync.services.log_writer`). Work per change is proportional to
the change. Everything that arrives during one probe is coalesced into the next.

It runs under the shared :class:`~vocabsync.supervisor.Supervisor`. A *session* connects to both
sides, waits for leadership, LISTENs and resyncs (a full read of the database compared with the
log: NOTIFY is at-most-once, so whatever changed while a link was down is caught up here, and
written as one delta, not a reload for every instance), then serves notifications. Any link
failure ends the session; the supervisor retries with backoff. SIGTERM/SIGINT end it in seconds.

Run it with ``vocabsync bridge`` or ``python -m vocabsync.services.vocabulary_sync_bridge``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from prometheus_client import start_http_server
from psycopg import sql
from redis.exceptions import RedisError

from vocabsync.backoff import Backoff
from vocabsync.config import Settings, get_settings
from vocabsync.db.connection import AsyncConn, connect, describe_pg_error, execute_with_deadline
from vocabsync.db.notifications import parse_notification
from vocabsync.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    RedisUnavailableError,
    VocabSyncError,
)
from vocabsync.metrics import LINKS, LinkStats, Metrics, MetricValues
from vocabsync.services.change_probe import probe
from vocabsync.services.heartbeat import (
    process_identity,
    read_heartbeats,
    remove_heartbeat,
    write_heartbeat,
)
from vocabsync.services.log_writer import LogWriter, Observation, StaleReadError
from vocabsync.services.redis_client import describe_redis_error, redis_client
from vocabsync.services.snapshot_store import SeedKeyWriter, SnapshotStore
from vocabsync.services.sync_control import SyncSwitch
from vocabsync.services.vocabulary_loader import VocabularyLoader
from vocabsync.services.vocabulary_log import VocabularyLog
from vocabsync.supervisor import Supervisor
from vocabsync.vocabulary import Delta, Snapshot, TermSet, version_from_snapshot

logger = logging.getLogger(__name__)

_Read = TypeVar("_Read")

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
    """Turns ``vocabulary_changed`` notifications into deltas in the vocabulary log."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.loader = VocabularyLoader(self.settings, purpose="bridge")
        self.writer = LogWriter(VocabularyLog(redis_client(self.settings), self.settings))
        self.backoff = Backoff(
            self.settings.reconnect_initial_delay,
            self.settings.reconnect_max_delay,
            self.settings.reconnect_jitter,
        )
        self.supervisor = Supervisor(
            "vocabsync-bridge-session", self._session, self.backoff, on_failure=self._log_failure
        )
        self.running = False
        self.connected = False
        self.notifications_received = 0
        self.messages_published = 0
        self.sessions_started = 0
        self.unknown_tables = 0
        self.probes = 0
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

    @property
    def snapshot(self) -> Snapshot:
        """The state the log holds, as this bridge last wrote or read it."""
        return self.writer.state

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
                "vocabsync_database_loads_total": self.loader.loads + self.probes,
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
        self.supervisor.stop()

    async def run(self) -> None:
        """Run sessions until :meth:`stop`; reconnect with backoff after any failure."""
        self.running = True
        logger.info(
            "bridge starting: PostgreSQL %s (LISTEN %s), Redis %s (log %s, channel %s)",
            self.settings.postgres_display,
            self.settings.pg_channel,
            self.settings.redis_display,
            self.writer.log.log_key,
            self.settings.redis_channel,
            extra={"action": "bridge_starting"},
        )
        try:
            await self.supervisor.run()
        finally:
            self.running = False
            self.connected = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.writer.log.client.aclose(), timeout=self.settings.network_timeout
                )
            logger.info("bridge stopped", extra={"action": "bridge_stopped"})

    def _log_failure(self, exc: BaseException) -> None:
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

    async def _session(self, healthy: Callable[[], None]) -> None:
        conn: AsyncConn | None = None
        client = redis_client(self.settings)
        self.writer.log = VocabularyLog(client, self.settings)
        store = SnapshotStore(client, self.settings)
        seed = SeedKeyWriter(store)
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
            await self._become_leader(conn, store, healthy)
            await conn.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(self.settings.pg_channel))
            )
            self.sessions_started += 1
            await self._resync(conn, "resync")
            await self._heartbeat(store)
            self.connected = True
            healthy()
            logger.info(
                "bridge active: connected and resynced (version %d); listening",
                self.snapshot.version,
                extra={"action": "bridge_listening", "version": self.snapshot.version},
            )
            await self._serve(conn, store, seed)
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

    async def _become_leader(
        self, conn: AsyncConn, store: SnapshotStore, healthy: Callable[[], None]
    ) -> None:
        """Wait as a standby until this session holds the bridge's advisory lock.

        The lock is held by the database session itself: a bridge that dies, or whose backend is
        terminated, loses it with its connection, and a standby takes over at its next attempt.
        Standing by, connected to both sides, is a healthy session: it resets the reconnect
        backoff, or every lost standby session would double the next wait (up to minutes
        without a standby, found by the chaos soak).
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
                healthy()
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
                    "position": self.writer.position,
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

    async def _serve(self, conn: AsyncConn, store: SnapshotStore, seed: SeedKeyWriter) -> None:
        interval = self.settings.health_check_interval
        last_check = time.monotonic()
        next_resync = time.monotonic() + self.settings.resync_interval
        while True:
            wait = min(1.0, interval)
            if seed.written is not self.snapshot and self.snapshot.is_complete:
                wait = min(wait, max(0.05, seed.interval))
            payloads = await self._collect(conn, wait=wait)
            if payloads:
                self.notifications_received += len(payloads)
                await self._on_payloads(conn, payloads)
            if time.monotonic() - last_check >= interval:
                await self._check_links(conn, store)
                last_check = time.monotonic()
            if time.monotonic() >= next_resync:
                await self._resync(conn, "resync")
                next_resync = time.monotonic() + self.settings.resync_interval
            if not self.sync_disabled:
                self._failing_link = "redis"
                await seed.write_if_due(self.snapshot)
                self._failing_link = None

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
            await self._resync(conn, "resync")

    def _changes(self, payloads: list[str]) -> tuple[dict[str, set[str]], set[str], list[str]]:
        """Coalesce payloads: touched terms per field, fields to read whole, table names."""
        touched: dict[str, set[str]] = {}
        reload: set[str] = set()
        tables: list[str] = []
        for payload in payloads:
            change = parse_notification(payload, self.settings.sources)
            if change is None:
                self.unknown_tables += 1
                logger.warning(
                    "notification %r names no configured table; reading every field",
                    payload[:100],
                    extra={"action": "unknown_table"},
                )
                reload.update(self.settings.sources.fields)
                continue
            tables.append(change.table)
            reload.update(change.reload)
            for name, terms in change.touched.items():
                touched.setdefault(name, set()).update(terms)
        for name in reload:
            touched.pop(name, None)
        return touched, reload, list(dict.fromkeys(tables))

    async def _on_payloads(self, conn: AsyncConn, payloads: list[str]) -> None:
        touched, reload, tables = self._changes(payloads)
        logger.info(
            "change in %s (%d notifications, %d terms touched, %d fields read whole)",
            ", ".join(t[:100] for t in tables) or "?",
            len(payloads),
            sum(len(v) for v in touched.values()),
            len(reload),
            extra={"action": "notification_received", "tables": tables},
        )
        if self.sync_disabled:
            return
        message = ",".join(tables) or RESYNC_MESSAGE
        finished = self.metrics.time_refresh("event")
        started = time.perf_counter()
        try:
            written, delta = await self._read_then_write(
                lambda: self._observe(conn, touched, reload),
                lambda seen: self.writer.write_observation(seen, message=message),
            )
            if not written:
                await self._resync(conn, "resync")
                finished(True)
                return
        except Exception:
            finished(False)  # counted in vocabsync_refresh_failures_total; the session ends
            raise
        finished(True)
        if delta is not None:
            self.messages_published += 1
        logger.info(
            "published %s (version %d, %s, %.1f ms)",
            message,
            self.snapshot.version,
            f"{delta.size} terms changed" if delta is not None else "unchanged",
            (time.perf_counter() - started) * 1000,
            extra={"action": "published", "version": self.snapshot.version},
        )

    async def _read_then_write(
        self,
        read: Callable[[], Awaitable[_Read]],
        write: Callable[[_Read], Awaitable[Delta | None]],
    ) -> tuple[bool, Delta | None]:
        """Read the database, then write what it showed; read again (three times at most) when
        the log moved past the read meanwhile. Returns (written, the delta written)."""
        for _ in range(3):
            seen = await read()
            self._failing_link = "redis"
            try:
                return True, await write(seen)
            except StaleReadError:
                continue
            finally:
                self._failing_link = None
        return False, None

    async def _observe(
        self, conn: AsyncConn, touched: dict[str, set[str]], reload: set[str]
    ) -> Observation:
        found = await probe(conn, self.settings, touched, reload)
        self.probes += 1
        absent = {
            name: terms - found.present.get(name, frozenset()) for name, terms in touched.items()
        }
        return Observation(
            version=version_from_snapshot(found.xmax, found.in_progress),
            identity=found.identity,
            present=found.present,
            absent=absent,
            full={name: TermSet(terms) for name, terms in found.full.items()},
        )

    async def _resync(self, conn: AsyncConn, trigger: str) -> None:
        """Read the whole vocabulary and make the log hold it (one delta, or a reset)."""
        if self.sync_disabled:
            return
        started = time.perf_counter()
        finished = self.metrics.time_refresh(trigger)
        try:
            written, delta = await self._read_then_write(
                lambda: self.loader.load_on(conn),
                lambda loaded: self.writer.write_full(loaded, message=RESYNC_MESSAGE),
            )
            if not written:
                raise RedisUnavailableError("the log kept moving ahead of three full reads")
        except Exception:
            finished(False)  # counted in vocabsync_refresh_failures_total; the session ends
            raise
        finished(True)
        if delta is not None:
            self.messages_published += 1
        logger.info(
            "resynced (version %d, %s, %.1f ms)",
            self.snapshot.version,
            "unchanged" if delta is None else f"{delta.size} terms changed",
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
