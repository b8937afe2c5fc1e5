"""Application fixtures: a migrated database per test, settings, in-process bridge and cache.

The schema is migrated once per run into a template database; each test gets a copy
(``CREATE DATABASE ... TEMPLATE``), so tests are isolated and fast. Reconnect delays and health
checks are shrunk so recovery tests finish in seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import psycopg
import pytest
from psycopg import sql

from vocabsync.config import Settings
from vocabsync.db.migrate import migrate
from vocabsync.local.processes import cli_argv
from vocabsync.local.servers import LocalPostgres
from vocabsync.services.redis_vocabulary import RedisVocabularyCache
from vocabsync.services.vocabulary_sync_bridge import VocabularySyncBridge

FAST = {
    "reconnect_initial_delay": 0.05,
    "reconnect_max_delay": 0.5,
    "reconnect_jitter": 0.1,
    "snapshot_interval": 0.2,
    "health_check_interval": 0.5,
    "network_timeout": 2.0,
    "query_timeout": 10.0,
}
FAST_ENV = {
    "VOCABSYNC_RECONNECT_INITIAL_DELAY": "0.05",
    "VOCABSYNC_SNAPSHOT_INTERVAL": "0.2",
    "VOCABSYNC_RECONNECT_MAX_DELAY": "0.5",
    "VOCABSYNC_HEALTH_CHECK_INTERVAL": "0.5",
    "VOCABSYNC_NETWORK_TIMEOUT": "2",
}


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Settings for a test: explicit URLs, fast reconnects, and no ``.env`` file involved."""
    values: dict[str, Any] = {"database_url": database_url, "redis_url": redis_url, **FAST}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def derive(settings: Settings, **overrides: Any) -> Settings:
    """A validated copy of ``settings`` with some values changed."""
    values = {name: getattr(settings, name) for name in Settings.model_fields}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def template_db(pg_server: LocalPostgres) -> str:
    """A database with every migration applied, copied for each test."""
    name = f"template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    asyncio.run(migrate(make_settings(pg_server.url_for(name), "redis://127.0.0.1:1/0")))
    return name


@pytest.fixture
def db_url(pg_server: LocalPostgres, template_db: str) -> Iterator[str]:
    """A migrated database (five tables; the default mode's triggers: delta, with its lookup
    indexes), dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    try:
        yield pg_server.url_for(name)
    finally:
        with psycopg.connect(pg_server.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def settings(db_url: str, redis_url: str) -> Settings:
    return make_settings(db_url, redis_url)


def execute(url: str, statement: str, params: Sequence[Any] = ()) -> None:
    """Run one statement in its own committed transaction."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


def replace_vocabulary(
    url: str, settings: Settings, rows: Sequence[tuple[str, str | None]]
) -> None:
    """Empty the five tables, then insert each (field, value) into the column that feeds it."""
    execute(url, 'TRUNCATE "Project", "Expenses", "CashFlow", "ExpensesColumn", "CashFlowColumn"')
    for field, value in rows:
        source = settings.sources.sources[field]
        statement = sql.SQL("INSERT INTO {} ({}) VALUES (%s)").format(
            sql.Identifier(source.table), sql.Identifier(source.column)
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement, (value,))


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``vocabsync ARGS`` as a real process (stdout and stderr captured, never raises)."""
    return subprocess.run(
        cli_argv(*args),
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def query_lists(url: str, table: str, column: str) -> list[str]:
    """What the vocabulary should hold for one column: distinct, non-blank, sorted (C order)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT DISTINCT {c}::text FROM {t} WHERE btrim({c}::text, ' \t\r\n') <> ''"
            ).format(c=sql.Identifier(column), t=sql.Identifier(table))
        ).fetchall()
    return sorted(row[0] for row in rows)


def expected_vocabulary(url: str) -> dict[str, list[str]]:
    """The six lists straight from the database, computed independently of the loader."""
    return {
        "projects": query_lists(url, "Project", "project_name"),
        "project_locations": query_lists(url, "Project", "location"),
        "expense_files": query_lists(url, "Expenses", "file_name"),
        "cashflow_files": query_lists(url, "CashFlow", "file_name"),
        "expense_categories": query_lists(url, "ExpensesColumn", "column_name"),
        "cashflow_categories": query_lists(url, "CashFlowColumn", "column_name"),
    }


@pytest.fixture
async def bridge(settings: Settings) -> AsyncIterator[VocabularySyncBridge]:
    """A bridge running in this event loop, connected and resynced."""
    instance = VocabularySyncBridge(settings)
    task = asyncio.create_task(instance.run())
    try:
        for _ in range(500):
            if instance.connected or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        assert instance.connected, "bridge did not connect within 5 s"
        yield instance
    finally:
        instance.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)


@pytest.fixture
async def cache(settings: Settings) -> AsyncIterator[RedisVocabularyCache]:
    """An API instance's cache, started (subscribed and holding a snapshot)."""
    instance = RedisVocabularyCache(settings)
    await instance.start_listener()
    try:
        yield instance
    finally:
        await instance.stop()
