"""Operating it: bridge failover, metrics that move, `vocabsync status` telling the truth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
import redis.asyncio as aioredis

from tests.fixtures_app import FAST_ENV, execute, expected_vocabulary, make_settings, run_cli
from tests.test_api import running_client
from tests.waiting import wait_until, wait_until_async
from vocabsync.config import Settings
from vocabsync.local.demo import DemoStack
from vocabsync.local.processes import ManagedProcess, cli_argv
from vocabsync.local.servers import LocalRedis, find_free_port
from vocabsync.main import create_app
from vocabsync.services.heartbeat import (
    heartbeat_index_key,
    heartbeat_key,
    read_heartbeats,
    remove_heartbeat,
    write_heartbeat,
)
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge
from vocabsync.status import collect_status


def scrape(url: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value}."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.MULTILINE)
    assert match, f"{name} not exported"
    return float(match.group(1))


def served(stack: DemoStack) -> list[dict[str, list[str]]]:
    return [{k: v for k, v in body.items() if k != "meta"} for body in stack.vocabularies()]


@pytest.fixture
def stack(db_url: str, redis_url: str) -> Iterator[DemoStack]:
    settings = make_settings(db_url, redis_url)
    env = {**FAST_ENV, "VOCABSYNC_LEADER_POLL_INTERVAL": "0.5"}
    with DemoStack(settings, extra_env=env) as running:
        yield running


class ActiveSampler:
    """Polls both bridges' metrics and counts samples where both claim to be active."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.samples = 0
        self.both_active = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            active = 0
            for url in self.urls:
                with contextlib.suppress(OSError):
                    active += int(scrape(url).get("vocabsync_bridge_active", 0))
            self.samples += 1
            self.both_active += active > 1
            self._stop.wait(0.05)

    def __enter__(self) -> ActiveSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def wait_for_leader(urls: list[str], other_than: int | None = None, timeout: float = 10) -> int:
    """Index of the one active bridge (not ``other_than``), polling until there is one."""

    def leader() -> tuple[int] | None:
        index = active_index(urls)
        return None if index is None or index == other_than else (index,)

    return wait_until(leader, timeout=timeout, message="exactly one active bridge")[0]


def active_index(urls: list[str]) -> int | None:
    states = []
    for url in urls:
        try:
            states.append(scrape(url).get("vocabsync_bridge_active", 0))
        except OSError:
            states.append(0)
    return states.index(1.0) if states.count(1.0) == 1 else None


@pytest.mark.slow
def test_standby_takes_over_after_kill_and_after_backend_termination(
    stack: DemoStack, db_url: str
) -> None:
    assert stack.bridge is not None
    stack.bridge.terminate()  # replace the default bridge with two that export metrics
    ports = [find_free_port(), find_free_port()]
    bridges = [
        stack.start_bridge(f"bridge-{i}", "--metrics-port", str(port))
        for i, port in enumerate(ports)
    ]
    urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]
    try:
        first = wait_for_leader(urls, timeout=15)
        with ActiveSampler(urls) as sampler:
            # 1. kill -9 the active one: the standby takes over within 10 s and resyncs.
            bridges[first].kill()
            killed_at = time.monotonic()
            execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('After kill')""")
            second = wait_for_leader(urls, other_than=first)
            assert time.monotonic() - killed_at < 10
            stack.wait_everywhere(lambda v: "After kill" in v.get("projects", ()), timeout=10)
            # The dead leader's heartbeat must not make status report two active bridges.
            _, report = run_status(stack)
            assert levels(report)["bridge"] == "ok", report

            # 2. terminate the active one's database session: leadership goes with it.
            with psycopg.connect(db_url, autocommit=True) as conn:
                holder = conn.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())"
                ).fetchall()
                assert len(holder) == 1, f"exactly one leader lock expected, got {holder}"
                conn.execute("SELECT pg_terminate_backend(%s)", holder[0])
            execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('After terminate')""")
            stack.wait_everywhere(lambda v: "After terminate" in v.get("projects", ()), timeout=10)
            wait_for_leader(urls)
            wait_until(lambda: sampler.samples >= 20, message="enough leadership samples")
        assert sampler.both_active == 0, f"both bridges active in {sampler.both_active} samples"
        assert served(stack) == [expected_vocabulary(db_url)] * 2
        metrics = scrape(urls[second])
        assert metrics['vocabsync_up{component="bridge"}'] == 1
        assert metrics["vocabsync_messages_published_total"] >= 1
    finally:
        for bridge in bridges:
            bridge.terminate()


async def test_api_metrics_move_with_real_events(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge
) -> None:
    async with running_client(create_app(settings)) as client:
        before = (await client.get("/metrics")).text
        execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Metric')""")

        async def arrived() -> bool:
            body = (await client.get("/api/vocabulary")).json()
            return "Metric" in body["projects"]

        await wait_until_async(arrived, message="event arrived")
        await client.post("/api/vocabulary/refresh")
        after = (await client.get("/metrics")).text
    assert metric(after, "vocabsync_messages_received_total") > metric(
        before, "vocabsync_messages_received_total"
    )
    assert metric(after, 'vocabsync_reads_total{source="memory"}') >= 1
    assert metric(after, 'vocabsync_refresh_duration_seconds_count{trigger="event"}') >= 1
    assert metric(after, 'vocabsync_refresh_duration_seconds_count{trigger="manual"}') == 1
    assert metric(after, "vocabsync_snapshot_version") > metric(
        before, "vocabsync_snapshot_version"
    )
    assert metric(after, 'vocabsync_vocabulary_terms{field="projects"}') == 1
    assert metric(after, 'vocabsync_link_up{link="redis"}') == 1
    assert metric(after, "vocabsync_fallback") == 0
    assert metric(after, "vocabsync_propagation_seconds_count") >= 1
    assert 'vocabsync_up{component="api"} 1.0' in after


async def test_bridge_metrics_count_notifications_publishes_and_failures(
    settings: Settings, db_url: str, bridge: VocabularySyncBridge, redis_server: LocalRedis
) -> None:
    execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Fuel')""")
    await wait_until_async(lambda: bridge.notifications_received >= 1, message="notified")
    text = bridge.metrics.render().decode()
    assert metric(text, "vocabsync_notifications_received_total") >= 1
    assert metric(text, "vocabsync_messages_published_total") >= 2  # resync + event
    assert metric(text, "vocabsync_bridge_active") == 1
    assert metric(text, 'vocabsync_refresh_duration_seconds_count{trigger="resync"}') >= 1
    assert metric(text, 'vocabsync_refresh_duration_seconds_count{trigger="event"}') >= 1
    assert metric(text, 'vocabsync_vocabulary_terms{field="expense_categories"}') == 1
    redis_server.kill()
    await wait_until_async(
        lambda: (
            metric(
                bridge.metrics.render().decode(), 'vocabsync_connection_errors_total{link="redis"}'
            )
            >= 1
        ),
        message="redis error counted",
    )
    redis_server.restart()
    await wait_until_async(
        lambda: (
            metric(bridge.metrics.render().decode(), 'vocabsync_reconnects_total{link="redis"}')
            >= 1
        ),
        message="redis reconnect counted",
    )


async def test_fallback_share_is_visible_in_metrics(settings: Settings, db_url: str) -> None:
    cache = RedisVocabularyCache(make_settings(db_url, "redis://127.0.0.1:1/0", fallback_max_age=0))
    try:
        await cache.start_listener()
        for _ in range(3):
            await cache.read_snapshot()
        text = cache.metrics.render().decode()
    finally:
        await cache.stop()
    assert metric(text, 'vocabsync_reads_total{source="database"}') == 3
    assert metric(text, "vocabsync_fallback") == 1
    assert metric(text, 'vocabsync_connection_errors_total{link="redis"}') >= 1


def run_status(stack: DemoStack) -> tuple[int, dict[str, object]]:
    result = run_cli("status", "--json", env=stack.child_env())
    return result.returncode, json.loads(result.stdout)


def levels(report: dict[str, object]) -> dict[str, str]:
    checks = report["checks"]
    assert isinstance(checks, list)
    return {check["name"]: check["level"] for check in checks}


@pytest.mark.slow
def test_status_tells_the_truth(stack: DemoStack, db_url: str) -> None:
    code, report = run_status(stack)
    assert code == 0, report
    assert levels(report) == {
        "database": "ok",
        "bridge": "ok",
        "snapshot": "ok",
        "instances": "ok",
    }
    human = run_cli("status", env=stack.child_env())
    assert human.returncode == 0
    assert "all is well" in human.stdout

    # A trigger dropped by hand: the database check fails and says what to run.
    execute(db_url, 'DROP TRIGGER vocabulary_change_trigger ON "CashFlow"')
    code, report = run_status(stack)
    assert code == 1
    assert levels(report)["database"] == "fail"
    subprocess.run(cli_argv("migrate"), env=stack.child_env(), check=True, timeout=60)

    # An instance behind: stop its listener's source of events by pausing the process.
    behind: ManagedProcess = stack.instances[1]
    os.kill(behind.pid, signal.SIGSTOP)
    try:
        execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Newer')""")
        code, report = run_status(stack)
    finally:
        os.kill(behind.pid, signal.SIGCONT)
    assert code == 1
    assert levels(report)["instances"] == "fail"

    # The bridge stopped: no active bridge, and changes stop reaching Redis.
    assert stack.bridge is not None
    stack.bridge.terminate()
    code, report = run_status(stack)
    assert code == 1
    assert levels(report)["bridge"] == "fail"


UNRELATED_KEYS = 20_000


async def scans_and_commands(client: aioredis.Redis) -> tuple[int, int]:
    """(SCAN calls, all commands) Redis served since its last CONFIG RESETSTAT."""
    stats = await client.info("commandstats")
    scans = int(stats.get("cmdstat_scan", {}).get("calls", 0))
    return scans, sum(int(entry["calls"]) for entry in stats.values())


async def test_status_finds_heartbeats_without_scanning_the_keyspace(
    settings: Settings, bridge: VocabularySyncBridge, cache: RedisVocabularyCache
) -> None:
    """A Redis shared with a big application: `vocabsync status` (and a bridge taking over) read
    the heartbeats through their index, in a few commands, however many other keys there are."""
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    try:
        for start in range(0, UNRELATED_KEYS, 5_000):
            await client.mset({f"app:session:{i}": "x" for i in range(start, start + 5_000)})
        await wait_until_async(
            lambda: read_heartbeats(client, settings, "instance"), message="instance reports"
        )
        await client.config_resetstat()
        report = await collect_status(settings)
        scans, _ = await scans_and_commands(client)
        assert report.ok, report.to_table()
        checks = {check.name: check for check in report.checks}
        assert checks["bridge"].summary.startswith(f"active: {bridge.identity}")
        assert [i["id"] for i in checks["instances"].details["instances"]] == [cache.identity]
        assert scans == 0, f"status scanned the keyspace ({scans} SCAN calls)"

        await client.config_resetstat()
        found = await read_heartbeats(client, settings, "bridge")
        scans, commands = await scans_and_commands(client)
        assert [b["id"] for b in found] == [bridge.identity]
        assert scans == 0
        assert commands <= 5, f"{commands} Redis commands to read one heartbeat"
    finally:
        await client.aclose()


async def test_heartbeat_index_drops_processes_that_are_gone(settings: Settings) -> None:
    """Members whose key expired, or whose expiry time has passed, are pruned from the index."""
    client = aioredis.Redis.from_url(settings.redis_connection_url)
    index = heartbeat_index_key(settings, "instance")
    try:
        for name in ("api-1", "api-2", "api-3"):
            await write_heartbeat(client, settings, "instance", name, {"version": 1})
        assert await client.zcard(index) == 3
        # api-2's key expires (its process died long ago); api-3 stops cleanly.
        await client.pexpire(heartbeat_key(settings, "instance", "api-2"), 1)
        await remove_heartbeat(client, settings, "instance", "api-3")

        async def expired() -> bool:
            return await client.exists(heartbeat_key(settings, "instance", "api-2")) == 0

        await wait_until_async(expired, message="key expired")
        # A member whose recorded expiry is past goes too, key or not.
        await client.zadd(index, {"api-0": time.time() - 1})
        found = await read_heartbeats(client, settings, "instance")
        assert [h["id"] for h in found] == ["api-1"]
        assert await client.zrange(index, 0, -1) == [b"api-1"]
        remaining = await client.zscore(index, "api-1")
        assert remaining is not None
        assert remaining > time.time() + 30
    finally:
        await client.aclose()


def test_secrets_never_reach_output(pg_url: str) -> None:
    secret = "S3cr3t-Pa55word-xyz"
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": f"postgresql://app:{secret}@127.0.0.1:1/db",
        "REDIS_URL": f"redis://:{secret}@127.0.0.1:1/0",
        "VOCABSYNC_REFRESH_TOKEN": secret,
        "VOCABSYNC_NETWORK_TIMEOUT": "1",
    }
    for args in (("status",), ("status", "--json"), ("migrate", "--check"), ("migrate",)):
        result = run_cli(*args, env=env)
        assert result.returncode != 0
        assert secret not in result.stdout + result.stderr, args
        assert "***" in result.stdout + result.stderr or "127.0.0.1" in result.stderr


async def test_refresh_requires_the_bearer_token_when_configured(
    db_url: str, redis_url: str
) -> None:
    settings = make_settings(db_url, redis_url, refresh_token="tok-123")
    async with running_client(create_app(settings)) as client:
        assert (await client.post("/api/vocabulary/refresh")).status_code == 401
        wrong = await client.post(
            "/api/vocabulary/refresh", headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        ok = await client.post(
            "/api/vocabulary/refresh", headers={"Authorization": "Bearer tok-123"}
        )
        assert ok.status_code == 200
        assert (await client.get("/api/vocabulary")).status_code == 200  # reads stay open
        cache = client._transport.app.state.vocabulary_cache  # type: ignore[attr-defined]
        in_flight, peak, loads = 0, 0, 0
        original = cache.loader.load

        async def slow_load(*args: object, **kwargs: object) -> object:
            nonlocal in_flight, peak, loads
            in_flight += 1
            loads += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.sleep(0.05)  # a slow query widens the window for concurrent calls
                return await original(*args, **kwargs)
            finally:
                in_flight -= 1

        cache.loader.load = slow_load
        many = await asyncio.gather(
            *(
                client.post("/api/vocabulary/refresh", headers={"Authorization": "Bearer tok-123"})
                for _ in range(20)
            )
        )
        assert {r.status_code for r in many} == {200}
        assert peak == 1, "never more than one load in flight"
        assert loads < 20, "concurrent refreshes share loads"


async def test_reads_can_require_a_token(db_url: str, redis_url: str) -> None:
    settings = make_settings(db_url, redis_url, read_token="read-1")
    async with running_client(create_app(settings)) as client:
        assert (await client.get("/api/vocabulary")).status_code == 401
        response = await client.get("/api/vocabulary", headers={"Authorization": "Bearer read-1"})
        assert response.status_code == 200
        assert (await client.get("/health")).status_code == 200


def test_json_logs_have_stable_action_names(stack: DemoStack, db_url: str) -> None:
    log_dir = stack.log_dir
    process = ManagedProcess(
        "bridge-json", cli_argv("bridge", "--log-format", "json"), stack.child_env(), log_dir
    ).start()
    try:
        wait_until(
            lambda: '"action": "bridge_' in process.log_tail(200), timeout=15, message="json logs"
        )
    finally:
        process.terminate()
    records = [
        json.loads(line) for line in process.log_tail(200).splitlines() if line.startswith("{")
    ]
    assert records
    assert all({"time", "level", "logger", "action", "message"} <= set(r) for r in records)
    assert {"bridge_starting", "bridge_stopped"} <= {r["action"] for r in records}
