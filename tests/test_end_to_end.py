"""End to end, with real processes: ``vocabsync bridge`` and two ``vocabsync serve`` children.

Every test runs against the suite's private PostgreSQL (a migrated database of its own) and a
private Redis of its own, so it may kill and restart them. The expected state is always read from
the database (``expected_vocabulary``) and compared with what each instance serves over HTTP.
Waits poll a condition with a deadline; no test sleeps for a fixed time. Every child is stopped at
the end of each test, pass or fail, and its log tail is printed (pytest shows it on failure).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.fixtures_app import FAST_ENV, execute, expected_vocabulary, make_settings, run_cli
from tests.waiting import wait_until
from vocabsync.local.demo import DemoStack
from vocabsync.local.processes import ManagedProcess, http_json, python_module_argv
from vocabsync.local.servers import LocalRedis
from vocabsync.vocabulary import Snapshot, SnapshotFormatError

pytestmark = pytest.mark.slow

# The five vocabulary tables and their vocabulary columns (the default mapping).
TABLES: dict[str, tuple[str, ...]] = {
    "ExpensesColumn": ("column_name",),
    "CashFlowColumn": ("column_name",),
    "Expenses": ("file_name",),
    "CashFlow": ("file_name",),
    "Project": ("project_name", "location"),
}

CONVERGENCE_BOUND_S = 5.0
"""Property 2's bound as tested here (the design's goal is 2 s; 5 s leaves CI headroom)."""

SIGTERM_BOUND_S = 5.0


class E2EStack(DemoStack):
    """A DemoStack that remembers every child it ever started (replacements included)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spawned: list[ManagedProcess] = []

    def start_bridge(self, name: str = "bridge") -> ManagedProcess:
        process = super().start_bridge(name)
        self.spawned.append(process)
        return process

    def start_instance(self, port: int, index: int) -> ManagedProcess:
        process = super().start_instance(port, index)
        self.spawned.append(process)
        return process

    def logs(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {p.name} (pid {p.process.pid if p.process else '-'}, "
            f"{'alive' if p.alive else f'exit {p.process.returncode if p.process else None}'}) "
            f"-----\n{p.log_tail(lines)}"
            for p in self.spawned
        )

    def replace_bridge(self, name: str) -> ManagedProcess:
        """Start a new bridge in place of the current (dead or stopped) one."""
        if self.bridge is not None:
            self.bridge.terminate(grace=5)
        self.bridge = self.start_bridge(name)
        return self.bridge


@pytest.fixture
def stack(db_url: str, redis_server: LocalRedis) -> Iterator[E2EStack]:
    """A bridge and two API instances on this test's database and Redis; all stopped after."""
    # A little data in every table, so no list starts empty.
    execute(db_url, """INSERT INTO "Project"(project_name, location) VALUES ('Base', 'Pasig')""")
    for table, (column, *_) in TABLES.items():
        if table != "Project":
            execute(db_url, f'INSERT INTO "{table}"({column}) VALUES (%s)', (f"Base {table}",))
    demo = E2EStack(make_settings(db_url, redis_server.url), instances=2, extra_env=FAST_ENV)
    try:
        with demo:
            yield demo
    finally:
        print(demo.logs())
        left = [p.name for p in demo.spawned if p.alive]
        for process in demo.spawned:  # belt and braces: never leave a child behind
            process.terminate(grace=1)
        shutil.rmtree(demo.log_dir, ignore_errors=True)
        assert not left, f"children still running after DemoStack.close(): {left}"


# --- helpers ----------------------------------------------------------------------------------


def lists(body: dict[str, Any]) -> dict[str, Any]:
    """The six lists of a GET /api/vocabulary answer (everything but ``meta``)."""
    return {key: value for key, value in body.items() if key != "meta"}


def source_of(body: dict[str, Any]) -> str | None:
    meta = body.get("meta")
    return meta.get("source") if isinstance(meta, dict) else None


def served(url: str) -> dict[str, Any]:
    try:
        status, body = http_json(f"{url}/api/vocabulary", timeout=5.0)
    except OSError as exc:
        return {"error": repr(exc)}
    return body if status == 200 and isinstance(body, dict) else {"status": status, "body": body}


def converge(
    stack: E2EStack, db_url: str, *, timeout: float = 10.0, source: str | None = None
) -> float:
    """Wait until every instance serves exactly the database's vocabulary; return the seconds.

    With ``source``, each answer's ``meta.source`` must be that too.
    """
    expected = expected_vocabulary(db_url)

    def check(body: dict[str, Any]) -> bool:
        return lists(body) == expected and (source is None or source_of(body) == source)

    try:
        return stack.wait_everywhere(check, timeout=timeout)
    except TimeoutError as exc:
        now = {url: served(url) for url in stack.instance_urls}
        raise AssertionError(
            f"{exc}\nexpected (database): {expected}\nsource wanted: {source}\n"
            f"served: {now}\n{stack.logs()}"
        ) from None


def assert_all_alive(stack: E2EStack) -> None:
    processes = [*stack.instances, *([stack.bridge] if stack.bridge else [])]
    dead = [p.name for p in processes if not p.alive]
    assert not dead, f"{dead} died:\n{stack.logs()}"


def wait_exit_after_sigterm(process: ManagedProcess, sent_at: float) -> tuple[int, float]:
    """Wait for a child we sent SIGTERM to; (exit code, seconds since the signal)."""
    assert process.process is not None
    try:
        code = process.process.wait(timeout=SIGTERM_BOUND_S + 5)
    except subprocess.TimeoutExpired:
        code = None
    elapsed = time.monotonic() - sent_at
    assert code is not None, f"{process.name} ignored SIGTERM:\n{process.log_tail()}"
    return code, elapsed


# --- 1. every kind of write, every table ------------------------------------------------------


def _steps(table: str, columns: tuple[str, ...]) -> list[tuple[str, str, tuple[Any, ...]]]:
    first = columns[0]
    insert: tuple[str, tuple[Any, ...]]
    update: tuple[str, tuple[Any, ...]]
    one, two, renamed = (f"E2E {table} {word}" for word in ("one", "two", "renamed"))
    if table == "Project":
        insert = (
            'INSERT INTO "Project"(project_name, location) VALUES (%s, %s), (%s, %s)',
            (one, "Loc one", two, "Loc two"),
        )
        update = (
            'UPDATE "Project" SET project_name = %s, location = %s WHERE project_name = %s',
            (renamed, "Loc renamed", one),
        )
    else:
        insert = (f'INSERT INTO "{table}"({first}) VALUES (%s), (%s)', (one, two))
        update = (f'UPDATE "{table}" SET {first} = %s WHERE {first} = %s', (renamed, one))
    return [
        ("insert", *insert),
        ("update", *update),
        ("delete", f'DELETE FROM "{table}" WHERE {first} = %s', (renamed,)),
        ("truncate", f'TRUNCATE "{table}" CASCADE', ()),
    ]


def test_insert_update_delete_truncate_reach_both_instances_in_time(
    stack: E2EStack, db_url: str
) -> None:
    """Feature: real-time-vocabulary-sync, Property 2: Cache refresh completes within time bound.

    Each write is timed from its commit until both API processes serve exactly the database's
    vocabulary; every one must take less than CONVERGENCE_BOUND_S.
    """
    converge(stack, db_url)
    latencies: dict[str, float] = {}
    previous = expected_vocabulary(db_url)
    for table, columns in TABLES.items():
        for step, statement, params in _steps(table, columns):
            execute(db_url, statement, params)
            seconds = converge(stack, db_url, timeout=CONVERGENCE_BOUND_S + 5)
            latencies[f"{step} {table}"] = seconds
            now = expected_vocabulary(db_url)
            assert now != previous, f"{step} {table} did not change the vocabulary"
            previous = now
    print("commit -> both instances:", {k: f"{v * 1000:.0f} ms" for k, v in latencies.items()})
    slow = {k: v for k, v in latencies.items() if v >= CONVERGENCE_BOUND_S}
    assert not slow, f"convergence slower than {CONVERGENCE_BOUND_S} s: {slow}"
    assert all(values == [] for values in previous.values()), previous
    assert_all_alive(stack)


# --- 2-4. recovery --------------------------------------------------------------------------


def test_bridge_killed_then_restarted_catches_up(stack: E2EStack, db_url: str) -> None:
    assert stack.bridge is not None
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Before crash')""")
    converge(stack, db_url)

    stack.bridge.kill()  # kill -9: no cleanup, no goodbye
    assert not stack.bridge.alive
    execute(db_url, """INSERT INTO "Project"(project_name, location) VALUES ('During', 'Taguig')""")
    execute(db_url, """DELETE FROM "ExpensesColumn" """)
    execute(db_url, """INSERT INTO "CashFlow"(file_name) VALUES ('cf_while_down.xlsx')""")

    stack.replace_bridge("bridge-2")
    converge(stack, db_url)
    execute(db_url, """UPDATE "Project" SET location = 'Makati' WHERE project_name = 'During'""")
    converge(stack, db_url)
    assert_all_alive(stack)


def test_redis_down_reads_from_database_then_events_resume(
    stack: E2EStack, db_url: str, redis_server: LocalRedis
) -> None:
    converge(stack, db_url, source="memory")

    redis_server.kill()
    execute(db_url, """INSERT INTO "Project"(project_name, location) VALUES ('No Redis', 'Cebu')""")
    execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('Fuel')""")
    # Events cannot arrive: each instance notices and reads through to PostgreSQL.
    converge(stack, db_url, source="database")
    assert_all_alive(stack)

    redis_server.restart()  # comes back empty
    # Each instance resubscribes, resyncs and serves from memory again.
    converge(stack, db_url, source="memory")

    execute(db_url, """INSERT INTO "CashFlowColumn"(column_name) VALUES ('After Redis')""")
    # Served from memory, so only an event (bridge -> Redis -> instance) can have brought it.
    converge(stack, db_url, source="memory")
    # The bridge rewrites the seed's key at most every VOCABSYNC_SNAPSHOT_INTERVAL (0.2 s here),
    # after it wrote the log, which the instances may already follow: wait for it.
    expected = expected_vocabulary(db_url)
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5.0)
    try:

        def stored() -> dict[str, list[str]] | None:
            raw = client.get("vocabulary")
            return None if raw is None else Snapshot.from_json(raw).as_lists()

        wait_until(
            lambda: stored() == expected,
            timeout=CONVERGENCE_BOUND_S,
            message="the snapshot was not written back to the restarted Redis",
        )
    finally:
        client.close()
    assert_all_alive(stack)


def test_bridge_backend_terminated_reconnects_and_resyncs(stack: E2EStack, db_url: str) -> None:
    execute(db_url, """INSERT INTO "Expenses"(file_name) VALUES ('exp_before.xlsx')""")
    converge(stack, db_url)  # the bridge is connected and listening

    with psycopg.connect(db_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'vocabsync-bridge' AND datname = current_database()"
        ).fetchall()
        assert killed == [(True,)], f"expected one bridge backend, terminated {killed}"
        # Commits while the bridge has no session: only its resync can catch this.
        conn.execute("""INSERT INTO "Project"(project_name) VALUES ('While reconnecting')""")
    converge(stack, db_url)

    execute(db_url, """INSERT INTO "ExpensesColumn"(column_name) VALUES ('After reconnect')""")
    converge(stack, db_url)
    assert_all_alive(stack)


# --- 5. bad input -----------------------------------------------------------------------------


def test_garbage_everywhere_kills_nothing(
    stack: E2EStack, db_url: str, redis_server: LocalRedis
) -> None:
    converge(stack, db_url)
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set("vocabulary", b"\x00\xff not a snapshot {")
        for message in (
            b"\xff\xfe\x00\x80 binary",
            os.urandom(64) * (2 * 1024 * 1024 // 64),  # 2 MiB
            b"",
            b'{"projects": 5}',
        ):
            client.publish("vocabulary_updated", message)
    finally:
        client.close()
    execute(db_url, "SELECT pg_notify('vocabulary_changed', 'NoSuchTable')")
    execute(db_url, "SELECT pg_notify('vocabulary_changed', '')")

    # Channels deliver in order: once this change is everywhere, all the garbage was handled.
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('After garbage')""")
    converge(stack, db_url)
    assert_all_alive(stack)

    def seed_key_repaired() -> bool:
        # The seed's key is rewritten at most every VOCABSYNC_SNAPSHOT_INTERVAL (0.2 s here).
        client = redis.Redis.from_url(redis_server.url)
        try:
            raw = client.get("vocabulary")
        finally:
            client.close()
        try:
            return Snapshot.from_json(raw or b"").as_lists() == expected_vocabulary(db_url)
        except SnapshotFormatError:
            return False

    wait_until(seed_key_repaired, message="the seed's key rewritten")
    execute(db_url, """DELETE FROM "Project" WHERE project_name = 'After garbage'""")
    converge(stack, db_url)
    assert_all_alive(stack)


# --- 6. concurrency ---------------------------------------------------------------------------


def test_concurrent_manual_refreshes_and_a_burst_of_commits(stack: E2EStack, db_url: str) -> None:
    converge(stack, db_url)
    execute(db_url, """INSERT INTO "Project"(project_name) VALUES ('Before refresh')""")
    barrier = threading.Barrier(10)

    def refresh(index: int) -> tuple[int, Any]:
        url = stack.instance_urls[index % len(stack.instance_urls)]
        barrier.wait(timeout=10)
        return http_json(f"{url}/api/vocabulary/refresh", method="POST", timeout=30)

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(refresh, range(10)))
    bad = [a for a in answers if a[0] != 200 or not a[1].get("success")]
    assert not bad, f"refreshes failed: {bad}\n{stack.logs()}"
    converge(stack, db_url)

    rows = 2000
    started = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn:
        tables = list(TABLES.items())
        for i in range(rows):
            table, (column, *_) = tables[i % len(tables)]
            conn.execute(f'INSERT INTO "{table}"({column}) VALUES (%s)', (f"burst {i:04d}",))
    committed = time.monotonic() - started
    seconds = converge(stack, db_url, timeout=60)
    print(f"{rows} commits in {committed:.1f} s; converged {seconds * 1000:.0f} ms after the last")
    assert len(expected_vocabulary(db_url)["projects"]) == rows // len(TABLES) + 2
    assert_all_alive(stack)


# --- 7. shutdown ------------------------------------------------------------------------------


def test_sigterm_stops_bridge_and_api_promptly_and_cleanly(stack: E2EStack, db_url: str) -> None:
    execute(db_url, """INSERT INTO "CashFlowColumn"(column_name) VALUES ('Before shutdown')""")
    converge(stack, db_url)  # both are connected and idle in their loops
    bridge, api = stack.bridge, stack.instances[0]
    assert bridge is not None

    sent_at = time.monotonic()
    os.kill(bridge.pid, signal.SIGTERM)
    os.kill(api.pid, signal.SIGTERM)
    results = {p.name: wait_exit_after_sigterm(p, sent_at) for p in (bridge, api)}
    print("exit code, seconds after SIGTERM:", results)
    problems = [
        f"{name} exited with {code} ({elapsed:.2f} s after SIGTERM)"
        for name, (code, elapsed) in results.items()
        if code != 0 or elapsed >= SIGTERM_BOUND_S
    ]
    assert not problems, (
        f"{problems} (wanted exit code 0 within {SIGTERM_BOUND_S} s)\n{stack.logs()}"
    )
    # The other instance is unaffected and still serves the database's vocabulary.
    other = served(stack.instance_urls[1])
    assert lists(other) == expected_vocabulary(db_url)


# --- 8. the command line ----------------------------------------------------------------------


HELP_MENTIONS = {
    (): ["migrate", "bridge", "serve", "demo", "vocabulary"],
    ("migrate",): ["trigger", "--check", "--mode", "default delta", "CREATE INDEX CONCURRENTLY"],
    ("bridge",): ["LISTEN", "Redis", "PUBLISH"],
    ("serve",): ["--port", "--host", "API"],
    ("demo",): ["--once", "instances"],
}


def test_cli_help_migrate_check_and_bridge_module(
    pg_url: str, redis_server: LocalRedis, tmp_path: Path
) -> None:
    for command, words in HELP_MENTIONS.items():
        result = run_cli(*command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        text = " ".join(result.stdout.split())  # argparse wraps lines
        missing = [w for w in words if w not in text]
        assert not missing, f"`vocabsync {' '.join(command)} --help` lacks {missing}"

    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_server.url,
        "PYTHONUNBUFFERED": "1",
        **FAST_ENV,
    }
    before = run_cli("migrate", "--check", env=env)
    assert before.returncode == 1, before
    assert "installed: neither mode completely; configured: delta" in before.stderr  # default
    assert "vocabsync_notify_delta" in before.stderr, before.stderr
    for table in TABLES:
        assert table in before.stderr, f"{table} not named:\n{before.stderr}"
    assert "vocabsync migrate" in before.stderr

    applied = run_cli("migrate", env=env)
    assert applied.returncode == 0, applied
    assert "built index Project_project_name_vocabsync" in applied.stdout
    after = run_cli("migrate", "--check", env=env)
    assert after.returncode == 0, after
    assert "ok: trigger function and all delta-mode triggers are installed" in after.stdout

    execute(pg_url, 'DROP TRIGGER vocabulary_change_trigger ON "CashFlow"')
    dropped = run_cli("migrate", "--check", env=env)
    assert dropped.returncode == 1, dropped
    assert 'vocabulary_change_trigger on "CashFlow"' in dropped.stderr, dropped.stderr
    assert run_cli("migrate", env=env).returncode == 0
    assert run_cli("migrate", "--check", env=env).returncode == 0

    # The deployment files' entry point runs the bridge too.
    client = redis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe("vocabulary_updated")
    bridge = ManagedProcess(
        "bridge-module",
        python_module_argv("vocabsync.services.vocabulary_sync_bridge"),
        env,
        tmp_path,
    )
    try:
        bridge.start()

        def next_message() -> bytes | None:
            bridge.check_alive()
            message = pubsub.get_message(timeout=0.05)
            return message["data"] if message else None

        assert wait_until(next_message, timeout=20, message="resync published") == b"*"
        execute(pg_url, """INSERT INTO "Project"(project_name) VALUES ('From module')""")
        assert wait_until(next_message, timeout=10, message="change published") == b"Project"

        # The seed's key follows within VOCABSYNC_SNAPSHOT_INTERVAL (0.2 s here).
        def seed_key_projects() -> bool:
            raw = client.get("vocabulary")
            return raw is not None and Snapshot.from_json(raw).get("projects") == ("From module",)

        wait_until(seed_key_projects, message="seed key rewritten")

        sent_at = time.monotonic()
        os.kill(bridge.pid, signal.SIGTERM)
        code, elapsed = wait_exit_after_sigterm(bridge, sent_at)
        assert code == 0, bridge.log_tail()
        assert elapsed < SIGTERM_BOUND_S
    finally:
        bridge.terminate(grace=1)
        pubsub.close()
        client.close()
        print(bridge.log_tail(60))
