"""``vocabsync migrate`` and ``vocabsync check``: install the schema and triggers, and verify them.

The migrations are the Supabase CLI's files (``vocabsync/supabase/migrations/*.sql``, package
data, applied in name order), so a project that uses ``supabase db push`` and one that uses
``vocabsync migrate`` end up with the same database. Two differences make ``migrate`` safe to run
on every deploy:

* each trigger migration is applied as rendered from the configured mapping, channel and trigger
  mode (for the defaults and the file's own mode that is the file's exact text), and the default
  tables are not created for a custom mapping;
* after applying, it checks the triggers and reinstalls them if they were dropped, disabled,
  altered, cover other columns than the mapping's, or belong to the other trigger mode (the
  trigger SQL is idempotent), so a trigger lost with a recreated table comes back, a column added
  to VOCABSYNC_SOURCES gets covered, and ``--mode`` switches modes in one transaction.

There are four trigger migrations: the first release's (statement mode), the precise mode's
that replaced it, the one that adds the failure log (``public.vocabsync_trigger_failures``) and
the function revision that counts failed notifies there, and delta mode's, which also adds the
identity function and the lookup indexes. Supabase CLI users who applied the first get the
others from ``supabase db push``; a new database applies all, in order. ``vocabsync migrate``
renders each as the current revision in the configured mode, so the ledger's entry for a trigger
migration means "the triggers were installed at that point", whatever the mode.

In delta mode ``migrate`` then builds the lookup indexes that are missing with ``CREATE INDEX
CONCURRENTLY``, outside any transaction (writes go on meanwhile; see
:mod:`vocabsync.db.lookup_indexes` for the cost).

Applied migrations are recorded in ``public.vocabsync_migrations``. Every step runs in its own
transaction under one advisory lock, so concurrent ``vocabsync migrate`` runs (several instances
deploying at once) apply each migration exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psycopg

from vocabsync.config import Settings
from vocabsync.db.catalogue import TriggerCheck, check_triggers
from vocabsync.db.connection import AsyncConn, connect, describe_pg_error
from vocabsync.db.lookup_indexes import build_indexes
from vocabsync.db.triggers import DEFAULT_CHANNEL, TriggerMode, render_trigger_sql
from vocabsync.errors import ConfigurationError, DatabaseUnavailableError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR_ENV: Final = "VOCABSYNC_MIGRATIONS_DIR"
BASE_SCHEMA_SUFFIX: Final = "_vocabulary_base_schema.sql"
TRIGGERS_SUFFIX: Final = "_vocabulary_sync_triggers.sql"
PRECISE_TRIGGERS_SUFFIX: Final = "_vocabulary_precise_triggers.sql"
FAILURE_LOG_SUFFIX: Final = "_vocabulary_trigger_failure_log.sql"
DELTA_TRIGGERS_SUFFIX: Final = "_vocabulary_delta_triggers.sql"
TRIGGER_MIGRATIONS: Final[dict[str, tuple[TriggerMode, int]]] = {
    TRIGGERS_SUFFIX: ("statement", 1),
    PRECISE_TRIGGERS_SUFFIX: ("precise", 1),
    FAILURE_LOG_SUFFIX: ("precise", 2),
    DELTA_TRIGGERS_SUFFIX: ("delta", 3),
}
"""The trigger migrations, by name suffix, and the mode and function revision each committed
file was rendered in (``vocabsync.db.triggers.REVISIONS``). Whatever the file's, ``migrate`` applies
the current revision in the configured mode."""

MIGRATION_LOCK_KEY: Final = int.from_bytes(b"vsmigrat", "big")
"""Advisory lock key held by every migration transaction (a fixed bigint, ASCII ``vsmigrat``)."""

LOCK_TIMEOUT_SECONDS: Final = 5.0
"""How long DDL may wait for a table lock. Writers queue behind a waiting DDL statement, so a
long wait would stall the application's writes; better to fail and let the operator retry."""

MIN_SERVER_VERSION: Final = 140000
"""CREATE OR REPLACE TRIGGER needs PostgreSQL 14."""

_CREATE_LEDGER: Final = """
CREATE TABLE IF NOT EXISTS public.vocabsync_migrations (
    name text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(slots=True)
class MigrationReport:
    """What one ``migrate`` run did."""

    applied: list[str]
    already_applied: list[str]
    repaired: bool
    check: TriggerCheck
    skipped: list[str] = field(default_factory=list)
    """Recorded without running (the default tables, under a custom mapping)."""
    indexes_built: list[str] = field(default_factory=list)
    """Lookup indexes built (delta mode), with CREATE INDEX CONCURRENTLY."""


def migrations_dir() -> Path:
    """``$VOCABSYNC_MIGRATIONS_DIR``, else the migrations shipped inside the package.

    They are package data (``vocabsync/supabase/migrations``), so an installed wheel finds them
    from any working directory.
    """
    configured = os.environ.get(MIGRATIONS_DIR_ENV)
    if configured:
        path = Path(configured)
    else:
        path = Path(__file__).resolve().parent.parent / "supabase" / "migrations"
    if not path.is_dir():
        raise ConfigurationError(
            f"migrations directory {path} does not exist: reinstall vocabsync (the migrations ship "
            f"inside the package), or set {MIGRATIONS_DIR_ENV} to the directory holding them"
        )
    return path


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its name (the ledger key) and its SQL."""

    name: str
    text: str


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Read every migration up front, so a missing or unreadable file fails before any change."""
    return [Migration(p.name, p.read_text(encoding="utf-8")) for p in migration_files(directory)]


def migration_files(directory: Path | None = None) -> list[Path]:
    """The migrations in application order (by file name: the Supabase CLI's timestamps)."""
    directory = migrations_dir() if directory is None else directory
    files = sorted((p for p in directory.glob("*.sql") if p.is_file()), key=lambda p: p.name)
    if not files:
        raise ConfigurationError(
            f"no *.sql migrations in {directory}: set {MIGRATIONS_DIR_ENV} to the right directory"
        )
    return files


async def migrate(settings: Settings) -> MigrationReport:
    """Apply pending migrations, then make sure the triggers match the configuration.

    Raises ConfigurationError when the mapping names tables or columns that do not exist, or the
    triggers are still wrong after reinstalling them; DatabaseUnavailableError when PostgreSQL
    cannot be reached or rejects a migration.
    """
    migrations = await asyncio.to_thread(load_migrations)
    logger.info("migrating %s", settings.postgres_display, extra={"action": "migrate_started"})
    conn = await connect(settings, "migrate")
    async with conn:
        try:
            _require_server_version(conn)
            report = await _migrate(conn, settings, migrations)
        except psycopg.Error as exc:
            raise _database_error(settings, exc) from exc
    logger.info(
        "migrations done: %d applied, %d already applied, %d skipped%s",
        len(report.applied),
        len(report.already_applied),
        len(report.skipped),
        ", triggers repaired" if report.repaired else "",
        extra={"action": "migrate_finished"},
    )
    return report


async def check(settings: Settings) -> TriggerCheck:
    """Check the installed function, tables and triggers against the configuration (read-only)."""
    conn = await connect(settings, "check")
    async with conn:
        try:
            result = await check_triggers(conn, settings)
        except psycopg.Error as exc:
            raise _database_error(settings, exc) from exc
    for problem in result.problems:
        logger.warning("%s", problem, extra={"action": "trigger_problem"})
    return result


async def _migrate(
    conn: AsyncConn, settings: Settings, migrations: list[Migration]
) -> MigrationReport:
    async with _locked_transaction(conn):
        await conn.execute(_CREATE_LEDGER)

    applied: list[str] = []
    already: list[str] = []
    skipped: list[str] = []
    for migration in migrations:
        name = migration.name
        async with _locked_transaction(conn):
            # Read under the lock: a concurrent run may have applied it since we started.
            cursor = await conn.execute(
                "SELECT 1 FROM public.vocabsync_migrations WHERE name = %s", (name,)
            )
            if await cursor.fetchone() is not None:
                already.append(name)
                continue
            if name.endswith(BASE_SCHEMA_SUFFIX) and not settings.sources.defaults_unchanged:
                logger.info(
                    "skipping %s: VOCABSYNC_SOURCES maps the six fields to other tables, so the "
                    "default ones are not created",
                    name,
                    extra={"action": "migration_skipped", "migration": name},
                )
                skipped.append(name)
            else:
                await conn.execute(await _migration_sql(conn, settings, migration))
                logger.info(
                    "applied %s", name, extra={"action": "migration_applied", "migration": name}
                )
                applied.append(name)
            await conn.execute(
                "INSERT INTO public.vocabsync_migrations (name) VALUES (%s)", (name,)
            )

    result = await check_triggers(conn, settings)
    repaired = False
    if result.needs_reinstall:
        _require_configuration(result)
        async with _locked_transaction(conn):
            # Again under the lock: a concurrent run may have reinstalled them meanwhile, and
            # DDL on a table would then only wait on its index build.
            result = await check_triggers(conn, settings, check_indexes=False)
            if result.needs_reinstall:
                for problem in result.problems:
                    if problem in result.index_problems:
                        continue  # built below, without touching the triggers
                    logger.warning(
                        "%s: reinstalling the triggers",
                        problem,
                        extra={"action": "trigger_problem"},
                    )
                await conn.execute(_install_sql(settings, result))
                repaired = True
        if repaired:
            logger.info("reinstalled the triggers", extra={"action": "triggers_repaired"})
        result = await check_triggers(conn, settings)
    built: list[str] = []
    if result.missing_indexes and not result.needs_reinstall:
        _require_configuration(result)
        built = await build_indexes(conn, result.missing_indexes)
        for name in built:
            logger.info("built index %s", name, extra={"action": "index_built", "index": name})
        result = await check_triggers(conn, settings)
    if not result.ok:
        _require_configuration(result)
        raise ConfigurationError(
            "the vocabulary triggers are still wrong after reinstalling them: "
            + "; ".join(result.problems)
        )
    return MigrationReport(
        applied=applied,
        already_applied=already,
        repaired=repaired,
        check=result,
        skipped=skipped,
        indexes_built=built,
    )


def trigger_migration_mode(name: str) -> TriggerMode | None:
    """The mode a trigger migration file was rendered in; None for other migrations."""
    rendering = trigger_migration_rendering(name)
    return None if rendering is None else rendering[0]


def trigger_migration_rendering(name: str) -> tuple[TriggerMode, int] | None:
    """The mode and function revision a trigger migration file was rendered in; None for other
    migrations."""
    return next((r for s, r in TRIGGER_MIGRATIONS.items() if name.endswith(s)), None)


def _install_sql(settings: Settings, check: TriggerCheck) -> str:
    """The configured mode's triggers, dropping the other mode's: what migrate always runs.

    ``check`` (just made) tells which tables have BEFORE UPDATE row triggers.
    """
    return render_trigger_sql(
        settings.sources,
        settings.pg_channel,
        mode=settings.trigger_mode,
        drop_other_modes=True,
        before_update_tables=check.before_update_tables,
    )


async def _migration_sql(conn: AsyncConn, settings: Settings, migration: Migration) -> str:
    """The SQL to run: the file's, or for a trigger migration the configuration's rendering."""
    rendering = trigger_migration_rendering(migration.name)
    if rendering is None:
        return migration.text
    file_mode, file_revision = rendering
    # Fail with a clear message before CREATE TRIGGER fails with "relation does not exist".
    result = await check_triggers(conn, settings, check_indexes=False)
    _require_configuration(result)
    defaults = settings.sources.is_default and settings.pg_channel == DEFAULT_CHANNEL
    committed = render_trigger_sql(
        settings.sources,
        DEFAULT_CHANNEL,
        mode=file_mode,
        revision=file_revision,
        with_indexes=file_mode == "delta",
    )
    if defaults and committed != migration.text:
        logger.warning(
            "%s differs from render_trigger_sql(); applying the rendering (regenerate the "
            "file rather than editing it)",
            migration.name,
            extra={"action": "migration_file_differs", "migration": migration.name},
        )
    return _install_sql(settings, result)


def _require_configuration(result: TriggerCheck) -> None:
    """Refuse to touch triggers while the mapping points at tables or columns that are not
    there: CREATE TRIGGER would fail with a less helpful error, and reinstalling cannot help."""
    if result.configuration_problems:
        raise ConfigurationError(
            "cannot install the vocabulary triggers: " + "; ".join(result.configuration_problems)
        )


@asynccontextmanager
async def _locked_transaction(conn: AsyncConn) -> AsyncIterator[None]:
    """A transaction holding the migration advisory lock (released at commit or rollback)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        # Set after taking the advisory lock: waiting for another migrate run is fine.
        await conn.execute(
            "SELECT pg_catalog.set_config('lock_timeout', %s, true)",
            (f"{round(LOCK_TIMEOUT_SECONDS * 1000)}ms",),
        )
        yield


def _require_server_version(conn: AsyncConn) -> None:
    version = conn.info.server_version
    if version < MIN_SERVER_VERSION:
        raise ConfigurationError(
            f"PostgreSQL {version // 10000} is too old: vocabsync needs PostgreSQL 14 or newer "
            "(CREATE OR REPLACE TRIGGER)"
        )


def _database_error(settings: Settings, exc: psycopg.Error) -> DatabaseUnavailableError:
    detail = describe_pg_error(settings, exc)
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        detail += (
            " (a long-running transaction holds a lock on a vocabulary table; retry when it "
            "has finished)"
        )
    return DatabaseUnavailableError(f"migration on {settings.postgres_display} failed: {detail}")
