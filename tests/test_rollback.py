"""`vocabsync rollback` does the design document's rollback plan, and `--reenable` undoes it."""

from __future__ import annotations

import subprocess

from tests.fixtures_app import FAST_ENV, execute, expected_vocabulary, run_cli as run_cli_process
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli_process(
        *args,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": settings.postgres_conninfo,
            "REDIS_URL": settings.redis_connection_url,
            **FAST_ENV,
        },
    )


async def test_rollback_then_reenable(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge, cache: RedisVocabularyCache
) -> None:
    result = run_cli(settings, "rollback")
    assert result.returncode == 0, result.stderr
    assert "rollback --reenable" in result.stdout
    assert run_cli(settings, "migrate", "--check").returncode == 1  # triggers are gone

    await wait_until_async(lambda: cache.in_fallback, message="instance switched to database")
    await wait_until_async(lambda: bridge.sync_disabled, message="bridge stopped publishing")
    published = bridge.messages_published
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('During rollback')""")

    async def read_from_database() -> bool:
        snapshot, source = await cache.read_snapshot()
        return source == "database" and "During rollback" in snapshot.get("projects")

    await wait_until_async(read_from_database, message="reads keep working from PostgreSQL")
    assert bridge.messages_published == published, "no publishing while rolled back"

    result = run_cli(settings, "rollback", "--reenable")
    assert result.returncode == 0, result.stderr
    assert run_cli(settings, "migrate", "--check").returncode == 0
    await wait_until_async(lambda: not cache.in_fallback, message="instance back on events")
    await wait_until_async(lambda: not bridge.sync_disabled, message="bridge publishing again")
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('After reenable')""")
    await wait_until_async(
        lambda: "After reenable" in cache.get_vocabulary()["projects"], message="events again"
    )
    _, source = await cache.read_snapshot()
    assert source == "memory"
    assert cache.get_vocabulary() == expected_vocabulary(db_url)
