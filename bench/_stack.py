"""Local servers and child processes for the benchmarks: the one module that imports vocabsync.

bench/scale.py talks to the system under test only through its command line, HTTP, PostgreSQL
and Redis; the few vocabsync helpers it borrows (private servers, child processes, the demo's
word lists) are imported here and nowhere else, so a package move is one edit in this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import psycopg
import redis

from vocabsync.local.demo import seed as seed_demo
from vocabsync.local.demo_data import (
    FACILITIES,
    FEATURES,
    MONTHS,
    PHASES,
    PLACES,
    categories,
    demo_vocabulary,
)
from vocabsync.local.processes import ManagedProcess, cli_argv
from vocabsync.local.replication import StandbyPostgres, in_recovery
from vocabsync.local.sentinel import LocalRedisSentinel
from vocabsync.local.servers import LocalPostgres, LocalRedis, find_free_port, resolve_flavor

__all__ = [
    "FACILITIES",
    "FEATURES",
    "MONTHS",
    "PHASES",
    "PLACES",
    "LocalPostgres",
    "LocalRedis",
    "LocalRedisSentinel",
    "ManagedProcess",
    "Servers",
    "StandbyPostgres",
    "categories",
    "cli_argv",
    "demo_vocabulary",
    "find_free_port",
    "in_recovery",
    "resolve_flavor",
    "seed_demo",
]

MIGRATE_TIMEOUT_S = 300.0


def server_free_environment() -> dict[str, str]:
    """This environment less its connection settings: a child reaches only the private servers
    it is given, whatever the environment names; VOCABSYNC_* settings pass through (e.g.
    VOCABSYNC_MATCH_ENABLED=false to compare without matching)."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SUPABASE_", "REDIS_", "DATABASE_"))
    }


def run_migrate(env: Mapping[str, str]) -> None:
    """``vocabsync migrate`` in a child with ``env``; raises with its output when it fails."""
    result = subprocess.run(
        cli_argv("migrate"),
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"vocabsync migrate failed:\n{result.stdout}{result.stderr}")


class Servers:
    """A private PostgreSQL and Redis for the whole run (never the machine's shared servers).

    The benchmark truncates tables and flushes Redis between runs, so it always starts its own
    servers, whatever DATABASE_URL / REDIS_URL say.
    """

    def __init__(self, postgres_conf: Mapping[str, str] | None = None) -> None:
        self.log_dir = Path(tempfile.mkdtemp(prefix="vocabsync-scale-"))
        self._postgres = LocalPostgres(flavor=resolve_flavor(), extra_conf=postgres_conf)
        self._redis = LocalRedis(flavor=resolve_flavor())

    def __enter__(self) -> Servers:
        try:
            self._postgres.start()
            self._redis.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def database_url(self) -> str:
        return self._postgres.url

    @property
    def redis_url(self) -> str:
        return self._redis.url

    @property
    def postgres_port(self) -> int:
        return self._postgres.port

    @property
    def redis_port(self) -> int:
        return self._redis.port

    def restart_postgres(self) -> None:
        """Fast shutdown (SIGINT: sessions ended, transactions aborted), then start again."""
        self._postgres.restart()

    def restart_redis(self) -> None:
        """SIGTERM, then start again on the same port: without persistence, Redis comes back
        empty."""
        self._redis.restart()

    @property
    def postgres_pid(self) -> int:
        pid = self._postgres.pid
        assert pid is not None, "PostgreSQL is not running"
        return pid

    @property
    def redis_pid(self) -> int:
        pid = self._redis.pid
        assert pid is not None, "Redis is not running"
        return pid

    def child_env(self) -> dict[str, str]:
        env = server_free_environment()
        env.update(DATABASE_URL=self.database_url, REDIS_URL=self.redis_url, PYTHONUNBUFFERED="1")
        return env

    def migrate(self) -> None:
        """``vocabsync migrate``: tables, trigger function and triggers, as a deployment does."""
        run_migrate(self.child_env())

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.database_url, autocommit=True, connect_timeout=10)

    def flush_redis(self) -> None:
        """Forget every key (our private server only): the next system starts from nothing."""
        client = redis.Redis.from_url(self.redis_url, socket_timeout=10)
        try:
            client.flushall()
        finally:
            client.close()

    def spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        return ManagedProcess(name, argv, self.child_env(), self.log_dir).start()

    def close(self) -> None:
        for server in (self._redis, self._postgres):
            try:
                server.cleanup()
            except Exception as exc:  # keep cleaning up the other one
                print(f"cleanup of {server!r} failed: {exc}", file=sys.stderr)
