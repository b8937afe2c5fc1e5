"""What the chaos soak (bench/soak.py) found, each reproduced directly, without the soak.

Each test replays the sequence of faults that exposed a defect, against the real servers, and
checks what a user depends on (a standby able to take over, every instance exact).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest

from tests.fixtures_app import derive, execute
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.services.log_writer import LogWriter, Observation
from vocabsync.services.redis_client import redis_client
from vocabsync.services.vocabulary_loader import VocabularyLoader
from vocabsync.services.vocabulary_log import VocabularyLog
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge

LEADER_LOCK_HOLDERS = (
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
STANDING_BY = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = 'vocabsync-bridge' "
    "AND datname = current_database() AND query LIKE '%pg_try_advisory_lock%'"
)
"""Bridge sessions that got as far as polling for the leader lock."""


@contextlib.asynccontextmanager
async def running(bridge: VocabularySyncBridge) -> AsyncIterator[VocabularySyncBridge]:
    task = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        bridge.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


def standby_sessions(db_url: str) -> list[int]:
    """Backends of bridges standing by: polling for the leader lock, not holding it."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        leaders = {row[0] for row in conn.execute(LEADER_LOCK_HOLDERS).fetchall()}
        return [row[0] for row in conn.execute(STANDING_BY).fetchall() if row[0] not in leaders]


@pytest.mark.slow
async def test_a_standby_reconnects_at_once_however_often_its_session_ends(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    """Soak finding: a standby never reset its reconnect backoff (only becoming active did), so
    every lost session doubled its next wait (5, 10, 20 s ... up to 5 minutes). After a few
    terminated sessions the standby spent minutes disconnected, and a failover then waited
    for it. A standby that is connected and polling for the lock is a healthy session."""
    standby_settings = derive(settings, reconnect_initial_delay=5.0, reconnect_max_delay=300.0)
    assert bridge.active
    async with running(VocabularySyncBridge(standby_settings)) as standby:
        for round_ in range(4):
            sessions = await wait_until_async(
                lambda: standby_sessions(db_url), timeout=3, message=f"standby connected ({round_})"
            )
            assert len(sessions) == 1, sessions
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", sessions)
            # The session notices at its next lock poll (2 s), then reconnects at once.
            await wait_until_async(
                lambda s=sessions: standby_sessions(db_url) not in ([], s),
                timeout=4,
                message=f"standby back at once after termination {round_ + 1}",
            )
        assert not standby.active


@pytest.mark.slow
async def test_a_new_leader_resyncs_when_the_log_is_versioned_past_a_quiet_database(
    settings: Settings, db_url: str
) -> None:
    """Soak finding: two reads at one database snapshot can bring different news (a commit's
    notification arrives after the read that already saw it), and the second entry gets the
    version after the first, one above the database's. The next resync, a new leader's after a
    failover for one, read the database at its own (quiet, unchanged) version, found it "older"
    than the log and failed its session three reads later, again and again, with a growing
    backoff: no bridge published anything until some unrelated commit moved the database past
    the log, and then only at the next retry."""
    log_client = redis_client(settings)
    writer = LogWriter(VocabularyLog(log_client, settings))
    try:
        async with VocabularyLoader(settings) as loader:
            await writer.write_full(await loader.load())
            execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Alpha'), ('Beta')""")
            seen = await loader.load()
        for term in ("Alpha", "Beta"):  # two reads at one snapshot, each with its own news
            observation = Observation(seen.version, seen.identity, {"projects": {term}}, {}, {})
            assert await writer.write_observation(observation) is not None
        assert writer.state.version > seen.version
        assert writer.state.get("projects") == seen.get("projects")
    finally:
        await log_client.aclose()

    new_leader = VocabularySyncBridge(derive(settings, reconnect_initial_delay=5.0))
    async with running(new_leader):
        await wait_until_async(lambda: new_leader.connected, timeout=4, message="resynced")
        execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Gamma')""")
        await wait_until_async(
            lambda: "Gamma" in new_leader.snapshot.get("projects"), message="published"
        )
