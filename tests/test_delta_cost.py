"""What a single-row change costs is what the change costs, not what the vocabulary costs.

Deterministic counters, not timings: bytes the bridge writes to Redis, bytes an instance reads
from the log, full reads anywhere. Measured for the same change on a vocabulary of 10k and of
100k terms: equal within a small factor, and no full read or reload at either size.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.fixtures_app import derive, execute
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.vocabulary import FIELDS

pytestmark = pytest.mark.slow


def seed(db_url: str, projects: int) -> None:
    """``projects`` multi-word project names and as many file names, in plain SQL."""
    execute(
        db_url,
        """INSERT INTO "Project"(project_name, location)
           SELECT 'Riverbank Development Phase ' || g, 'City ' || (g %% 500)
           FROM generate_series(1, %s) AS g""",
        (projects,),
    )
    execute(
        db_url,
        """INSERT INTO "Expenses"(file_name)
           SELECT 'expense-report-' || g || '.xlsx' FROM generate_series(1, %s) AS g""",
        (projects,),
    )


async def cost_of_one_change(settings: Settings, db_url: str, size: int) -> dict[str, int]:
    seed(db_url, size // 2)
    bridge = VocabularySyncBridge(settings)
    task = asyncio.create_task(bridge.run())
    cache = RedisVocabularyCache(settings)
    try:
        await wait_until_async(lambda: bridge.connected, timeout=30, message="bridge up")
        await cache.start_listener()
        assert cache.snapshot.size >= size
        follower = cache._follower
        assert follower is not None
        before = {
            "bridge_bytes": bridge.writer.log.bytes_written,
            "bridge_full_loads": bridge.loader.loads,
            "instance_bytes": follower.bytes_received,
            "instance_full_loads": cache.state.full_loads,
            "instance_database_loads": cache.stats.database_loads,
        }
        previous = cache.snapshot
        execute(
            db_url,
            """INSERT INTO "Project"(project_name, location) VALUES ('New Tower', 'City 7')""",
        )
        await wait_until_async(
            lambda: "New Tower" in cache.get_vocabulary()["projects"],
            timeout=20,
            message="change applied",
        )
        unchanged = [f for f in FIELDS if f != "projects"]
        assert all(cache.snapshot.get(f) is previous.get(f) for f in unchanged), "copied"
        return {
            "bridge_bytes": bridge.writer.log.bytes_written - before["bridge_bytes"],
            "bridge_full_loads": bridge.loader.loads - before["bridge_full_loads"],
            "instance_bytes": follower.bytes_received - before["instance_bytes"],
            "instance_full_loads": cache.state.full_loads - before["instance_full_loads"],
            "instance_database_loads": cache.stats.database_loads
            - before["instance_database_loads"],
        }
    finally:
        await cache.stop()
        bridge.stop()
        await asyncio.wait_for(task, timeout=10)


async def test_a_single_row_change_costs_the_same_at_10k_and_100k_terms(
    settings: Settings, db_url: str, pg_url: str
) -> None:
    small = await cost_of_one_change(settings, db_url, 10_000)
    execute(db_url, 'TRUNCATE "Project", "Expenses" CASCADE')
    other = derive(settings, key_prefix="large:")
    large = await cost_of_one_change(other, db_url, 100_000)
    for counts in (small, large):
        assert counts["bridge_full_loads"] == 0, counts
        assert counts["instance_full_loads"] == 0, counts
        assert counts["instance_database_loads"] == 0, counts
        assert 0 < counts["bridge_bytes"] < 1_000, counts
        assert 0 < counts["instance_bytes"] < 2_000, counts
    assert large["bridge_bytes"] <= 2 * small["bridge_bytes"], (small, large)
    assert large["instance_bytes"] <= 2 * small["instance_bytes"], (small, large)
