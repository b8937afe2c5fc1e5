"""Fan-out: many API instances on one Redis, and one that stops reading.

Twenty instances (in this process, one event loop with the bridge: the machine has two cores)
follow one private Redis at the demo vocabulary's size; every commit is timed until all twenty
serve it, and the p99 is printed. Then a real ``vocabsync serve`` is frozen with SIGSTOP while
changes keep coming: Redis must not buffer output for it (it follows the log with XREAD, whose
replies are bounded, not Pub/Sub), the others must not notice, and once resumed, even after Redis
dropped its connections, it must catch up on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from tests.fixtures_app import FAST_ENV, derive, expected_vocabulary, make_settings
from tests.waiting import wait_until_async
from vocabsync.config import Settings
from vocabsync.local.demo import seed
from vocabsync.local.demo_data import demo_vocabulary
from vocabsync.local.processes import ManagedProcess, cli_argv, http_json, wait_http_ready
from vocabsync.local.servers import LocalRedis, find_free_port
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.vocabulary import Snapshot

pytestmark = pytest.mark.slow

INSTANCES = 20
CHANGES = 60
BOUND_S = 5.0
"""Each change must reach every instance within this (measured: milliseconds)."""

Check = Callable[[Snapshot], bool]


def change(i: int) -> tuple[str, tuple[Any, ...], Check]:
    """The i-th single-row change and how to tell an instance serves it."""
    name, renamed = f"Fan-out project {i // 3}", f"Fan-out project {i // 3} phase 2"
    step = i % 3
    if step == 0:
        return (
            'INSERT INTO "Project"(project_name, location) VALUES (%s, %s)',
            (name, f"Fan-out site {i}"),
            lambda s: (
                name in s.get("projects") and f"Fan-out site {i}" in s.get("project_locations")
            ),
        )
    if step == 1:
        return (
            'UPDATE "Project" SET project_name = %s WHERE project_name = %s',
            (renamed, name),
            lambda s: renamed in s.get("projects") and name not in s.get("projects"),
        )
    category = f"Fan-out cost {i}"
    return (
        'INSERT INTO "ExpensesColumn"(column_name) VALUES (%s)',
        (category,),
        lambda s: category in s.get("expense_categories"),
    )


@pytest.fixture
async def running_bridge(db_url: str, redis_url: str) -> AsyncIterator[VocabularySyncBridge]:
    """The demo vocabulary in the database, and a bridge that has written it to Redis."""
    seed(db_url, demo_vocabulary())
    bridge = VocabularySyncBridge(make_settings(db_url, redis_url))
    task = asyncio.create_task(bridge.run())
    try:
        await wait_until_async(lambda: bridge.connected or task.done(), timeout=30)
        assert bridge.connected, task
        yield bridge
    finally:
        bridge.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


@contextlib.asynccontextmanager
async def instances(settings: Settings, count: int) -> AsyncIterator[list[RedisVocabularyCache]]:
    caches = [
        RedisVocabularyCache(derive(settings, instance_name=f"fan-out-{i + 1}"))
        for i in range(count)
    ]
    try:
        await asyncio.gather(*(cache.start_listener() for cache in caches))
        yield caches
    finally:
        await asyncio.gather(*(cache.stop() for cache in caches))


async def commit_and_wait(
    conn: psycopg.AsyncConnection[Any], i: int, caches: list[RedisVocabularyCache]
) -> float:
    """Commit change ``i``; seconds until every cache serves it."""
    statement, params, served = change(i)
    started = time.perf_counter()
    await conn.execute(statement, params)
    await wait_until_async(
        lambda: all(served(cache.get_vocabulary()) for cache in caches),
        timeout=BOUND_S,
        interval=0.0005,
        message=f"change {i} ({statement}) did not reach every instance",
    )
    return time.perf_counter() - started


def assert_all_serve(caches: list[RedisVocabularyCache], expected: dict[str, list[str]]) -> None:
    wrong = [c.identity for c in caches if c.get_vocabulary().as_lists() != expected]
    assert not wrong, f"instances not serving the database: {wrong}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_twenty_instances_serve_every_change(
    db_url: str, running_bridge: VocabularySyncBridge
) -> None:
    settings = running_bridge.settings
    async with instances(settings, INSTANCES) as caches:
        assert_all_serve(caches, expected_vocabulary(db_url))
        size = caches[0].get_vocabulary().size
        loads = sum(cache.stats.database_loads for cache in caches)
        latencies: list[float] = []
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            for i in range(CHANGES):
                latencies.append(await commit_and_wait(conn, i, caches))
        assert_all_serve(caches, expected_vocabulary(db_url))
        # Fan-out goes through Redis: the instances read nothing from PostgreSQL meanwhile.
        assert sum(cache.stats.database_loads for cache in caches) == loads
    ms = [seconds * 1000 for seconds in latencies]
    print(
        f"\nfan-out: commit -> all {INSTANCES} instances serve it ({size} terms, "
        f"{CHANGES} changes): p50 {statistics.median(ms):.1f} ms, p95 {percentile(ms, 0.95):.1f} "
        f"ms, p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
    )


# --- a stopped instance -------------------------------------------------------------------------


def tcp_ports_of(pid: int) -> set[int]:
    """Local TCP ports of a process's sockets (from /proc: no dependency needed)."""
    inodes: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def clients_of(admin: aioredis.Redis, pid: int) -> list[dict[str, Any]]:
    """Redis's CLIENT LIST entries for the connections of process ``pid``."""
    ports = tcp_ports_of(pid)
    found = await admin.client_list()
    return [c for c in found if int(str(c["addr"]).rsplit(":", 1)[1]) in ports]


def serves_database(url: str, db_url: str) -> bool:
    try:
        _, ready = http_json(f"{url}/ready", timeout=2.0)
        status, body = http_json(f"{url}/api/vocabulary", timeout=5.0)
    except OSError:
        return False
    if not isinstance(ready, dict) or ready.get("listener") != "running" or ready.get("fallback"):
        return False
    lists = {k: v for k, v in body.items() if k != "meta"} if isinstance(body, dict) else {}
    return status == 200 and lists == expected_vocabulary(db_url)


async def test_a_stopped_instance_holds_no_redis_output_and_catches_up_when_resumed(
    db_url: str, redis_server: LocalRedis, running_bridge: VocabularySyncBridge, tmp_path: Path
) -> None:
    settings = running_bridge.settings
    port = find_free_port()
    env = {
        **os.environ,
        **FAST_ENV,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_server.url,
        "VOCABSYNC_INSTANCE_NAME": "stopped",
        "PYTHONUNBUFFERED": "1",
    }
    argv = cli_argv("serve", "--host", "127.0.0.1", "--port", str(port))
    stopped = ManagedProcess("api-stopped", argv, env, tmp_path).start()
    url = f"http://127.0.0.1:{port}"
    admin = aioredis.Redis.from_url(redis_server.url)
    frozen = False
    try:
        await asyncio.to_thread(wait_http_ready, stopped, f"{url}/ready")
        async with instances(settings, 3) as others:
            await wait_until_async(
                lambda: asyncio.to_thread(serves_database, url, db_url), timeout=30
            )
            before = await clients_of(admin, stopped.pid)
            assert before, "the instance has no connection to Redis"

            os.kill(stopped.pid, signal.SIGSTOP)
            frozen = True
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
                for i in range(CHANGES):
                    await commit_and_wait(conn, i, others)  # the others are not held back
                held = await clients_of(admin, stopped.pid)
                # Redis kept its connections and holds (almost) nothing for them: at most the
                # one XREAD reply it sent before the process froze, never a queue of changes.
                assert {c["id"] for c in held} == {c["id"] for c in before}
                assert sum(int(c["omem"]) for c in held) < 64 * 1024, held
                # Now Redis drops it, as a `timeout` or an output limit would; more changes.
                for client in held:
                    await admin.client_kill_filter(_id=client["id"])
                for i in range(CHANGES, CHANGES + 9):
                    await commit_and_wait(conn, i, others)
            assert await admin.ping()

            os.kill(stopped.pid, signal.SIGCONT)
            frozen = False
            resumed = time.perf_counter()
            await wait_until_async(
                lambda: asyncio.to_thread(serves_database, url, db_url),
                timeout=30,
                message=f"the resumed instance did not catch up\n{stopped.log_tail()}",
            )
            caught_up = time.perf_counter() - resumed
            assert_all_serve(others, expected_vocabulary(db_url))
        print(f"\nstopped instance: serving the database {caught_up * 1000:.0f} ms after SIGCONT")
    finally:
        if frozen:
            os.kill(stopped.pid, signal.SIGCONT)
        stopped.terminate(grace=10)
        await admin.aclose()
