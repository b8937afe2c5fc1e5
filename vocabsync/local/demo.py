"""``vocabsync demo``: the whole pipeline on one machine, and a change timed to every instance.

:class:`DemoStack` is also what the latency benchmark and the end-to-end tests run: private
PostgreSQL and Redis (unless DATABASE_URL / REDIS_URL are set), migrations, a seeded vocabulary,
one bridge and N API instances as real child processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from vocabsync.config import Settings
from vocabsync.db.migrate import migrate
from vocabsync.local.demo_data import DemoVocabulary, demo_vocabulary
from vocabsync.local.processes import ManagedProcess, cli_argv, http_json, wait_http_ready
from vocabsync.local.servers import LocalPostgres, LocalRedis, find_free_port, resolve_flavor
from vocabsync.vocabulary import FIELDS

VocabularyCheck = Callable[[dict[str, Any]], bool]


def seed(database_url: str, vocabulary: DemoVocabulary) -> None:
    """Insert the demo vocabulary (one transaction per table, COPY for speed)."""
    with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        with cur.copy('COPY "Project" (project_name, location) FROM STDIN') as copy:
            for row in vocabulary.projects:
                copy.write_row(row)
        for table, column, values in (
            ("Expenses", "file_name", vocabulary.expense_files),
            ("CashFlow", "file_name", vocabulary.cashflow_files),
            ("ExpensesColumn", "column_name", vocabulary.expense_categories),
            ("CashFlowColumn", "column_name", vocabulary.cashflow_categories),
        ):
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table), sql.Identifier(column)
            )
            with cur.copy(statement) as copy:
                for value in values:
                    copy.write_row((value,))


class DemoStack:
    """Servers + migrations + seed + one bridge + ``instances`` API processes."""

    def __init__(
        self,
        settings: Settings,
        *,
        instances: int = 2,
        base_port: int | None = None,
        seed_vocabulary: DemoVocabulary | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.instance_count = instances
        self.base_port = base_port
        self.seed_vocabulary = seed_vocabulary
        self.extra_env = extra_env or {}
        self.postgres: LocalPostgres | None = None
        self.redis: LocalRedis | None = None
        self.bridge: ManagedProcess | None = None
        self.instances: list[ManagedProcess] = []
        self.instance_urls: list[str] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="vocabsync-demo-"))
        self.database_url = ""
        self.redis_url = ""

    @property
    def log_dir(self) -> Path:
        return self._tmp

    def __enter__(self) -> DemoStack:
        try:
            self.start()
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

    def start(self) -> None:
        if self.settings.database_configured:
            self.database_url = self.settings.postgres_conninfo
        else:
            self.postgres = LocalPostgres(flavor=resolve_flavor())
            self.postgres.start()
            self.database_url = self.postgres.url
        if self.settings.redis_configured:
            self.redis_url = self.settings.redis_connection_url
        else:
            self.redis = LocalRedis(flavor=resolve_flavor())
            self.redis.start()
            self.redis_url = self.redis.url
        asyncio.run(migrate(self.child_settings()))
        if self.seed_vocabulary is not None:
            seed(self.database_url, self.seed_vocabulary)
        self.bridge = self.start_bridge()
        for index in range(self.instance_count):
            port = self.base_port + index if self.base_port else find_free_port()
            self.start_instance(port, index)
        for process, url in zip(self.instances, self.instance_urls, strict=True):
            wait_http_ready(process, f"{url}/ready")

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def child_settings(self) -> Settings:
        return Settings(database_url=self.database_url, redis_url=self.redis_url)

    def start_bridge(self, name: str = "bridge", *args: str) -> ManagedProcess:
        """A bridge process; extra ``args`` go to ``vocabsync bridge`` (e.g. --metrics-port)."""
        argv = cli_argv("bridge", *args)
        return ManagedProcess(name, argv, self.child_env(), self._tmp).start()

    def start_instance(self, port: int, index: int) -> ManagedProcess:
        argv = cli_argv("serve", "--host", "127.0.0.1", "--port", str(port))
        process = ManagedProcess(f"api-{index + 1}", argv, self.child_env(), self._tmp).start()
        self.instances.append(process)
        self.instance_urls.append(f"http://127.0.0.1:{port}")
        return process

    def vocabularies(self) -> list[dict[str, Any]]:
        """What each instance serves right now."""
        out = []
        for url in self.instance_urls:
            status, body = http_json(f"{url}/api/vocabulary", timeout=5.0)
            out.append(body if status == 200 and isinstance(body, dict) else {})
        return out

    def wait_everywhere(
        self, check: VocabularyCheck, timeout: float = 10.0, interval: float = 0.002
    ) -> float:
        """Seconds until every instance serves a vocabulary passing ``check``."""
        started = time.perf_counter()
        deadline = started + timeout
        pending = list(range(len(self.instance_urls)))
        while pending:
            pending = [i for i in pending if not check(self._vocabulary_of(i))]
            if not pending:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"instances {[i + 1 for i in pending]} did not converge within {timeout:g} s"
                )
            time.sleep(interval)
        return time.perf_counter() - started

    def _vocabulary_of(self, index: int) -> dict[str, Any]:
        try:
            status, body = http_json(f"{self.instance_urls[index]}/api/vocabulary", timeout=5.0)
        except OSError:
            return {}
        return body if status == 200 and isinstance(body, dict) else {}

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(statement, params)

    def close(self) -> None:
        for process in [*self.instances, *([self.bridge] if self.bridge else [])]:
            process.terminate(grace=10)
        self.instances.clear()
        self.bridge = None
        for server in (self.redis, self.postgres):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.cleanup()
        shutil.rmtree(self._tmp, ignore_errors=True)


SCRIPT: list[tuple[str, str, tuple[Any, ...], VocabularyCheck]] = [
    (
        "add a project",
        'INSERT INTO "Project"(project_name, location) VALUES (%s, %s)',
        ("Pasig Riverside Flood Control Phase 4", "Pasig"),
        lambda v: "Pasig Riverside Flood Control Phase 4" in v.get("projects", ()),
    ),
    (
        "rename it",
        'UPDATE "Project" SET project_name = %s WHERE project_name = %s',
        ("Pasig Riverside Flood Control Phase 5", "Pasig Riverside Flood Control Phase 4"),
        lambda v: (
            "Pasig Riverside Flood Control Phase 5" in v.get("projects", ())
            and "Pasig Riverside Flood Control Phase 4" not in v.get("projects", ())
        ),
    ),
    (
        "add an expense category",
        'INSERT INTO "ExpensesColumn"(column_name) VALUES (%s)',
        ("Diesel Surcharge",),
        lambda v: "Diesel Surcharge" in v.get("expense_categories", ()),
    ),
    (
        "add a cash-flow file",
        'INSERT INTO "CashFlow"(file_name) VALUES (%s)',
        ("CashFlow_December_2026.xlsx",),
        lambda v: "CashFlow_December_2026.xlsx" in v.get("cashflow_files", ()),
    ),
    (
        "delete the project",
        'DELETE FROM "Project" WHERE project_name = %s',
        ("Pasig Riverside Flood Control Phase 5",),
        lambda v: (
            bool(v.get("projects")) and "Pasig Riverside Flood Control Phase 5" not in v["projects"]
        ),
    ),
]


def run_demo(settings: Settings, *, once: bool, base_port: int | None = None) -> int:
    """Start the stack, play the script, print the latencies; keep running unless ``once``."""
    print("starting PostgreSQL, Redis, a bridge and two API instances ...", flush=True)
    with DemoStack(settings, base_port=base_port, seed_vocabulary=demo_vocabulary()) as stack:
        counts = {name: len(stack.vocabularies()[0].get(name, [])) for name in FIELDS}
        print(f"seeded vocabulary: {counts}")
        print("\nchange                          commit -> served by both instances")
        for title, statement, params, check in SCRIPT:
            stack.execute(statement, params)
            seconds = stack.wait_everywhere(check)
            print(f"  {title:<30} {seconds * 1000:8.1f} ms")
        if once:
            return 0
        print("\nrunning; try:")
        for url in stack.instance_urls:
            print(f"  curl {url}/api/vocabulary")
        print(f'  psql \'{stack.database_url}\' -c "INSERT INTO \\"Project\\"(project_name) ..."')
        print(f"logs in {stack.log_dir}; Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            for _ in _forever():
                for process in [*stack.instances, *([stack.bridge] if stack.bridge else [])]:
                    process.check_alive()
        print("\nstopping")
    return 0


def _forever() -> Iterator[None]:
    while True:
        time.sleep(1.0)
        yield None
