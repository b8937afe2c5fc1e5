"""Redis Sentinel: settings, the client, and a real failover under writes.

The failover tests run a private group (a master, a replica, three Sentinels with quorum 2, all
``redis-server`` processes on free ports; :mod:`vocabsync.local.sentinel`), point the bridge and
the API instances at the Sentinels only (their REDIS_URL names a port where nothing listens), and
kill -9 the master while a writer commits vocabulary changes. Before the kill the replica is cut
off, so the old master dies holding log entries the new master never got (async replication loses
them in real life too): the test proves that the instances had such an entry and still end up
serving exactly the database's vocabulary, on their own, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from pydantic import ValidationError

from tests.fixtures_app import FAST_ENV, derive, execute, expected_vocabulary, make_settings
from tests.waiting import wait_until, wait_until_async
from vocabsync.config import Settings
from vocabsync.local.demo import DemoStack
from vocabsync.local.processes import http_json
from vocabsync.local.sentinel import LocalRedisSentinelGroup
from vocabsync.local.servers import LocalRedis, resolve_flavor
from vocabsync.services.log_follower import LogFollower
from vocabsync.services.log_writer import LogWriter
from vocabsync.services.redis_client import describe_redis_error, redis_client
from vocabsync.services.vocabulary_log import VocabularyLog, position_key
from vocabsync.services.vocabulary_state import Source, VocabularyState
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.vocabulary import Snapshot

NOWHERE = "redis://127.0.0.1:1/0"
"""REDIS_URL of the failover tests: only the Sentinels can lead anyone to the master."""

FAILOVER_BOUND_S = 60.0
"""From the kill until every instance serves the database again (measured: a few seconds)."""


def settings_from(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- settings ---------------------------------------------------------------------------------


def test_sentinels_win_over_redis_url_and_keep_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "rediss://app:url-S3cret@ignored:6379/3")
    monkeypatch.setenv("REDIS_SENTINELS", " s1:26379, 10.0.0.2:26380 ,[::1]:26381")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "vocab-master")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "sentinel-S3cret")
    s = settings_from()
    assert s.uses_sentinel
    assert s.redis_configured
    assert s.redis_tls
    assert s.redis_sentinels == (("s1", 26379), ("10.0.0.2", 26380), ("::1", 26381))
    shown = s.redis_display
    hosts = "s1:26379,10.0.0.2:26380,[::1]:26381"
    assert shown == f"sentinel://{hosts} master 'vocab-master' (db 3, TLS)"
    assert "S3cret" not in shown
    for secret in ("url-S3cret", "sentinel-S3cret"):
        assert secret in s.secret_values
        assert secret not in s.redact(f"AuthenticationError: {secret} refused")


def test_sentinel_settings_fail_early_with_a_clear_message() -> None:
    with pytest.raises(ValidationError, match="REDIS_SENTINEL_MASTER is not"):
        settings_from(redis_sentinels="s1:26379")
    with pytest.raises(ValidationError, match="REDIS_SENTINELS is not"):
        settings_from(redis_sentinel_master="mymaster")
    for bad in ("s1", "s1:port", "s1:0", ":26379", "s1:26379,,s2:26379", "s1:70000"):
        with pytest.raises(ValidationError, match="comma-separated list of host:port"):
            settings_from(redis_sentinels=bad, redis_sentinel_master="m")
    blank = settings_from(redis_sentinels="  ", redis_sentinel_master="")
    assert not blank.uses_sentinel
    assert blank.redis_display == "redis://localhost:6379/0"


# --- the client -------------------------------------------------------------------------------


@pytest.fixture
def sentinel_group() -> Iterator[LocalRedisSentinelGroup]:
    group = LocalRedisSentinelGroup(flavor=resolve_flavor())
    with group:
        yield group


def sentinel_settings(group: LocalRedisSentinelGroup, db_url: str = "", **values: Any) -> Settings:
    return make_settings(
        db_url or "postgresql://127.0.0.1:1/none",
        NOWHERE,
        redis_sentinels=group.sentinel_addresses,
        redis_sentinel_master=group.master_name,
        **values,
    )


def other_node(group: LocalRedisSentinelGroup, node: LocalRedis) -> LocalRedis:
    return next(n for n in group.nodes if n is not node)


DATA_PASSWORD = "data-S3cret-4f1"
SENTINEL_PASSWORD = "sentinel-S3cret-9c2"


@pytest.fixture
def secure_sentinel_group() -> Iterator[LocalRedisSentinelGroup]:
    """Master and replica with a password, and Sentinels with another one of their own."""
    group = LocalRedisSentinelGroup(
        flavor=resolve_flavor(), password=DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD
    )
    with group:
        yield group


@pytest.mark.slow
async def test_client_writes_to_the_new_master_after_a_switchover_with_passwords(
    secure_sentinel_group: LocalRedisSentinelGroup,
) -> None:
    """A demoted master that stays up: the client must not keep talking to it.

    SENTINEL FAILOVER promotes the replica while the old master is alive (then turns it into a
    replica). Once demoted, the client's connection to the old master fails (closed by the
    Sentinels, or READONLY) or is re-pointed by the Sentinel pool; with no hidden retry, at most
    one command fails, and the next one writes to the new master. The master's password comes
    from REDIS_URL's userinfo, the Sentinels' from REDIS_SENTINEL_PASSWORD.
    """
    group = secure_sentinel_group
    url = f"redis://:{DATA_PASSWORD}@127.0.0.1:1/0"
    without = derive(sentinel_settings(group), redis_url=url)
    refused = redis_client(without)
    with pytest.raises(redis.RedisError) as excinfo:
        await refused.ping()
    await refused.aclose()
    assert DATA_PASSWORD not in describe_redis_error(without, excinfo.value)

    settings = derive(without, redis_sentinel_password=SENTINEL_PASSWORD)
    client = redis_client(settings)
    log = VocabularyLog(client, settings)
    sentinel_group = group
    try:
        await client.set("probe", "before")
        old = sentinel_group.master()
        sentinel_group.sentinels[0].failover()
        new = sentinel_group.wait_for_failover(old)
        assert new is other_node(sentinel_group, old)
        # Until the Sentinels demote it, the old master still takes writes from connections
        # that were open before (Redis Sentinel's window of lost writes; the bridge's resync
        # repairs what the log lost). Once demoted, nothing may be written there any more.
        wait_until(lambda: sentinel_group.role(old) == "slave", timeout=FAILOVER_BOUND_S)
        failures = 0

        async def written() -> bool:
            nonlocal failures
            try:
                await client.set("probe", "after")
            except redis.RedisError:
                failures += 1
                return False
            return True

        await wait_until_async(written, timeout=FAILOVER_BOUND_S, interval=0.1)
        assert failures <= 1, "the client kept failing after the new master was known"
        with redis.Redis(port=new.port, password=DATA_PASSWORD, socket_timeout=5) as direct:
            assert direct.get("probe") == b"after"
            assert direct.info("replication")["role"] == "master"
        # The log's readers see the new master too (and a head of none: nothing was written).
        assert await log.head() is None
    finally:
        await client.aclose()
    assert client.sentinel_manager is None  # type: ignore[attr-defined]


# --- kill -9 the master while writers commit ------------------------------------------------


class Writer(threading.Thread):
    """Commits vocabulary changes one after another until stopped: inserts, renames, deletes."""

    def __init__(self, db_url: str, prefix: str = "Failover", pause: float = 0.05) -> None:
        super().__init__(name="sentinel-writer", daemon=True)
        self.db_url = db_url
        self.prefix = prefix
        self.pause = pause
        self.commits = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the writer did not stop"
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        try:
            with psycopg.connect(self.db_url, autocommit=True, connect_timeout=10) as conn:
                while not self._halt.wait(self.pause):  # pacing between commits
                    self._commit(conn, self.prefix, self.commits)
                    self.commits += 1
        except BaseException as exc:
            self.error = exc

    @staticmethod
    def _commit(conn: psycopg.Connection[Any], prefix: str, i: int) -> None:
        step = i % 4
        if step == 0:
            conn.execute(
                'INSERT INTO "Project"(project_name, location) VALUES (%s, %s)',
                (f"{prefix} {i:05d}", f"Site {i % 13}"),
            )
        elif step == 1:
            conn.execute(
                'INSERT INTO "ExpensesColumn"(column_name) VALUES (%s)', (f"{prefix} cost {i:05d}",)
            )
        elif step == 2:
            conn.execute(
                'UPDATE "Project" SET project_name = project_name || %s WHERE project_name = %s',
                (" renamed", f"{prefix} {i - 2:05d}"),
            )
        else:
            conn.execute(
                'DELETE FROM "ExpensesColumn" WHERE column_name = %s',
                (f"{prefix} cost {i - 6:05d}",),
            )
            conn.execute(
                'INSERT INTO "CashFlow"(file_name) VALUES (%s)', (f"{prefix}_{i:05d}.xlsx",)
            )


def vocabulary_of(url: str) -> dict[str, Any]:
    try:
        status, body = http_json(f"{url}/api/vocabulary", timeout=5.0)
    except OSError:
        return {}
    if status != 200 or not isinstance(body, dict):
        return {}
    return {key: value for key, value in body.items() if key != "meta"}


def ready_of(url: str) -> dict[str, Any]:
    try:
        _, body = http_json(f"{url}/ready", timeout=5.0)
    except OSError:
        return {}
    return body if isinstance(body, dict) else {}


def following(url: str) -> bool:
    ready = ready_of(url)
    return ready.get("listener") == "running" and ready.get("fallback") is False


def serve_database(stack: DemoStack, db_url: str) -> bool:
    """Every instance follows the log and serves exactly what the database holds now."""
    if not all(following(url) for url in stack.instance_urls):
        return False
    expected = expected_vocabulary(db_url)
    return all(vocabulary_of(url) == expected for url in stack.instance_urls)


def head_of(node: LocalRedis) -> str:
    with redis.Redis(port=node.port, socket_timeout=5) as client:
        position = client.hget("vocabsync:head", "pos")
    return position.decode() if position else ""


def entries_after(node: LocalRedis, position: str) -> int:
    with redis.Redis(port=node.port, socket_timeout=5) as client:
        return len(client.xrange("vocabsync:log", f"({position}", "+"))


def logs(stack: DemoStack) -> str:
    """Each child's last lines about links and refreshes (not the one line per change)."""
    processes = [*stack.instances, *([stack.bridge] if stack.bridge else [])]
    parts = []
    for process in processes:
        lines = [
            line
            for line in process.log_tail(100_000).splitlines()
            if "[published] published" not in line and "[notification_received]" not in line
        ]
        parts.append(f"----- {process.name}\n" + "\n".join(lines[-60:]))
    return "\n".join(parts)


@pytest.fixture
def failover_stack(db_url: str, sentinel_group: LocalRedisSentinelGroup) -> Iterator[DemoStack]:
    """``vocabsync bridge`` and two ``vocabsync serve`` that know only the Sentinels."""
    execute(db_url, """INSERT INTO "Project"(project_name, location) VALUES ('Base', 'Pasig')""")
    execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Base cost')""")
    env = {**FAST_ENV, **sentinel_group.environment()}
    stack = DemoStack(make_settings(db_url, NOWHERE), instances=2, extra_env=env)
    with stack:
        try:
            yield stack
        finally:
            print(logs(stack))


@pytest.mark.slow
def test_kill_master_under_writes_instances_follow_the_new_master_and_lose_nothing(
    failover_stack: DemoStack, db_url: str, sentinel_group: LocalRedisSentinelGroup
) -> None:
    stack = failover_stack
    wait_until(lambda: serve_database(stack, db_url), timeout=30, message="initial convergence")
    writer = Writer(db_url)
    writer.start()
    try:
        wait_until(lambda: writer.commits >= 10, timeout=30, message="writer started")
        master = sentinel_group.master()
        replica = other_node(sentinel_group, master)
        assert replica.pid is not None
        assert master.pid is not None

        # Cut the replica off: what the master writes from now on is never replicated.
        replicated = head_of(master)
        os.kill(replica.pid, signal.SIGSTOP)
        try:
            with redis.Redis(port=master.port, socket_timeout=5) as admin:
                admin.client_kill_filter(_type="replica")
            # Wait until the instances applied entries that exist on the old master only.
            wait_until(lambda: entries_after(master, replicated) >= 3, timeout=30)
            ahead = head_of(master)
            wait_until(
                lambda: all(
                    position_key(str(ready_of(url).get("position", ""))) >= position_key(ahead)
                    for url in stack.instance_urls
                ),
                timeout=30,
                message="instances at the old master's head",
            )
            lost = entries_after(master, replicated)
            commits_at_kill = writer.commits
            killed_at = time.monotonic()
            master.kill()
        finally:
            os.kill(replica.pid, signal.SIGCONT)

        new = sentinel_group.wait_for_failover(master, timeout=FAILOVER_BOUND_S)
        promoted_after = time.monotonic() - killed_at
        assert new is replica
        wait_until(
            lambda: serve_database(stack, db_url),
            timeout=FAILOVER_BOUND_S,
            interval=0.05,
            message=f"instances serving the database after the failover\n{logs(stack)}",
        )
        converged_after = time.monotonic() - killed_at
        during = writer.commits - commits_at_kill
        # Changes after the failover flow through the new master as usual.
        resumed = writer.commits
        wait_until(lambda: writer.commits >= resumed + 20, timeout=30)
    finally:
        writer.stop()
    wait_until(lambda: serve_database(stack, db_url), timeout=30, message="final convergence")

    # The old master died with entries the new one never had, and the instances had applied
    # them: they recovered from a log that went back, not from a lucky replica.
    with redis.Redis(port=new.port, socket_timeout=5) as client:
        assert client.xrange("vocabsync:log", ahead, ahead) == [], "nothing was lost: no test"
    for url in stack.instance_urls:
        ready = ready_of(url)
        assert ready["full_loads"] >= 2, ready  # startup, then the read after the failover
    assert all(p.alive for p in [*stack.instances, *([stack.bridge] if stack.bridge else [])])
    print(
        f"\nSentinel failover: promoted {promoted_after:.2f} s after kill -9 of the master; "
        f"every instance serves the database {converged_after:.2f} s after the kill "
        f"({during} commits during the failover, {writer.commits} in all, "
        f"{lost} log entries lost with the old master)"
    )
    assert converged_after < FAILOVER_BOUND_S

    # Then a switchover back, with the demoted master alive: connections to it must not go on.
    master.start()  # back empty; the Sentinels turn it into a replica of the new master
    wait_until(
        lambda: sentinel_group.replication(master).get("master_link_status") == "up",
        timeout=FAILOVER_BOUND_S,
        message="the restarted node replicating",
    )
    writer = Writer(db_url, prefix="Switchover")
    writer.start()
    try:
        wait_until(lambda: writer.commits >= 5, timeout=30)
        switched_at = time.monotonic()
        sentinel_group.sentinels[0].failover()
        assert sentinel_group.wait_for_failover(new, timeout=FAILOVER_BOUND_S) is master
        # Until the Sentinels demote it (their next INFO of it, up to 10 s), the old master
        # still takes the writes of connections opened before: the bridge and the instances
        # go on there, and what the bridge writes meanwhile is lost on demotion.
        wait_until(lambda: sentinel_group.role(new) == "slave", timeout=FAILOVER_BOUND_S)
        demoted_after = time.monotonic() - switched_at
        wait_until(
            lambda: serve_database(stack, db_url),
            timeout=FAILOVER_BOUND_S,
            interval=0.05,
            message=f"instances serving the database after the switchover\n{logs(stack)}",
        )
        switched_after = time.monotonic() - switched_at - demoted_after
        resumed = writer.commits
        wait_until(lambda: writer.commits >= resumed + 10, timeout=30)
    finally:
        writer.stop()
    wait_until(lambda: serve_database(stack, db_url), timeout=30, message="final convergence")
    with redis.Redis(port=new.port, socket_timeout=5) as demoted:
        assert demoted.info("replication")["role"] == "slave"
    assert all(p.alive for p in [*stack.instances, *([stack.bridge] if stack.bridge else [])])
    print(
        f"Sentinel switchover: the old master (alive) demoted {demoted_after:.2f} s after "
        f"SENTINEL FAILOVER; every instance serves the database {switched_after:.2f} s later"
    )


# --- a position the log does not have -----------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "source"),
    [
        ("99999999999999-0", "redis"),  # an entry applied from the old master, lost with it
        ("", "database"),  # a fallback read during the failover, coalesced with the catch-up
    ],
)
async def test_follower_adopts_the_log_before_following_from_a_position_it_lacks(
    redis_server: LocalRedis, position: str, source: Source
) -> None:
    """After a failover the new master may lack the entries an instance applied last, and the
    refresh that runs on reconnect may have been served from the database instead of the log.
    Following from such a position would wait for entries that never come (or, from "", skip
    the ones written meanwhile): the follower must take the log's state first, with no new
    entry needed to notice."""
    settings = make_settings("postgresql://127.0.0.1:1/none", redis_server.url)
    client = redis_client(settings)
    writer = LogWriter(VocabularyLog(client, settings))
    state = VocabularyState()
    task: asyncio.Task[None] | None = None
    try:
        in_redis = Snapshot.from_lists({"projects": ["Kept by the new master"]}, 200, None, "db")
        await writer.write_full(in_redis)
        stale = Snapshot.from_lists({"projects": ["Lost with the old master"]}, 300, None, "db")
        state.adopt(stale, position, source)

        async def nothing(_log: VocabularyLog) -> None:
            return None

        follower = LogFollower(settings, state, on_connected=nothing, on_idle=nothing)
        task = asyncio.create_task(follower.session(lambda: None))
        await wait_until_async(lambda: follower.running or task.done(), timeout=10)
        await wait_until_async(
            lambda: state.snapshot.same_terms(in_redis) or task.done(),
            timeout=10,
            message="the follower kept a state the log does not have",
        )
        assert not task.done(), task
        assert state.position == writer.position
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.aclose()


# --- Redis loses writes behind a live connection ------------------------------------------------


async def test_bridge_resyncs_when_redis_lost_writes_behind_its_connection(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    """A switchover with the old master alive, as a busy bridge can see it: no command fails
    (redis-py reconnects a pooled connection the Sentinels closed without telling, and the
    Sentinel pool re-points idle connections at the new master on its own), but the master now
    answering lacks the last entries. Simulated here by putting the state of before back under
    the bridge's open connection. A change in another table must not be written as a delta on
    top of that older state (the lost change would stay lost until the periodic resync,
    minutes later): the bridge resyncs at once."""
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    log = VocabularyLog(client, settings)
    keys = [log.head_key, log.log_key, *log.term_keys]

    async def redis_holds(check: Callable[[dict[str, list[str]]], bool]) -> bool:
        found = await log.read_full()
        return found is not None and check(found[1].as_lists())

    try:
        execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Kept')""")
        await wait_until_async(lambda: redis_holds(lambda v: "Kept" in v["projects"]))
        replica = {key: await client.dump(key) for key in keys}  # what the replica got
        execute(db_url, """INSERT INTO "CashFlow"(file_name) VALUES ('lost_with_master.xlsx')""")
        await wait_until_async(lambda: redis_holds(lambda v: bool(v["cashflow_files"])))

        async with client.pipeline(transaction=True) as pipe:  # the replica takes over
            pipe.delete(*keys)
            for key, value in replica.items():
                if value is not None:
                    pipe.restore(key, 0, value)
            await pipe.execute()
        assert not await redis_holds(lambda v: bool(v["cashflow_files"]))

        execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('After')""")
        await wait_until_async(
            lambda: redis_holds(lambda v: v == expected_vocabulary(db_url)),
            timeout=10,
            message="Redis kept a state without the change lost with the old master",
        )
        assert bridge.sessions_started == 2, "the bridge did not resync"
    finally:
        await client.aclose()
