"""Link failures through a TCP proxy: cut links and silent (half-open) links are detected and
recovered from, and nothing changed meanwhile is missed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.fixtures_app import derive, execute, expected_vocabulary
from tests.proxy import TcpProxy
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.local.servers import LocalPostgres, LocalRedis
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge


@pytest.fixture
async def redis_proxy(redis_server: LocalRedis) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy("127.0.0.1", redis_server.port).start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
async def pg_proxy(pg_server: LocalPostgres) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy("127.0.0.1", pg_server.port).start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
async def proxied_cache(
    settings: Settings, redis_server: LocalRedis, redis_proxy: TcpProxy
) -> AsyncIterator[RedisVocabularyCache]:
    through_proxy = derive(
        settings, redis_url=redis_proxy.url_for(redis_server.url, redis_server.port)
    )
    cache = RedisVocabularyCache(through_proxy)
    await cache.start_listener()
    try:
        yield cache
    finally:
        await cache.stop()


@hsettings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.text(min_size=1, max_size=10).filter(str.strip), max_size=3))
async def test_redis_reconnection_after_failure(
    db_url: str,
    bridge: VocabularySyncBridge,
    redis_proxy: TcpProxy,
    proxied_cache: RedisVocabularyCache,
    values: list[str],
) -> None:
    """Feature: real-time-vocabulary-sync, Property 5: Redis reconnection after failure."""
    cache = proxied_cache
    await wait_until_async(lambda: not cache.in_fallback, message="subscribed through the proxy")
    _, source = await cache.read_snapshot()
    assert source == "memory"  # served from the snapshot Redis delivered

    await redis_proxy.cut()
    await wait_until_async(lambda: cache.in_fallback, message="noticed Redis is unreachable")
    for value in values:
        execute(
            db_url, 'INSERT INTO "Project"(project_name) VALUES (%s)', (value.replace("\0", ""),)
        )
    cache._fallback.loaded_at = None  # the next read must go through, whatever the memo says
    snapshot, source = await cache.read_snapshot()
    assert source == "database"
    assert snapshot.as_lists() == expected_vocabulary(db_url)

    redis_proxy.restore()
    await wait_until_async(lambda: not cache.in_fallback, message="reconnected and resubscribed")
    snapshot, source = await cache.read_snapshot()
    assert source == "memory"
    assert snapshot.as_lists() == expected_vocabulary(db_url)


async def test_half_open_redis_is_detected_within_seconds(
    settings: Settings, redis_proxy: TcpProxy, proxied_cache: RedisVocabularyCache
) -> None:
    assert not proxied_cache.in_fallback
    redis_proxy.blackhole()
    started = time.monotonic()
    # health_check_interval 0.5 s + network_timeout 2 s: the unanswered PING is noticed.
    await wait_until_async(lambda: proxied_cache.in_fallback, timeout=10, message="detected")
    assert time.monotonic() - started < 5
    redis_proxy.restore()
    await wait_until_async(lambda: not proxied_cache.in_fallback, message="recovered")


async def test_half_open_postgres_is_detected_and_nothing_is_missed(
    settings: Settings, db_url: str, pg_server: LocalPostgres, pg_proxy: TcpProxy
) -> None:
    through_proxy = derive(settings, database_url=pg_proxy.url_for(db_url, pg_server.port))
    bridge = VocabularySyncBridge(through_proxy)
    task = asyncio.create_task(bridge.run())
    try:
        await wait_until_async(lambda: bridge.connected, message="bridge connected")
        sessions = bridge.sessions_started
        pg_proxy.blackhole()
        started = time.monotonic()
        await wait_until_async(lambda: not bridge.connected, timeout=10, message="detected")
        assert time.monotonic() - started < 5, "a silent database link must be noticed quickly"
        # Committed while the bridge's link is dead: NOTIFY is lost, the resync must catch it.
        execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('During outage')""")
        pg_proxy.restore()
        await wait_until_async(lambda: bridge.sessions_started > sessions, message="reconnected")
        await wait_until_async(
            lambda: "During outage" in bridge.snapshot.get("projects"), message="resynced"
        )
    finally:
        bridge.stop()
        await asyncio.wait_for(task, timeout=10)


async def test_cut_redis_under_the_bridge_then_converge(
    settings: Settings,
    db_url: str,
    redis_server: LocalRedis,
    redis_proxy: TcpProxy,
    cache: RedisVocabularyCache,
) -> None:
    through_proxy = derive(
        settings, redis_url=redis_proxy.url_for(redis_server.url, redis_server.port)
    )
    bridge = VocabularySyncBridge(through_proxy)
    task = asyncio.create_task(bridge.run())
    try:
        await wait_until_async(lambda: bridge.connected, message="bridge connected")
        await redis_proxy.cut()
        execute(db_url, """INSERT INTO "CashFlowColumn"(column_name) VALUES ('Retention')""")
        await wait_until_async(lambda: not bridge.connected, message="bridge lost Redis")
        redis_proxy.restore()
        await wait_until_async(
            lambda: "Retention" in cache.get_vocabulary()["cashflow_categories"],
            message="the instance got the change once the bridge was back",
        )
        assert cache.get_vocabulary() == expected_vocabulary(db_url)
    finally:
        bridge.stop()
        await asyncio.wait_for(task, timeout=10)
