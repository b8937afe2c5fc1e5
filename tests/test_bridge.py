"""The bridge against real PostgreSQL and Redis: forwarding, coalescing, recovery, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest
import redis.asyncio as aioredis

from tests.fixtures_app import derive, execute, expected_vocabulary
from tests.waiting import wait_until, wait_until_async
from vocabsync.config import Settings
from vocabsync.local.servers import LocalRedis
from vocabsync.services.vocabulary_log import VocabularyLog
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.vocabulary import FIELDS, FieldDelta, Snapshot


@pytest.fixture
async def subscriber(settings: Settings) -> AsyncIterator[aioredis.client.PubSub]:
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(settings.redis_channel)
    await wait_until_async(lambda: pubsub.subscribed, message="subscribe")
    try:
        yield pubsub
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def stored_snapshot(settings: Settings) -> Snapshot | None:
    """The state the vocabulary log holds in Redis (what instances follow)."""
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    try:
        found = await VocabularyLog(client, settings).read_full()
    finally:
        await client.aclose()
    return None if found is None else found[1]


async def seed_key_snapshot(settings: Settings) -> Snapshot | None:
    """The design document's ``vocabulary`` key (whole JSON, with a TTL)."""
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    try:
        raw = await client.get(settings.redis_key)
        ttl = await client.ttl(settings.redis_key)
    finally:
        await client.aclose()
    if raw is None:
        return None
    assert 0 < ttl <= settings.vocabulary_ttl_seconds
    return Snapshot.from_json(raw)


async def next_messages(pubsub: aioredis.client.PubSub, count: int) -> list[str]:
    received: list[str] = []

    async def collect() -> bool:
        message = await pubsub.get_message(timeout=0.05)
        if message is not None:
            received.append(message["data"].decode())
        return len(received) >= count

    await wait_until_async(collect, timeout=10, interval=0, message="published messages")
    return received


async def test_resync_at_start_stores_all_six_lists_with_ttl(
    settings: Settings, db_url: str
) -> None:
    execute(db_url, """INSERT INTO "Project"(project_name, location) VALUES ('Alpha', 'Pasig')""")
    bridge = VocabularySyncBridge(settings)
    task = asyncio.create_task(bridge.run())
    try:
        snapshot = await wait_until_async(lambda: stored_snapshot(settings), message="stored")
        assert snapshot.as_lists() == expected_vocabulary(db_url)
        assert snapshot.is_complete
        seed = await wait_until_async(lambda: seed_key_snapshot(settings), message="seed key")
        assert seed.as_lists() == expected_vocabulary(db_url)
    finally:
        bridge.stop()
        await asyncio.wait_for(task, timeout=5)


async def test_change_is_stored_then_published_with_table_name(
    settings: Settings,
    db_url: str,
    bridge: VocabularySyncBridge,
    subscriber: aioredis.client.PubSub,
) -> None:
    execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Diesel')""")
    assert await next_messages(subscriber, 1) == ["ExpensesColumn"]
    # Stored before it was announced: whoever hears the message finds the change in Redis.
    snapshot = await stored_snapshot(settings)
    assert snapshot is not None
    assert snapshot.get("expense_categories") == ("Diesel",)


async def test_a_change_is_logged_as_a_delta_of_its_own_field_only(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    before = bridge.snapshot
    position = bridge.writer.position
    execute(db_url, """INSERT INTO "CashFlow"(file_name) VALUES ('cf.xlsx')""")
    await wait_until_async(
        lambda: bridge.snapshot.get("cashflow_files") == ("cf.xlsx",), message="bridge loaded"
    )
    assert bridge.snapshot.version > before.version
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    try:
        entries = await VocabularyLog(client, settings).read_after(position)
    finally:
        await client.aclose()
    assert [e.kind for e in entries] == ["delta"]
    assert entries[0].prev == position
    assert entries[0].delta is not None
    assert dict(entries[0].delta.fields) == {"cashflow_files": FieldDelta(("cf.xlsx",), ())}
    # Unchanged fields are the very same objects: nothing was copied or reloaded.
    assert all(bridge.snapshot.get(f) is before.get(f) for f in FIELDS if f != "cashflow_files")


BURST = 300


def commit_burst(db_url: str, first_loaded: Callable[[], bool]) -> None:
    """On another thread and connection: one commit, wait until the bridge has loaded it, then
    ``BURST - 1`` more, one transaction each, as fast as they go (while the bridge runs)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("""INSERT INTO "Project"(project_name) VALUES ('P0000')""")
        wait_until(first_loaded, message="the bridge loaded the first commit")
        for index in range(1, BURST):
            conn.execute("""INSERT INTO "Project"(project_name) VALUES (%s)""", (f"P{index:04d}",))


async def test_burst_of_commits_is_coalesced_and_ends_exact(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    """Commits arrive while the bridge is loading (they come from another thread, and the
    bridge has already started working on the burst): notifications that arrive during a load
    cost one follow-up load, not one load each, and the end state is exact."""
    loads_before = bridge.probes
    await asyncio.to_thread(commit_burst, db_url, lambda: bridge.probes > loads_before)
    # Notifications are served in order: once this later change is loaded, the burst is done.
    execute(db_url, """INSERT INTO "CashFlowColumn"(column_name) VALUES ('After the burst')""")
    await wait_until_async(
        lambda: bridge.snapshot.get("cashflow_categories") == ("After the burst",),
        timeout=30,
        message="the bridge served every notification of the burst",
    )
    stored = await stored_snapshot(settings)
    assert stored is not None
    assert stored.as_lists() == expected_vocabulary(db_url)
    assert len(stored.get("projects")) == BURST
    loads = bridge.probes - loads_before  # the burst's and the last change's
    assert loads < BURST // 2, f"{loads} loads for {BURST + 1} commits: not coalesced"


async def test_unknown_table_in_payload_reloads_everything_and_keeps_running(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    execute(db_url, "SELECT pg_notify('vocabulary_changed', 'NoSuchTable')")
    execute(db_url, "SELECT pg_notify('vocabulary_changed', repeat('x', 7000))")
    await wait_until_async(lambda: bridge.unknown_tables >= 2, message="unknown tables counted")
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('After garbage')""")
    await wait_until_async(
        lambda: "After garbage" in bridge.snapshot.get("projects"), message="still serving"
    )
    assert bridge.connected


async def test_terminated_backend_reconnects_and_resyncs(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    sessions = bridge.sessions_started
    with psycopg.connect(db_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'vocabsync-bridge' AND datname = current_database()"
        ).fetchall()
        assert killed == [(True,)]
        # This change commits while the bridge has no connection: only the resync can catch it.
        conn.execute("""INSERT INTO "Project"(project_name) VALUES ('While down')""")
    await wait_until_async(lambda: bridge.sessions_started > sessions, message="reconnected")

    async def converged() -> bool:
        stored = await stored_snapshot(settings)
        return stored is not None and "While down" in stored.get("projects")

    await wait_until_async(converged, message="change made while disconnected reaches Redis")


async def test_redis_restart_is_survived_and_the_key_restored(
    settings: Settings, db_url: str, redis_server: LocalRedis, bridge: VocabularySyncBridge
) -> None:
    sessions = bridge.sessions_started
    redis_server.kill()
    execute(db_url, """INSERT INTO "CashFlowColumn"(column_name) VALUES ('Collections')""")
    redis_server.restart()  # empty: this Redis keeps nothing on disk
    await wait_until_async(lambda: bridge.sessions_started > sessions, message="reconnected")

    async def restored() -> bool:
        stored = await stored_snapshot(settings)
        return stored is not None and stored.get("cashflow_categories") == ("Collections",)

    await wait_until_async(restored, message="snapshot rewritten after Redis came back")


async def test_stop_returns_promptly_even_while_reconnecting(settings: Settings) -> None:
    dead = derive(settings, redis_url=None, redis_host="127.0.0.1", redis_port=1)
    bridge = VocabularySyncBridge(dead)
    task = asyncio.create_task(bridge.run())
    await wait_until_async(lambda: bridge.backoff.attempt >= 2, message="retrying")
    bridge.stop()
    await asyncio.wait_for(task, timeout=5)
    assert not bridge.running


def refresh_failures(bridge: VocabularySyncBridge, trigger: str) -> float:
    value = bridge.metrics.registry.get_sample_value(
        "vocabsync_refresh_failures_total", {"trigger": trigger}
    )
    return value or 0.0


async def test_failed_refreshes_are_counted_in_the_failure_metric(
    settings: Settings, db_url: str
) -> None:
    """A load that cannot finish (the table is locked past the query deadline) is a failed
    refresh: ``vocabsync_refresh_failures_total`` says so, and the bridge recovers after."""
    bridge = VocabularySyncBridge(derive(settings, query_timeout=1.0))
    task = asyncio.create_task(bridge.run())
    locker = psycopg.connect(db_url)  # a transaction stays open while the lock is held
    try:
        await wait_until_async(lambda: bridge.connected, message="bridge connected")
        assert refresh_failures(bridge, "event") == 0
        # Both statements run before the bridge's loop can send its query: the commit's
        # notification is queued, and the load it causes waits for the lock.
        execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Locked out')""")
        locker.execute('LOCK TABLE "ExpensesColumn" IN ACCESS EXCLUSIVE MODE')
        await wait_until_async(
            lambda: refresh_failures(bridge, "event") >= 1, message="the failure is counted"
        )
        locker.rollback()
        await wait_until_async(
            lambda: bridge.snapshot.get("expense_categories") == ("Locked out",),
            timeout=20,
            message="the bridge recovered",
        )
        assert 'vocabsync_refresh_failures_total{trigger="event"} 1.0' in (
            bridge.metrics.render().decode()
        )
    finally:
        locker.close()
        bridge.stop()
        await asyncio.wait_for(task, timeout=10)


async def test_a_flushed_redis_gets_the_whole_state_back_not_a_partial_one(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    """Redis emptied under a connected bridge (FLUSHALL, a restart it did not notice): the next
    change must not write a delta on top of nothing, it must bring the whole state back."""
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Before flush')""")
    await wait_until_async(
        lambda: "Before flush" in bridge.snapshot.get("projects"), message="bridge loaded"
    )
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('After flush')""")

    async def whole() -> bool:
        stored = await stored_snapshot(settings)
        return stored is not None and stored.as_lists() == expected_vocabulary(db_url)

    await wait_until_async(whole, timeout=20, message="the whole state rewritten")
