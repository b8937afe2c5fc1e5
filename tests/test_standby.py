"""PostgreSQL failover: a primary, a streaming standby, the primary killed, the standby promoted.

DATABASE_URL lists both servers (``host=primary,standby`` with ``target_session_attrs=
read-write``). A real bridge and two instances run in this event loop on a private Redis; writers
commit in a thread through the same multi-host URL. After ``kill -9`` of the primary and the
promotion of the standby, the bridge must find the new primary, LISTEN there and resync, and every
instance must converge to exactly the new primary's state: also when the standby was behind, in
which case a change that only the old primary saw disappears, although the old vocabulary's
version is the higher one (the promoted server starts a new timeline, a new database history).
And when the old primary comes back as a writable server (split brain), nothing lets its older
history replace the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from tests.fixtures_app import execute, expected_vocabulary, make_settings, run_cli
from tests.test_bridge import stored_snapshot
from tests.waiting import wait_until, wait_until_async
from vocabsync.config import Settings, postgres_hosts, writable_conninfo
from vocabsync.db.connection import connect
from vocabsync.db.identity import is_older_history, timeline_of
from vocabsync.errors import DatabaseUnavailableError, VocabSyncError
from vocabsync.local.replication import StandbyPostgres, in_recovery, wal_position
from vocabsync.local.servers import LocalPostgres, find_free_port, resolve_flavor
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_state import VocabularyState
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.vocabulary import Snapshot

# --- Several hosts in DATABASE_URL --------------------------------------------------------------

MULTI_URL = "postgresql://app:s3cr%40t,pw@db-a:5432,db-b:5433/app"
MULTI_CONNINFO = "host=db-a,db-b port=5432,5433 dbname=app user=app password='s3cr@t,pw'"


@pytest.mark.parametrize("given", [MULTI_URL, MULTI_CONNINFO])
def test_several_hosts_without_attrs_get_read_write_for_the_bridge(given: str) -> None:
    found = psycopg.conninfo.conninfo_to_dict(writable_conninfo(given))
    assert found["target_session_attrs"] == "read-write"
    assert (found["host"], found["port"]) == ("db-a,db-b", "5432,5433")
    assert found["password"] == "s3cr@t,pw"
    assert postgres_hosts(given) == ("db-a", "db-b")


@pytest.mark.parametrize(
    ("given", "attrs"),
    [
        (f"{MULTI_URL}?target_session_attrs=read-write", "read-write"),  # as given
        (f"{MULTI_URL}?target_session_attrs=primary", "primary"),  # also only the primary
        (f"{MULTI_URL}?target_session_attrs=prefer-standby", "read-write"),  # for the instances
        (f"{MULTI_URL}?target_session_attrs=any", "read-write"),
        ("postgresql://app@db:5432/app?target_session_attrs=standby", "read-write"),
        ("postgresql://app@db:5432/app", None),  # one host: left alone (poolers)
    ],
)
def test_the_bridge_session_insists_on_a_writable_server(given: str, attrs: str | None) -> None:
    assert (
        psycopg.conninfo.conninfo_to_dict(writable_conninfo(given)).get("target_session_attrs")
        == attrs
    )
    if attrs is None or f"target_session_attrs={attrs}" in given:
        assert writable_conninfo(given) == given  # nothing rewritten when nothing changes


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        (
            f"{MULTI_URL}?target_session_attrs=read-write",
            "postgresql://app:***@db-a:5432,db-b:5433/app?target_session_attrs=read-write",
        ),
        (MULTI_CONNINFO, "host=db-a,db-b port=5432,5433 dbname=app user=app password=***"),
    ],
)
def test_multi_host_urls_are_masked(given: str, shown: str) -> None:
    settings = make_settings(given, "redis://127.0.0.1:1/0")
    assert settings.postgres_display == shown
    writable = settings.redact(settings.writable_postgres_conninfo)
    assert "s3cr" not in writable
    assert ",pw" not in writable
    assert "target_session_attrs=read-write" in writable


async def test_no_host_reachable_names_them_all_without_the_password() -> None:
    """Every attempt failed: the error lists each host (the operator sees which one is down and
    which one refused to be written), and never the password."""
    ports = [find_free_port(), find_free_port()]
    url = f"postgresql://app:s3cr%40t@127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/app"
    settings = make_settings(url, "redis://127.0.0.1:1/0", network_timeout=1.0)
    with pytest.raises(DatabaseUnavailableError) as caught:
        await connect(settings, "bridge")
    message = str(caught.value)
    assert "a writable primary" in message
    assert all(str(port) in message for port in ports)
    assert "s3cr" not in message


# --- Histories ---------------------------------------------------------------------------------

OLD = "7301234567890123456/1/16384/16500/vocabsync generation 1f0c"
PROMOTED = "7301234567890123456/2/16384/16500/vocabsync generation 1f0c"


def test_only_an_earlier_timeline_of_the_same_database_is_an_older_history() -> None:
    assert timeline_of(PROMOTED) == 2
    assert is_older_history(OLD, PROMOTED)
    assert not is_older_history(PROMOTED, OLD)  # a promotion moves forward
    assert not is_older_history(OLD, OLD)
    other_cluster = "7309999999999999999/1/16384/16500/vocabsync generation 1f0c"
    restored = "7301234567890123456/1/16384/17000/vocabsync generation 9a9a"
    revoked = "//16384/16500/vocabsync generation 1f0c"  # a provider revoked pg_control_system
    for other in (other_cluster, restored, revoked, ""):
        assert not is_older_history(other, PROMOTED)
        assert not is_older_history(PROMOTED, other)


def test_an_instance_does_not_serve_a_database_read_of_the_old_timeline() -> None:
    """In fallback an instance reads PostgreSQL through DATABASE_URL; if that reaches an old
    primary that came back, its read (with its higher version) must not replace the promoted
    server's vocabulary. The log is always followed: a reset written there is the truth."""
    state = VocabularyState()
    promoted = Snapshot.from_lists({"projects": ["Keep Me"]}, 100, identity=PROMOTED)
    assert state.adopt(promoted, "1-0", "redis")
    stale = Snapshot.from_lists({"projects": ["Ghost"]}, 900, identity=OLD)
    assert not state.adopt(stale, "", "database")
    assert state.snapshot is promoted
    newer = Snapshot.from_lists({"projects": ["New"]}, 50, identity=PROMOTED.replace("/2/", "/3/"))
    assert state.adopt(newer, "", "database")  # a later promotion: a new history, lower version


# --- Failover with real servers ----------------------------------------------------------------

CONVERGE_S = 60.0
"""Deadline for kill -> every instance serves the new primary (promotion included; the shared
test machine may be loaded)."""

SEED = [
    ("Marikina Flood Control", "Marikina"),
    ("Keep Me Project", "Pasig"),
    ("Cebu Port Expansion", "Cebu"),
]


@dataclass
class Cluster:
    """A primary, its streaming standby, one database, and the URLs to reach it."""

    primary: LocalPostgres
    standby: StandbyPostgres
    dbname: str

    def url_on(self, server: LocalPostgres) -> str:
        return server.url_for(self.dbname)

    def multi_host_url(self, *servers: LocalPostgres, attrs: str | None = "read-write") -> str:
        hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
        query = f"?target_session_attrs={attrs}" if attrs else ""
        return f"postgresql://postgres@{hosts}/{self.dbname}{query}"

    @property
    def url(self) -> str:
        """DATABASE_URL of the deployment: primary first, then the standby, writable only."""
        return self.multi_host_url(self.primary, self.standby)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    primary = LocalPostgres(flavor=resolve_flavor())
    standby = StandbyPostgres(primary)
    try:
        if not standby.available:
            pytest.skip("pg_basebackup is not beside these server binaries")
        primary.start()
        dbname = f"failover_{uuid.uuid4().hex[:12]}"
        execute(primary.url, f'CREATE DATABASE "{dbname}"')
        standby.start()
        found = Cluster(primary, standby, dbname)
        # `vocabsync migrate` with the standby listed first and no target_session_attrs: it
        # must add read-write itself (on the standby, every DDL statement would fail).
        migrate_url = found.multi_host_url(standby, primary, attrs=None)
        result = run_cli("migrate", env={**os.environ, "DATABASE_URL": migrate_url})
        assert result.returncode == 0, result.stderr
        for name, location in SEED:
            execute(
                found.url_on(primary),
                'INSERT INTO "Project"(project_name, location) VALUES (%s, %s)',
                (name, location),
            )
        execute(
            found.url_on(primary), """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Fuel')"""
        )
        yield found
    finally:
        standby.cleanup()
        primary.cleanup()


def identity_of(url: str) -> str:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT public.vocabsync_database_identity()").fetchone()
    assert row is not None
    return str(row[0])


def terms(lists: dict[str, list[str]]) -> dict[str, set[str]]:
    return {name: set(values) for name, values in lists.items()}


def wait_caught_up(cluster: Cluster) -> None:
    """Everything the primary committed so far has been replayed on the standby."""
    position = wal_position(cluster.primary)
    wait_until(
        lambda: cluster.standby.replayed_up_to(position),
        timeout=CONVERGE_S,
        message="standby replayed the primary's WAL",
    )


class Writers:
    """Commits vocabulary changes in a thread through the multi-host URL until stopped.

    Connection errors (the primary killed, no writable server during the promotion) are counted
    and retried on a new connection, as an application with the same DATABASE_URL would.
    """

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.commits = 0
        self.failures = 0
        self.servers: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"writers-{prefix}", daemon=True)

    def __enter__(self) -> Writers:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "writer thread did not stop"

    def _run(self) -> None:
        conn: psycopg.Connection[tuple[object, ...]] | None = None
        n = 0
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.url, autocommit=True, connect_timeout=2)
                    self.servers.add(f"{conn.info.host}:{conn.info.port}")
                n += 1
                conn.execute(
                    'INSERT INTO "Project"(project_name, location) VALUES (%s, %s)',
                    (f"{self.prefix} {n}", f"{self.prefix} site {n % 5}"),
                )
                if n % 3 == 0:  # some terms go away again
                    conn.execute(
                        'DELETE FROM "Project" WHERE project_name = %s', (f"{self.prefix} {n - 2}",)
                    )
                self.commits += 1
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(0.01)  # pace the writes: the test machine is shared
        if conn is not None:
            conn.close()


@contextlib.asynccontextmanager
async def running_bridge(settings: Settings) -> AsyncIterator[VocabularySyncBridge]:
    bridge = VocabularySyncBridge(settings)
    task = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        bridge.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=15)


@contextlib.asynccontextmanager
async def running_instances(
    settings: Settings, count: int
) -> AsyncIterator[list[RedisVocabularyCache]]:
    caches = [RedisVocabularyCache(settings) for _ in range(count)]
    try:
        for cache in caches:
            await cache.start_listener()
        yield caches
    finally:
        for cache in caches:
            await cache.stop()


async def converge(
    caches: Sequence[RedisVocabularyCache], settings: Settings, url: str, message: str
) -> tuple[str, dict[str, set[str]]]:
    """Wait until every instance and the state in Redis hold exactly what ``url`` holds, read at
    the database's identity; returns both. No writer may run meanwhile (the target is fixed)."""
    expected = terms(await asyncio.to_thread(expected_vocabulary, url))
    identity = await asyncio.to_thread(identity_of, url)

    def served() -> bool:
        return all(
            cache.snapshot.identity == identity and terms(cache.snapshot.as_lists()) == expected
            for cache in caches
        )

    await wait_until_async(served, timeout=CONVERGE_S, interval=0.01, message=message)
    stored = await stored_snapshot(settings)
    assert stored is not None
    assert stored.identity == identity
    assert terms(stored.as_lists()) == expected
    return identity, expected


async def kill_and_promote(cluster: Cluster) -> tuple[float, float]:
    """kill -9 the primary, promote the standby; returns (kill time, promotion time) as
    ``time.monotonic()`` values."""
    killed_at = time.monotonic()
    await asyncio.to_thread(cluster.primary.kill)
    await asyncio.to_thread(cluster.standby.promote)
    promoted_at = time.monotonic()
    assert not await asyncio.to_thread(in_recovery, cluster.standby)
    return killed_at, promoted_at


def report(case: str, killed_at: float, promoted_at: float, converged_at: float) -> None:
    print(
        f"\n[failover {case}] kill -> converged {converged_at - killed_at:.2f} s "
        f"(promotion {promoted_at - killed_at:.2f} s, promoted -> converged "
        f"{converged_at - promoted_at:.2f} s)"
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_standby_caught_up_bridge_follows_the_promoted_primary(
    cluster: Cluster, redis_url: str
) -> None:
    settings = make_settings(cluster.url, redis_url)
    old_primary_url = cluster.url_on(cluster.primary)
    new_primary_url = cluster.url_on(cluster.standby)
    async with running_bridge(settings) as bridge, running_instances(settings, 2) as caches:
        old_identity, _ = await converge(caches, settings, old_primary_url, "initial state")

        with Writers(cluster.url, "Before") as writers:
            await wait_until_async(
                lambda: writers.commits >= 30, timeout=CONVERGE_S, message="writers committed"
            )
        assert writers.servers == {f"127.0.0.1:{cluster.primary.port}"}
        await asyncio.to_thread(wait_caught_up, cluster)
        _, before = await converge(caches, settings, old_primary_url, "writes served")
        assert any(term.startswith("Before ") for term in before["projects"])
        sessions = bridge.sessions_started
        resets = bridge.writer.resets

        killed_at, promoted_at = await kill_and_promote(cluster)
        new_identity, after = await converge(caches, settings, new_primary_url, "failover")
        report("standby caught up", killed_at, promoted_at, time.monotonic())
        assert new_identity != old_identity
        assert after == before  # caught up: nothing was lost
        assert bridge.sessions_started > sessions
        assert bridge.writer.resets == resets + 1  # the new history replaced the state once

        # The bridge LISTENs on the new primary: writers (same multi-host URL) land there, and
        # their changes arrive as deltas, long before any periodic resync.
        deltas = caches[0].state.deltas_applied
        with Writers(cluster.url, "After") as writers:
            await wait_until_async(
                lambda: writers.commits >= 20, timeout=CONVERGE_S, message="writers after"
            )
        assert writers.servers == {f"127.0.0.1:{cluster.standby.port}"}
        _, final = await converge(caches, settings, new_primary_url, "writes after failover")
        assert any(term.startswith("After ") for term in final["projects"])
        assert caches[0].state.deltas_applied > deltas
        assert bridge.writer.resets == resets + 1


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_standby_behind_a_change_only_the_old_primary_saw_disappears(
    cluster: Cluster, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(cluster.url, redis_url)
    old_primary_url = cluster.url_on(cluster.primary)
    new_primary_url = cluster.url_on(cluster.standby)
    async with running_bridge(settings), running_instances(settings, 2) as caches:
        with Writers(cluster.url, "Before") as writers:
            await wait_until_async(
                lambda: writers.commits >= 20, timeout=CONVERGE_S, message="writers committed"
            )
        await asyncio.to_thread(wait_caught_up, cluster)
        await converge(caches, settings, old_primary_url, "writes served")

        # The standby stops receiving WAL; the old primary goes on: a term added, one removed,
        # and enough transactions that its versions are clearly higher than the standby's.
        await asyncio.to_thread(cluster.standby.detach)
        await asyncio.to_thread(
            wait_until, lambda: not cluster.standby.streaming(), 30, 0.05, "WAL receiver stopped"
        )
        await asyncio.to_thread(commit_on_old_primary_only, old_primary_url)
        _, seen = await converge(caches, settings, old_primary_url, "old primary's last change")
        assert "Ghost of Timeline One" in seen["projects"]
        assert "Keep Me Project" not in seen["projects"]
        old_version = caches[0].snapshot.version

        killed_at, promoted_at = await kill_and_promote(cluster)
        new_identity, after = await converge(caches, settings, new_primary_url, "failover")
        report("standby behind", killed_at, promoted_at, time.monotonic())
        assert "Ghost of Timeline One" not in after["projects"]
        assert "Ghost Category" not in after["expense_categories"]
        assert "Keep Me Project" in after["projects"]
        # The old vocabulary's version was the higher one; it was replaced all the same.
        assert all(cache.snapshot.version < old_version for cache in caches)

        # The old primary comes back, writable, on its old timeline (split brain): a bridge and
        # an instance's manual refresh that reach it must not bring its history back.
        await asyncio.to_thread(cluster.primary.start)
        assert not await asyncio.to_thread(in_recovery, cluster.primary)
        lost = terms(await asyncio.to_thread(expected_vocabulary, old_primary_url))
        assert "Ghost of Timeline One" in lost["projects"]
        stray = make_settings(old_primary_url, redis_url)
        with caplog.at_level(logging.ERROR):
            async with running_bridge(stray) as old_bridge:
                await wait_until_async(
                    lambda: old_bridge.connection_errors["postgres"] >= 2,
                    timeout=CONVERGE_S,
                    message="the stray bridge refused the old history",
                )
        assert any("older history" in record.getMessage() for record in caplog.records)
        async with running_instances(stray, 1) as (stray_instance,):
            with pytest.raises(VocabSyncError, match="older history"):
                await stray_instance.refresh_cache("manual")
            assert stray_instance.snapshot.identity == new_identity
        await converge(caches, settings, new_primary_url, "still the new primary's state")


def commit_on_old_primary_only(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")  # survives the kill: the old primary returns
        conn.execute(
            'INSERT INTO "Project"(project_name, location) VALUES (%s, %s)',
            ("Ghost of Timeline One", "Nowhere"),
        )
        conn.execute("""INSERT INTO "ExpensesColumn"(column_name) VALUES ('Ghost Category')""")
        conn.execute("""DELETE FROM "Project" WHERE project_name = 'Keep Me Project'""")
        for _ in range(100):
            conn.execute(sql.SQL("SELECT pg_current_xact_id()"))
