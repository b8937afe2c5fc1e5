"""RedisVocabularyCache against real Redis and PostgreSQL: events, fallback, recovery, bad input."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.fixtures_app import (
    derive,
    execute,
    expected_vocabulary,
    make_settings,
    replace_vocabulary,
)
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.local.servers import LocalRedis
from vocabsync.services.log_writer import LogWriter, StaleReadError
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_log import LogEntry, VocabularyLog
from vocabsync.services.vocabulary_state import VocabularyState
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.vocabulary import FIELDS, Delta, FieldDelta, Snapshot

CLOSED_REDIS = "redis://127.0.0.1:1/0"
terms = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=0,
    max_size=20,
)


async def append_terms(
    settings: Settings, cache: RedisVocabularyCache, name: str, *terms: str
) -> None:
    """Append a delta to the log as a bridge would (one more version, same history)."""
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    try:
        writer = LogWriter(VocabularyLog(client, settings))
        await writer.catch_up()
        changed = writer.state.apply(Delta({name: FieldDelta(terms, ())}), writer.state.version + 1)
        await writer.write_full(changed)
    finally:
        await client.aclose()


async def test_reads_come_from_memory_without_network(
    cache: RedisVocabularyCache, redis_server: LocalRedis, db_url: str
) -> None:
    assert cache.has_snapshot
    redis_server.kill()
    # Nothing is listening any more, yet get_vocabulary answers at once from the snapshot.
    assert cache.get_vocabulary() == expected_vocabulary(db_url)


async def test_event_adopts_snapshot_from_redis_without_touching_the_database(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge, cache: RedisVocabularyCache
) -> None:
    loads = cache.stats.database_loads
    execute(db_url, """INSERT INTO "Project"(project_name, location) VALUES ('Nueva', 'Cebu')""")
    await wait_until_async(
        lambda: "Nueva" in cache.get_vocabulary()["projects"], message="event adopted"
    )
    assert cache.get_vocabulary()["project_locations"] == ["Cebu"]
    assert cache.stats.database_loads == loads, "an event must not cost a database query"
    assert cache.source == "redis"


@hsettings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(min_value=0, max_value=3))
async def test_listener_initialization_and_subscription(settings: Settings, shift: int) -> None:
    """Feature: real-time-vocabulary-sync, Property 7: Listener initialization and subscription."""
    variant = derive(settings, health_check_interval=0.5 + shift)
    cache = RedisVocabularyCache(variant)
    await cache.start_listener()
    try:
        assert cache.listener_running
        assert cache.has_snapshot
        assert cache.state.position
        received = cache.metric_values.counters["vocabsync_messages_received_total"]
        await append_terms(settings, cache, "projects", f"Listened {shift}")
        await wait_until_async(
            lambda: f"Listened {shift}" in cache.get_vocabulary()["projects"],
            message="log entry applied",
        )
        assert cache.metric_values.counters["vocabsync_messages_received_total"] > received
    finally:
        await cache.stop()
    assert not cache.listener_running


@hsettings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.sampled_from(FIELDS), terms), max_size=8))
async def test_fallback_returns_what_redis_would(
    settings: Settings, db_url: str, rows: list[tuple[str, str]]
) -> None:
    """Feature: real-time-vocabulary-sync, Property 4: Fallback mode provides accurate data."""
    replace_vocabulary(db_url, settings, rows)
    with_redis = RedisVocabularyCache(settings)
    without_redis = RedisVocabularyCache(derive(settings, redis_url=CLOSED_REDIS))
    try:
        await with_redis.refresh_cache("manual")
        snapshot, _ = await without_redis.read_snapshot()
        assert without_redis.in_fallback
        assert snapshot.as_lists() == with_redis.snapshot.as_lists() == expected_vocabulary(db_url)
    finally:
        await with_redis.stop()
        await without_redis.stop()


async def test_redis_down_reads_go_to_the_database_then_recover(
    settings: Settings,
    db_url: str,
    redis_server: LocalRedis,
    bridge: VocabularySyncBridge,
    cache: RedisVocabularyCache,
) -> None:
    """Feature: real-time-vocabulary-sync, Property 5: Redis reconnection after failure."""
    redis_server.kill()
    await wait_until_async(lambda: cache.in_fallback, message="listener noticed Redis is gone")
    execute(db_url, """INSERT INTO "Expenses"(file_name) VALUES ('while-down.xlsx')""")

    async def served_from_database() -> bool:
        snapshot, source = await cache.read_snapshot()
        return source == "database" and "while-down.xlsx" in snapshot.get("expense_files")

    await wait_until_async(served_from_database, message="fallback read returns the database")
    reconnects = cache.stats.reconnects
    redis_server.restart()
    await wait_until_async(lambda: not cache.in_fallback, timeout=15, message="resubscribed")
    assert cache.stats.reconnects > reconnects
    execute(db_url, """INSERT INTO "Expenses"(file_name) VALUES ('after.xlsx')""")
    await wait_until_async(
        lambda: "after.xlsx" in cache.get_vocabulary()["expense_files"], message="events again"
    )
    _, source = await cache.read_snapshot()
    assert source == "memory"


async def test_fallback_reads_are_memoised(settings: Settings, db_url: str) -> None:
    cache = RedisVocabularyCache(derive(settings, redis_url=CLOSED_REDIS, fallback_max_age=60.0))
    try:
        await asyncio.gather(*(cache.read_snapshot() for _ in range(50)))
        await asyncio.gather(*(cache.read_snapshot() for _ in range(50)))
        assert cache.stats.database_loads == 1, "a read spike must not become a query spike"
    finally:
        await cache.stop()


async def test_listener_crash_keeps_serving(
    settings: Settings,
    db_url: str,
    bridge: VocabularySyncBridge,
    cache: RedisVocabularyCache,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Feature: real-time-vocabulary-sync, Property 10: Listener crash fallback behavior."""
    original = cache.state.apply
    crashed = []

    def explode(entry: LogEntry) -> bool:
        if not crashed:
            crashed.append(True)
            raise RuntimeError("boom")
        return original(entry)

    monkeypatch.setattr(cache.state, "apply", explode)
    with caplog.at_level(logging.ERROR):
        execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Before crash')""")
        await wait_until_async(lambda: "listener" in caplog.text, message="crash logged")
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('After crash')""")

    async def served() -> bool:
        snapshot, _ = await cache.read_snapshot()
        return "After crash" in snapshot.get("projects") and "Before crash" in snapshot["projects"]

    await wait_until_async(served, message="still serving the database's data after a crash")
    await wait_until_async(lambda: cache.listener_running, message="listener restarted")


@pytest.mark.parametrize(
    "garbage",
    [
        {"kind": b"\x00\xff\xfe"},
        {"x": b""},
        {"kind": b"delta", "prev": b"0-1", "delta": b"x" * 100_000},
        {"kind": b"delta", "delta": b'{"nope": {"+": [1]}}'},
        {"kind": "🙂 emoji".encode(), "version": b"Project\n\n\x07"},
    ],
)
async def test_malformed_log_entries_are_counted_and_survived(
    settings: Settings,
    db_url: str,
    bridge: VocabularySyncBridge,
    cache: RedisVocabularyCache,
    garbage: dict[str, bytes],
) -> None:
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    try:
        await client.xadd(VocabularyLog(client, settings).log_key, garbage)  # type: ignore[arg-type]
    finally:
        await client.aclose()
    await wait_until_async(
        lambda: (
            cache.metric_values.links.bad_input["malformed_message"] >= 1
            or (cache._follower is not None and cache._follower.gaps >= 1)
        ),
        message="bad entry noticed",
    )
    execute(db_url, """INSERT INTO "CashFlow"(file_name) VALUES ('next.xlsx')""")
    await wait_until_async(
        lambda: "next.xlsx" in cache.get_vocabulary()["cashflow_files"], message="converged"
    )
    assert cache.get_vocabulary() == expected_vocabulary(db_url)
    assert cache.listener_running


@pytest.mark.parametrize("corruption", ["terms of the wrong type", "foreign head"])
async def test_corrupted_state_is_repaired_from_the_database(
    settings: Settings, db_url: str, cache: RedisVocabularyCache, corruption: str
) -> None:
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Repaired')""")
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    log = VocabularyLog(client, settings)
    try:
        if corruption == "terms of the wrong type":
            await client.delete(log.term_keys[0])
            await client.set(log.term_keys[0], b"not a set")
        else:
            await client.hset(log.head_key, mapping={"pos": "garbage", "version": "x"})
        cache.state.position = "0-1"  # as if this instance had missed entries: it must re-read
        await cache.refresh_cache("resync")
        assert "Repaired" in cache.get_vocabulary()["projects"]
        assert cache.stats.corrupted_values >= 1
        found = await log.read_full()
        assert found is not None
        assert found[1].as_lists() == expected_vocabulary(db_url)
    finally:
        await client.aclose()


async def test_an_older_read_never_replaces_a_newer_one(settings: Settings) -> None:
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    log = VocabularyLog(client, settings)
    old = Snapshot.from_lists({name: [f"{name}-old"] for name in FIELDS}, version=1000)
    new = Snapshot.from_lists({name: [f"{name}-new"] for name in FIELDS}, version=2000)
    try:
        writer = LogWriter(log)
        await writer.write_full(new)
        late = LogWriter(log)  # a slow writer whose read finished late
        with pytest.raises(StaleReadError):
            await late.write_full(old)
        stale = await log.append(writer.position, new.delta_to(old), old.version, "")
        assert stale.outcome == "stale"
        found = await log.read_full()
        assert found is not None
        assert found[1].as_lists() == new.as_lists()
    finally:
        await client.aclose()
    state = VocabularyState()
    assert state.adopt(new, "", "database")
    assert not state.adopt(old, "", "database")
    assert state.snapshot == new.as_lists()


async def test_concurrent_refresh_requests_share_runs(
    settings: Settings, db_url: str, cache: RedisVocabularyCache
) -> None:
    runner_runs = cache._runner.runs if cache._runner else 0
    results = await asyncio.gather(*(cache.refresh_cache("event") for _ in range(100)))
    assert all(r.as_lists() == expected_vocabulary(db_url) for r in results)
    assert cache._runner is not None
    assert cache._runner.runs - runner_runs <= 2, "100 requests must coalesce into <= 2 runs"


async def test_startup_with_nothing_reachable_is_not_ready_but_alive() -> None:
    settings = make_settings("postgresql://postgres@127.0.0.1:1/none", CLOSED_REDIS)
    cache = RedisVocabularyCache(settings)
    await cache.start_listener()
    try:
        assert not cache.has_snapshot
        assert cache.get_vocabulary() == {name: [] for name in FIELDS}
        status = cache.status()
        assert status["redis"] == "unavailable"
        assert status["database"] == "unavailable"
    finally:
        await cache.stop()


async def test_snapshot_listeners_see_every_swap_and_cannot_break_refreshes(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge, cache: RedisVocabularyCache
) -> None:
    swaps: list[tuple[int, int]] = []

    def broken(previous: Snapshot, current: Snapshot) -> None:
        raise RuntimeError("listener bug")

    cache.add_snapshot_listener(broken)
    cache.add_snapshot_listener(lambda prev, cur: swaps.append((prev.version, cur.version)))
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Listened')""")
    await wait_until_async(lambda: swaps, message="listener called")
    previous, current = swaps[-1]
    assert current > previous
    assert "Listened" in cache.get_vocabulary()["projects"]


async def test_warning_logged_when_redis_is_unavailable_at_startup(
    settings: Settings, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = RedisVocabularyCache(derive(settings, redis_url=CLOSED_REDIS))
    with caplog.at_level(logging.WARNING):
        await cache.start_listener()
    try:
        assert "Redis unavailable, serving from the database" in caplog.text
        assert cache.has_snapshot, "the database still provides the vocabulary"
    finally:
        await cache.stop()


async def test_snapshot_is_stored_with_a_one_hour_ttl(
    settings: Settings, cache: RedisVocabularyCache
) -> None:
    await cache.refresh_cache("manual")
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    try:
        ttl = await client.ttl(settings.redis_key)
    finally:
        await client.aclose()
    assert settings.vocabulary_ttl_seconds == 3600
    assert 3590 < ttl <= 3600
