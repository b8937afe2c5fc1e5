"""Shared fixtures: private PostgreSQL/Redis servers (never the machine's shared ones).

The flavor of binaries comes from $VOCABSYNC_LOCAL_SERVERS (auto|system|embedded, default auto).
More application fixtures live in tests/fixtures_app.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from vocabsync.local.servers import LocalPostgres, LocalRedis, resolve_flavor

pytest_plugins = ["tests.fixtures_app"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    """One private PostgreSQL for the whole run; tests isolate themselves per database."""
    server = LocalPostgres(flavor=resolve_flavor())
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def create_test_database(server: LocalPostgres) -> str:
    """Create a fresh, uniquely named database on ``server`` and return its name."""
    name = f"test_{uuid.uuid4().hex}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_test_database(server: LocalPostgres, name: str) -> None:
    """Drop a test database even if the test left connections open."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def pg_url(pg_server: LocalPostgres) -> Iterator[str]:
    """URL of a fresh, empty database that is dropped after the test."""
    name = create_test_database(pg_server)
    try:
        yield pg_server.url_for(name)
    finally:
        drop_test_database(pg_server, name)


@pytest.fixture
def redis_server() -> Iterator[LocalRedis]:
    """A fresh private Redis per test (starts in milliseconds, so no shared state)."""
    server = LocalRedis(flavor=resolve_flavor())
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    return redis_server.url
