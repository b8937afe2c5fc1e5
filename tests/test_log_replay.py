"""An instance that was away replays what it missed from the log; one whose position the log no
longer reaches back to reads the full state once; both end exact.

(An instance that served reads from PostgreSQL during the outage, fallback mode, holds a state
that is not at any log position, so it reads the full state once when it is back.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from tests.fixtures_app import derive, execute, expected_vocabulary
from tests.proxy import TcpProxy
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.local.servers import LocalRedis
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_log import VocabularyLog
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge


@pytest.fixture
async def redis_proxy(redis_server: LocalRedis) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy("127.0.0.1", redis_server.port).start()
    try:
        yield proxy
    finally:
        await proxy.close()


@pytest.fixture
async def away_cache(
    settings: Settings, redis_server: LocalRedis, redis_proxy: TcpProxy
) -> AsyncIterator[RedisVocabularyCache]:
    """An instance reaching Redis through a proxy the test can cut."""
    through_proxy = derive(
        settings, redis_url=redis_proxy.url_for(redis_server.url, redis_server.port)
    )
    cache = RedisVocabularyCache(through_proxy)
    await cache.start_listener()
    try:
        yield cache
    finally:
        await cache.stop()


async def leave_and_come_back(
    cache: RedisVocabularyCache, proxy: TcpProxy, db_url: str, names: list[str]
) -> None:
    await proxy.cut()
    await wait_until_async(lambda: cache.in_fallback, message="the instance noticed")
    for name in names:  # one log entry each, while the instance hears nothing
        execute(db_url, 'INSERT INTO "Project"(project_name) VALUES (%s)', (name,))


async def test_an_instance_back_from_an_outage_replays_what_it_missed(
    db_url: str,
    bridge: VocabularySyncBridge,
    away_cache: RedisVocabularyCache,
    redis_proxy: TcpProxy,
) -> None:
    cache = away_cache
    await wait_until_async(lambda: not cache.in_fallback, message="following the log")
    names = [f"Missed {index}" for index in range(5)]
    await leave_and_come_back(cache, redis_proxy, db_url, names)
    await wait_until_async(
        lambda: all(n in bridge.snapshot.get("projects") for n in names), message="logged"
    )
    full_reads, applied = cache.state.full_loads, cache.state.deltas_applied
    redis_proxy.restore()
    await wait_until_async(
        lambda: not cache.in_fallback and cache.state.position == bridge.writer.position,
        timeout=15,
        message="caught up",
    )
    assert cache.get_vocabulary() == expected_vocabulary(db_url)
    assert cache.state.deltas_applied > applied, "the missed entries were replayed"
    assert cache.state.full_loads == full_reads, "a short outage costs a replay, not a reload"


async def test_a_trimmed_log_forces_one_full_read_and_still_ends_exact(
    settings: Settings,
    db_url: str,
    bridge: VocabularySyncBridge,
    away_cache: RedisVocabularyCache,
    redis_proxy: TcpProxy,
) -> None:
    cache = away_cache
    await wait_until_async(lambda: not cache.in_fallback, message="following the log")
    names = [f"Trimmed {index}" for index in range(5)]
    await leave_and_come_back(cache, redis_proxy, db_url, names)
    await wait_until_async(
        lambda: all(n in bridge.snapshot.get("projects") for n in names), message="logged"
    )
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    try:  # the log no longer reaches back to the instance's position
        await client.xtrim(VocabularyLog(client, settings).log_key, maxlen=1, approximate=False)
    finally:
        await client.aclose()
    full_reads = cache.state.full_loads
    redis_proxy.restore()
    await wait_until_async(
        lambda: not cache.in_fallback and cache.state.position == bridge.writer.position,
        timeout=15,
        message="caught up",
    )
    assert cache.get_vocabulary() == expected_vocabulary(db_url)
    assert cache.state.full_loads == full_reads + 1, "exactly one full read"
