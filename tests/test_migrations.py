"""Migrations and NOTIFY triggers, against a fresh private PostgreSQL database per test (pg_url).

Mostly the trigger modes whose payload is the table's name: precise (UPDATEs notify only when a
vocabulary column's text changed) and statement (the design document's: every statement
notifies). Tests that depend on the mode say which, by parametrizing the ``trigger_mode``
fixture or passing ``trigger_mode`` to the settings. Delta mode, the default, notifies when
precise mode does, with the touched values as the payload; its payloads are tested in
tests/test_delta_triggers.py. Here it appears as the default (what a plain `migrate` installs)
and where all modes behave alike (installing, checking, switching, failing).

Notifications are counted exactly without sleeping: after the write commits, the writer sends a
sentinel NOTIFY of its own; PostgreSQL delivers notifications in commit order, so everything the
write sent has arrived once the sentinel has (see Listener.drain).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st
from psycopg import sql

from vocabsync.config import Settings
from vocabsync.db.lookup_indexes import lookup_indexes
from vocabsync.db.migrate import (
    MIGRATIONS_DIR_ENV,
    check,
    migrate,
    migration_files,
    trigger_migration_mode,
    trigger_migration_rendering,
)
from vocabsync.db.triggers import (
    CURRENT_REVISION,
    DEFAULT_TRIGGER_MODE,
    DELETE_TRIGGER_NAME,
    DELTA_FUNCTION_SIGNATURE,
    FUNCTION_SIGNATURE,
    INSERT_TRIGGER_NAME,
    TRIGGER_MODES,
    TRIGGER_NAME,
    TRIGGER_NAMES,
    UPDATE_TRIGGER_NAME,
    TriggerMode,
    quote_ident,
    render_rollback_sql,
    render_trigger_sql,
    trigger_specs,
)
from vocabsync.errors import ConfigurationError
from vocabsync.sources import FieldSource, SourceMap

REPO = Path(__file__).resolve().parent.parent
BASE = "20261128000000_vocabulary_base_schema.sql"
TRIGGERS = "20261128000100_vocabulary_sync_triggers.sql"
PRECISE_TRIGGERS = "20261128000200_vocabulary_precise_triggers.sql"
FAILURE_LOG = "20261128000300_vocabulary_trigger_failure_log.sql"
DELTA_TRIGGERS = "20261128000400_vocabulary_delta_triggers.sql"
TRIGGER_FILE = REPO / "vocabsync" / "supabase" / "migrations" / TRIGGERS
PRECISE_TRIGGER_FILE = REPO / "vocabsync" / "supabase" / "migrations" / PRECISE_TRIGGERS
FAILURE_LOG_FILE = REPO / "vocabsync" / "supabase" / "migrations" / FAILURE_LOG
DELTA_TRIGGER_FILE = REPO / "vocabsync" / "supabase" / "migrations" / DELTA_TRIGGERS
ROLLBACK_FILE = (
    REPO
    / "vocabsync"
    / "supabase"
    / "rollback"
    / "20261128000100_vocabulary_sync_triggers_down.sql"
)

CHANNEL = "vocabulary_changed"
LONG_CHANNEL = "c" * 64
"""One byte over PostgreSQL's limit: pg_notify raises 'channel name too long' on every call."""
NOTIFY_TIMEOUT = 10.0
NAME_MODES: tuple[TriggerMode, ...] = ("precise", "statement")
"""The modes whose payload is the table's name."""

DEFAULTS = SourceMap.default()
TABLES = DEFAULTS.tables
COLUMN = {table: DEFAULTS.columns_of(table)[0] for table in TABLES}
CASCADES: dict[str, frozenset[str]] = {
    "Project": frozenset({"Expenses", "CashFlow", "ExpensesColumn", "CashFlowColumn"}),
    "Expenses": frozenset({"ExpensesColumn"}),
    "CashFlow": frozenset({"CashFlowColumn"}),
    "ExpensesColumn": frozenset(),
    "CashFlowColumn": frozenset(),
}
"""Tables a DELETE (ON DELETE CASCADE) or TRUNCATE ... CASCADE on a table reaches; PostgreSQL runs
statements on them, so their statement triggers notify too."""

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
VALUES = st.one_of(st.sampled_from(["alpha", "beta"]), TEXT)
"""Mostly random text; a few repeated values so DELETE ... WHERE col = value often hits rows."""
WRITE_OPS = st.sampled_from(["INSERT", "UPDATE", "DELETE"])
NOT_VOCABULARY = {
    "Project": ("budget", "updated_at", "id", "created_at"),
    "Expenses": ("project_id",),
    "CashFlow": ("project_id",),
    "ExpensesColumn": ("expenses_id",),
    "CashFlowColumn": ("cashflow_id",),
}
"""Columns of the base schema that feed no vocabulary field."""


def make_settings(url: str, **overrides: Any) -> Settings:
    """Settings for ``url``; a developer's .env file must not change what the tests check."""
    return Settings(database_url=url, _env_file=None, **overrides)


def all_migrations() -> list[str]:
    return [path.name for path in migration_files()]


# --- Helpers -------------------------------------------------------------------------------------


class Listener:
    """A second connection LISTENing on a channel."""

    _tokens = itertools.count()

    def __init__(self, url: str, channel: str = CHANNEL) -> None:
        self.channel = channel
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def drain(self, writer: psycopg.Connection[Any]) -> list[str]:
        """Payloads of everything committed before now (``writer`` must be idle, autocommit)."""
        token = f"sentinel-{next(self._tokens)}"
        writer.execute("SELECT pg_notify(%s, %s)", (self.channel, token))
        payloads: list[str] = []
        for notify in self.conn.notifies(timeout=NOTIFY_TIMEOUT):
            if notify.payload == token:
                return payloads
            payloads.append(notify.payload)
        raise AssertionError(f"sentinel not received within {NOTIFY_TIMEOUT}s; got {payloads}")

    def close(self) -> None:
        self.conn.close()


def perform(
    conn: psycopg.Connection[Any],
    table: str,
    op: str,
    value: str = "x",
    rows: int = 1,
    column: str | None = None,
) -> None:
    """One statement of kind ``op`` on ``table`` touching its vocabulary column.

    Values are inlined as literals and no parameters are passed: with parameters psycopg would
    read a '%' inside a table name as a placeholder.
    """
    t = sql.Identifier(table)
    c = sql.Identifier(column or COLUMN[table])
    v = sql.Literal(value)
    if op == "INSERT":
        query = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM generate_series(1, {})")
        conn.execute(query.format(t, c, v, sql.Literal(rows)))
    elif op == "UPDATE":
        conn.execute(sql.SQL("UPDATE {} SET {} = {}").format(t, c, v))
    elif op == "DELETE":
        conn.execute(sql.SQL("DELETE FROM {} WHERE {} = {}").format(t, c, v))
    elif op == "TRUNCATE":
        conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(t))
    else:  # pragma: no cover - test bug
        raise AssertionError(op)


def decoded(payloads: list[str]) -> list[object]:
    """Delta mode's JSON payloads as objects; table names as they are."""
    return [json.loads(p) if p.startswith("{") else p for p in payloads]


def expected_payloads(
    mode: TriggerMode, table: str, column: str, value: str, old: str | None = None
) -> list[object]:
    """What a one-row write of ``value`` (over ``old``) into ``table.column`` sends."""
    if mode != "delta":
        return [table]
    values = [old, value] if old is not None else [value]
    return [{"t": table, "c": {column: values}}]


def assert_one_notification(payloads: list[str], table: str, op: str) -> None:
    """Exactly one notification named ``table``; a cascading statement may add its targets."""
    assert payloads.count(table) == 1, payloads
    assert len(payloads) == len(set(payloads)), payloads
    if op in ("DELETE", "TRUNCATE"):
        assert set(payloads) - {table} <= CASCADES.get(table, frozenset()), payloads
    else:
        assert payloads == [table]


async def execute(url: str, *statements: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in statements:
            await conn.execute(statement)


async def fetch_all(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall()


async def tables_with_trigger(url: str, name: str = TRIGGER_NAME) -> list[str]:
    rows = await fetch_all(
        url,
        "SELECT c.relname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgname = %s AND t.tgfoid = to_regprocedure(%s)",
        (name, FUNCTION_SIGNATURE),
    )
    return sorted(row[0] for row in rows)


async def tables_with_delta_trigger(url: str, name: str) -> list[str]:
    rows = await fetch_all(
        url,
        "SELECT c.relname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE t.tgname = %s AND t.tgfoid = to_regprocedure(%s)",
        (name, DELTA_FUNCTION_SIGNATURE),
    )
    return sorted(row[0] for row in rows)


async def assert_mode_installed(
    url: str, mode: TriggerMode, tables: tuple[str, ...] = TABLES
) -> None:
    """Exactly ``mode``'s triggers on ``tables``: the statement trigger everywhere, the UPDATE
    trigger in precise and delta modes, the INSERT and DELETE triggers in delta mode, calling
    the mode's function."""
    every, none = sorted(tables), []
    if mode == "delta":
        for name in TRIGGER_NAMES:
            assert await tables_with_delta_trigger(url, name) == every, name
            assert await tables_with_trigger(url, name) == none, name
        return
    assert await tables_with_trigger(url) == every
    assert await tables_with_trigger(url, UPDATE_TRIGGER_NAME) == (
        every if mode == "precise" else none
    )
    for name in TRIGGER_NAMES:
        assert await tables_with_delta_trigger(url, name) == none, name
    for name in (INSERT_TRIGGER_NAME, DELETE_TRIGGER_NAME):
        assert await tables_with_trigger(url, name) == none, name


async def catalog_state(url: str) -> list[tuple[Any, ...]]:
    """Row versions of both trigger functions, the triggers, delta mode's lookup indexes and the
    ledger: any rewrite or rebuild changes them."""
    return await fetch_all(
        url,
        "SELECT 'proc', oid::text, xmin::text FROM pg_proc"
        "   WHERE oid IN (to_regprocedure(%s), to_regprocedure(%s))"
        " UNION ALL SELECT 'trigger', oid::text, xmin::text FROM pg_trigger"
        "   WHERE tgname = ANY(%s)"
        " UNION ALL SELECT 'index', relname::text, oid::text || ':' || xmin::text FROM pg_class"
        "   WHERE relname = ANY(%s)"
        " UNION ALL SELECT 'ledger', name, xmin::text || applied_at::text"
        "   FROM public.vocabsync_migrations"
        " ORDER BY 1, 2",
        (FUNCTION_SIGNATURE, DELTA_FUNCTION_SIGNATURE, list(TRIGGER_NAMES), INDEX_NAMES),
    )


# --- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def trigger_mode() -> TriggerMode:
    """The mode ``migrated_url`` installs; tests override it with ``parametrize``. Precise mode:
    the tests below are about its triggers (delta mode's are in tests/test_delta_triggers.py)."""
    return "precise"


@pytest.fixture
def migrated_url(pg_url: str, trigger_mode: TriggerMode) -> str:
    """A fresh database with the default schema and ``trigger_mode``'s triggers."""
    report = asyncio.run(migrate(make_settings(pg_url, trigger_mode=trigger_mode)))
    assert report.check.installed_mode == trigger_mode
    return pg_url


@pytest.fixture
def writer(migrated_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def listener(migrated_url: str) -> Iterator[Listener]:
    listening = Listener(migrated_url)
    try:
        yield listening
    finally:
        listening.close()


@pytest.fixture
def failing_writer(
    migrated_url: str, trigger_mode: TriggerMode
) -> Iterator[tuple[psycopg.Connection[Any], list[str]]]:
    """A writer on a database whose trigger function notifies a channel that is too long.

    Yields the connection and the WARNING messages it has received so far.
    """
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(render_trigger_sql(DEFAULTS, LONG_CHANNEL, mode=trigger_mode))
        warnings: list[str] = []

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            if diag.severity_nonlocalized == "WARNING":
                warnings.append(diag.message_primary or "")

        conn.add_notice_handler(on_notice)
        yield conn, warnings


# --- Rendering (no database) ---------------------------------------------------------------------


def test_committed_trigger_migrations_equal_renderings() -> None:
    """The files `supabase db push` applies are exactly the renderings of the function revision
    each was released with: the first release's in statement mode (never edited: deployments
    have applied it), the precise mode's, which replaces it, and the failure log's, which is
    what `vocabsync migrate` applies today for the defaults."""
    assert trigger_migration_mode(TRIGGERS) == "statement"
    assert trigger_migration_mode(PRECISE_TRIGGERS) == "precise"
    assert trigger_migration_mode(FAILURE_LOG) == "precise"
    assert trigger_migration_rendering(TRIGGERS) == ("statement", 1)
    assert trigger_migration_rendering(PRECISE_TRIGGERS) == ("precise", 1)
    assert trigger_migration_rendering(FAILURE_LOG) == ("precise", 2)
    assert trigger_migration_rendering(DELTA_TRIGGERS) == ("delta", CURRENT_REVISION)
    assert trigger_migration_mode(BASE) is None
    assert all_migrations() == [BASE, TRIGGERS, PRECISE_TRIGGERS, FAILURE_LOG, DELTA_TRIGGERS]
    statement = render_trigger_sql(DEFAULTS, CHANNEL, mode="statement", revision=1)
    precise = render_trigger_sql(DEFAULTS, CHANNEL, mode="precise", revision=1)
    failure_log = render_trigger_sql(DEFAULTS, CHANNEL, mode="precise", revision=2)
    delta = render_trigger_sql(DEFAULTS, CHANNEL, mode="delta", with_indexes=True)
    assert TRIGGER_FILE.read_bytes().decode("utf-8") == statement
    assert PRECISE_TRIGGER_FILE.read_bytes().decode("utf-8") == precise
    assert FAILURE_LOG_FILE.read_bytes().decode("utf-8") == failure_log
    assert DELTA_TRIGGER_FILE.read_bytes().decode("utf-8") == delta
    assert "vocabsync_trigger_failures" not in statement + precise
    assert "vocabsync_database_identity" not in statement + precise + failure_log
    assert delta.count("\nCREATE INDEX IF NOT EXISTS ") == 6
    assert "\nCREATE INDEX " not in render_trigger_sql(DEFAULTS, CHANNEL, mode="delta")
    with pytest.raises(ValueError, match="unknown function revision"):
        render_trigger_sql(DEFAULTS, CHANNEL, revision=4)
    with pytest.raises(ValueError, match="delta mode needs revision 3"):
        render_trigger_sql(DEFAULTS, CHANNEL, mode="delta", revision=2)


def test_committed_rollback_equals_rendering() -> None:
    rollback = ROLLBACK_FILE.read_bytes().decode("utf-8")
    assert rollback == render_rollback_sql(DEFAULTS)
    assert not (REPO / "vocabsync" / "supabase" / "migrations" / ROLLBACK_FILE.name).exists()
    for table in TABLES:  # every mode's triggers
        for name in TRIGGER_NAMES:
            assert f"DROP TRIGGER IF EXISTS {name} ON {quote_ident(table)};" in rollback
    for function in (FUNCTION_SIGNATURE, DELTA_FUNCTION_SIGNATURE):
        assert f"DROP FUNCTION IF EXISTS {function};" in rollback
    assert "DROP INDEX" not in rollback
    assert "DROP FUNCTION IF EXISTS public.vocabsync_database_identity" not in rollback


def test_settings_know_exactly_the_trigger_modes() -> None:
    annotation = Settings.model_fields["trigger_mode"].annotation
    assert get_args(annotation) == TRIGGER_MODES == ("precise", "statement", "delta")
    assert make_settings("postgresql://x@127.0.0.1/db").trigger_mode == DEFAULT_TRIGGER_MODE
    assert DEFAULT_TRIGGER_MODE == "delta"


def test_precise_specs_follow_the_mapping() -> None:
    specs = trigger_specs(DEFAULTS, "precise")
    update = {spec.table: spec for spec in specs if spec.name == UPDATE_TRIGGER_NAME}
    assert update["Project"].when_columns == ("project_name", "location")
    assert update["Expenses"].when_columns == ("file_name",)
    assert all(spec.for_each_row and spec.events == ("UPDATE",) for spec in update.values())
    assert all(spec.update_of == spec.when_columns for spec in update.values())
    guarded = trigger_specs(DEFAULTS, "precise", before_update_tables={"Project"})
    update = {spec.table: spec for spec in guarded if spec.name == UPDATE_TRIGGER_NAME}
    assert update["Project"].update_of == ()  # a BEFORE trigger may change what is not named
    assert update["Project"].when_columns == ("project_name", "location")
    assert update["Expenses"].update_of == ("file_name",)
    statement = [spec for spec in specs if spec.name == TRIGGER_NAME]
    assert [spec.table for spec in statement] == list(TABLES)
    assert all(spec.events == ("INSERT", "DELETE", "TRUNCATE") for spec in statement)
    moved = SourceMap({**DEFAULTS.sources, "project_locations": FieldSource("Expenses", "place")})
    update = {s.table: s for s in trigger_specs(moved, "precise") if s.name == UPDATE_TRIGGER_NAME}
    assert update["Project"].when_columns == ("project_name",)
    assert update["Expenses"].when_columns == ("place", "file_name")  # in field order


def test_switching_modes_drops_the_names_the_mode_does_not_use() -> None:
    for mode, dropped in (
        ("statement", {UPDATE_TRIGGER_NAME, INSERT_TRIGGER_NAME, DELETE_TRIGGER_NAME}),
        ("precise", {INSERT_TRIGGER_NAME, DELETE_TRIGGER_NAME}),
        ("delta", set()),  # it uses every name there is
    ):
        switching = render_trigger_sql(DEFAULTS, CHANNEL, mode=mode, drop_other_modes=True)
        for table in TABLES:
            for name in TRIGGER_NAMES:
                drop = f"DROP TRIGGER IF EXISTS {name} ON {quote_ident(table)};"
                assert (drop in switching) == (name in dropped), (mode, name)


def test_quote_ident_doubles_double_quotes_and_refuses_what_postgres_would_mangle() -> None:
    assert quote_ident("Project") == '"Project"'
    assert quote_ident('We"ird "Table"') == '"We""ird ""Table"""'
    assert quote_ident("é") == '"é"'
    for bad in ("", "a\x00b", "x" * 64, "é" * 32):
        with pytest.raises(ValueError, match="identifier"):
            quote_ident(bad)
    assert quote_ident("x" * 63) == f'"{"x" * 63}"'


def test_render_quotes_tables_and_channel() -> None:
    sources = SourceMap({**DEFAULTS.sources, "projects": FieldSource('Odd "T"', 'na"me')})
    channel = "it's $function$ here"
    for mode in ("precise", DEFAULT_TRIGGER_MODE):
        rendered = render_trigger_sql(sources, channel, mode=mode)
        assert 'ON "Odd ""T"""\n' in rendered
        assert "AS $function1$\n" in rendered  # a dollar tag the body does not contain
        assert 'WHEN ((ROW(OLD."na""me"))::text\n' in rendered
        assert 'IS DISTINCT FROM (ROW(NEW."na""me"))::text)\n' in rendered
    precise = render_trigger_sql(sources, channel, mode="precise")
    assert "pg_notify('it''s $function$ here', TG_TABLE_NAME)" in precise
    delta = render_trigger_sql(sources, channel)  # the default
    assert "pg_notify('it''s $function$ here', payload)" in delta
    assert "pg_notify('it''s $function$ here', TG_ARGV[0])" in delta  # the failure path
    assert "public.vocabsync_notify_delta('Odd \"T\"');\n" in delta  # the table, as a literal
    assert "WHEN 'Odd \"T\"' THEN\n" in delta
    assert """head := E'{"t":"Odd \\\\"T\\\\""';""" in delta  # JSON in an E'' literal
    assert 'r."na""me"::text' in delta
    for mode, per_table in (("statement", 1), ("precise", 2), ("delta", 4)):
        statements = render_trigger_sql(sources, CHANNEL, mode=mode)
        # "Odd ""T""" and the five defaults
        assert statements.count("\nCREATE OR REPLACE TRIGGER ") == 6 * per_table


def test_unknown_trigger_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown trigger mode"):
        render_trigger_sql(DEFAULTS, CHANNEL, mode="changed_columns")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown trigger mode"):
        trigger_specs(DEFAULTS, mode="row")  # type: ignore[arg-type]


async def test_missing_migrations_directory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(tmp_path / "nowhere"))
    settings = make_settings("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(ConfigurationError, match=MIGRATIONS_DIR_ENV):
        await migrate(settings)
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(tmp_path))  # exists, but holds no *.sql
    with pytest.raises(ConfigurationError, match=r"no \*\.sql migrations"):
        await migrate(settings)


# --- migrate / check -----------------------------------------------------------------------------


async def test_migrate_creates_tables_function_and_triggers(pg_url: str) -> None:
    """A plain `migrate` on an empty database: the tables, and the default mode (delta) with
    its lookup indexes, built with CREATE INDEX CONCURRENTLY and checked."""
    settings = make_settings(pg_url)
    report = await migrate(settings)
    assert BASE in report.applied
    assert TRIGGERS in report.applied
    assert report.applied == all_migrations()
    assert report.already_applied == []
    assert report.skipped == []
    assert not report.repaired
    assert report.check.ok
    assert report.check.problems == []
    assert report.check.index_problems == []
    assert report.check.mode == report.check.installed_mode == DEFAULT_TRIGGER_MODE == "delta"
    assert report.indexes_built == INDEX_NAMES
    assert await index_state(pg_url) == dict.fromkeys(INDEX_NAMES, True)

    rows = await fetch_all(
        pg_url,
        "SELECT to_regclass(quote_ident(t)) IS NOT NULL FROM unnest(%s::text[]) AS t",
        (list(TABLES),),
    )
    assert rows == [(True,)] * 5
    await assert_mode_installed(pg_url, "delta")
    result = await check(settings)
    assert result.ok
    assert result.problems == []
    assert result.missing_tables == []
    assert result.installed_mode == "delta"


async def test_second_migrate_applies_nothing_and_changes_nothing(pg_url: str) -> None:
    settings = make_settings(pg_url)
    await migrate(settings)
    before = await catalog_state(pg_url)
    report = await migrate(settings)
    assert report.applied == []
    assert report.already_applied == all_migrations()
    assert BASE in report.already_applied
    assert TRIGGERS in report.already_applied
    assert not report.repaired
    assert report.check.ok
    assert await catalog_state(pg_url) == before


async def test_concurrent_migrations_apply_each_migration_once(pg_url: str) -> None:
    settings = make_settings(pg_url)
    first, second = await asyncio.gather(migrate(settings), migrate(settings))
    assert sorted(first.applied + second.applied) == all_migrations()
    assert sorted(first.already_applied + second.already_applied) == all_migrations()
    rows = await fetch_all(pg_url, "SELECT name FROM public.vocabsync_migrations ORDER BY name")
    assert [row[0] for row in rows] == all_migrations()
    assert first.check.ok
    assert second.check.ok
    await assert_mode_installed(pg_url, "delta")
    assert sorted(first.indexes_built + second.indexes_built) == sorted(INDEX_NAMES)
    assert await index_state(pg_url) == dict.fromkeys(INDEX_NAMES, True)


async def test_migrations_directory_from_environment(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (BASE, TRIGGERS):
        shutil.copy(REPO / "vocabsync" / "supabase" / "migrations" / name, tmp_path / name)
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(tmp_path))
    report = await migrate(make_settings(pg_url))
    assert report.applied == [BASE, TRIGGERS]
    assert report.check.ok  # the first trigger migration, rendered in the configured mode
    await assert_mode_installed(pg_url, "delta")


@pytest.mark.parametrize("mode", [None, "precise"], ids=["default", "precise"])
async def test_first_release_deployment_upgrades(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: TriggerMode | None
) -> None:
    """A database migrated by the first release (statement triggers, two migrations recorded)
    gets the configured mode from the new migrations through `vocabsync migrate`: delta mode
    and its lookup indexes by default (the upgrade a user gets), or precise mode when
    configured. (Running the committed files instead, as `supabase db push` does:
    test_committed_files_in_order_install_delta_mode.)"""
    for name in (BASE, TRIGGERS):
        shutil.copy(REPO / "vocabsync" / "supabase" / "migrations" / name, tmp_path / name)
    monkeypatch.setenv(MIGRATIONS_DIR_ENV, str(tmp_path))
    first = await migrate(make_settings(pg_url, trigger_mode="statement"))
    assert first.applied == [BASE, TRIGGERS]
    await assert_mode_installed(pg_url, "statement")
    assert await index_state(pg_url) == {}

    monkeypatch.delenv(MIGRATIONS_DIR_ENV)
    settings = make_settings(pg_url) if mode is None else make_settings(pg_url, trigger_mode=mode)
    expected = mode or "delta"
    report = await migrate(settings)
    assert report.applied == [PRECISE_TRIGGERS, FAILURE_LOG, DELTA_TRIGGERS]
    assert not report.repaired
    assert (report.check.ok, report.check.installed_mode) == (True, expected)
    await assert_mode_installed(pg_url, expected)
    if expected == "delta":
        assert report.indexes_built == INDEX_NAMES
        assert await index_state(pg_url) == dict.fromkeys(INDEX_NAMES, True)
    else:
        assert (report.indexes_built, await index_state(pg_url)) == ([], {})
    assert (await check(settings)).ok


async def test_committed_files_in_order_install_delta_mode(pg_url: str) -> None:
    """What `supabase db push` does: the last file installs delta mode and its indexes."""
    await execute(
        pg_url,
        *(path.read_text(encoding="utf-8") for path in migration_files()),
    )
    result = await check(make_settings(pg_url, trigger_mode="delta"))
    assert (result.ok, result.installed_mode) == (True, "delta"), result.problems
    assert result.index_problems == []


@pytest.mark.parametrize(
    ("mode", "name"),
    [("precise", TRIGGER_NAME), ("precise", UPDATE_TRIGGER_NAME), ("statement", TRIGGER_NAME)],
)
async def test_dropped_trigger_is_reported_and_migrate_reinstalls_it(
    pg_url: str, mode: TriggerMode, name: str
) -> None:
    settings = make_settings(pg_url, trigger_mode=mode)
    await migrate(settings)
    await execute(pg_url, f'DROP TRIGGER {name} ON "Expenses"')

    result = await check(settings)
    assert not result.ok
    assert result.problems == [f'trigger {name} on "Expenses" is missing']
    assert result.installed_mode is None

    report = await migrate(settings)
    assert report.repaired
    assert report.applied == []
    assert report.check.ok
    await assert_mode_installed(pg_url, mode)


OTHER_FUNCTION = (
    "CREATE FUNCTION public.other_trigger_fn() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RETURN NULL; END $$"
)


CASHFLOW_TRIGGER = 'trigger vocabulary_change_trigger on "CashFlow"'
CASHFLOW_UPDATE_TRIGGER = 'trigger vocabulary_update_trigger on "CashFlow"'


def replace_trigger(name: str, shape: str) -> str:
    """CREATE OR REPLACE TRIGGER ``name`` of ``shape`` ("... ON {t} FOR EACH ...") on "CashFlow"."""
    return (
        f"CREATE OR REPLACE TRIGGER {name} {shape.format(t=quote_ident('CashFlow'))}"
        " EXECUTE FUNCTION public.notify_vocabulary_change()"
    )


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        pytest.param(
            [
                replace_trigger(
                    TRIGGER_NAME, "BEFORE INSERT OR DELETE OR TRUNCATE ON {t} FOR EACH STATEMENT"
                )
            ],
            [f"{CASHFLOW_TRIGGER} fires BEFORE instead of AFTER"],
            id="before",
        ),
        pytest.param(
            [replace_trigger(TRIGGER_NAME, "AFTER INSERT OR DELETE ON {t} FOR EACH ROW")],
            [
                f"{CASHFLOW_TRIGGER} is FOR EACH ROW instead of FOR EACH STATEMENT",
                f"{CASHFLOW_TRIGGER} misses TRUNCATE",
            ],
            id="row",
        ),
        pytest.param(
            [replace_trigger(TRIGGER_NAME, "AFTER INSERT OR DELETE ON {t} FOR EACH STATEMENT")],
            [f"{CASHFLOW_TRIGGER} misses TRUNCATE"],
            id="no-truncate",
        ),
        pytest.param(
            [
                replace_trigger(
                    TRIGGER_NAME,
                    "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} FOR EACH STATEMENT",
                )
            ],
            [f"{CASHFLOW_TRIGGER} also fires on UPDATE"],
            id="statement-update-on-one-table",
        ),
        pytest.param(
            ['ALTER TABLE "CashFlow" DISABLE TRIGGER vocabulary_change_trigger'],
            [f"{CASHFLOW_TRIGGER} is disabled"],
            id="disabled",
        ),
        pytest.param(
            ['ALTER TABLE "CashFlow" ENABLE REPLICA TRIGGER vocabulary_update_trigger'],
            [f"{CASHFLOW_UPDATE_TRIGGER} fires only in replica mode (ENABLE REPLICA TRIGGER)"],
            id="replica",
        ),
        pytest.param(
            [
                OTHER_FUNCTION,
                replace_trigger(
                    TRIGGER_NAME, "AFTER INSERT OR DELETE OR TRUNCATE ON {t} FOR EACH STATEMENT"
                ).replace("public.notify_vocabulary_change()", "public.other_trigger_fn()"),
            ],
            [
                f"{CASHFLOW_TRIGGER} calls another function (other_trigger_fn()) instead of "
                "public.notify_vocabulary_change()"
            ],
            id="other-function",
        ),
        pytest.param(
            [
                replace_trigger(
                    TRIGGER_NAME,
                    "AFTER INSERT OR DELETE OR TRUNCATE ON {t} FOR EACH STATEMENT WHEN (false)",
                )
            ],
            [f"{CASHFLOW_TRIGGER} has a WHEN condition"],
            id="when",
        ),
        pytest.param(
            [replace_trigger(UPDATE_TRIGGER_NAME, "AFTER UPDATE OF file_name ON {t} FOR EACH ROW")],
            [f"{CASHFLOW_UPDATE_TRIGGER} has no WHEN condition, so it fires on every UPDATE"],
            id="update-without-when",
        ),
        pytest.param(
            [replace_trigger(UPDATE_TRIGGER_NAME, "AFTER UPDATE ON {t} FOR EACH STATEMENT")],
            [
                f"{CASHFLOW_UPDATE_TRIGGER} is FOR EACH STATEMENT instead of FOR EACH ROW",
                f"{CASHFLOW_UPDATE_TRIGGER} fires on every UPDATE, not only on UPDATE OF the "
                "vocabulary columns",
                f"{CASHFLOW_UPDATE_TRIGGER} has no WHEN condition, so it fires on every UPDATE",
            ],
            id="update-statement-level",
        ),
        pytest.param(
            [
                replace_trigger(
                    UPDATE_TRIGGER_NAME,
                    "AFTER UPDATE ON {t} FOR EACH ROW"
                    " WHEN ((ROW(OLD.file_name))::text IS DISTINCT FROM"
                    " (ROW(NEW.file_name))::text)",
                )
            ],
            [
                f"{CASHFLOW_UPDATE_TRIGGER} fires on every UPDATE, not only on UPDATE OF the "
                "vocabulary columns"
            ],
            id="update-without-column-list",
        ),
        pytest.param(
            [
                replace_trigger(
                    UPDATE_TRIGGER_NAME,
                    "AFTER UPDATE OF file_name ON {t} FOR EACH ROW"
                    " WHEN (OLD.file_name IS DISTINCT FROM NEW.file_name)",
                )
            ],
            [
                f"{CASHFLOW_UPDATE_TRIGGER} does not compare exactly the vocabulary columns "
                "(file_name): VOCABSYNC_SOURCES changed since it was installed, or it was edited"
            ],
            id="update-compares-with-type-equality",
        ),
        pytest.param(
            [
                replace_trigger(
                    UPDATE_TRIGGER_NAME,
                    "AFTER UPDATE OF file_name ON {t} FOR EACH ROW"
                    " WHEN ((ROW(OLD.project_id))::text"
                    " IS DISTINCT FROM (ROW(NEW.project_id))::text)",
                )
            ],
            [
                f"{CASHFLOW_UPDATE_TRIGGER} does not compare exactly the vocabulary columns "
                "(file_name): VOCABSYNC_SOURCES changed since it was installed, or it was edited"
            ],
            id="update-compares-another-column",
        ),
        pytest.param(
            [
                replace_trigger(
                    UPDATE_TRIGGER_NAME,
                    "AFTER UPDATE OF project_id ON {t} FOR EACH ROW"
                    " WHEN ((ROW(OLD.file_name))::text IS DISTINCT FROM"
                    " (ROW(NEW.file_name))::text)",
                )
            ],
            [
                f"{CASHFLOW_UPDATE_TRIGGER} fires on UPDATE OF other columns (project_id) than "
                "the vocabulary columns (file_name)"
            ],
            id="update-of-other-columns",
        ),
        pytest.param(
            [
                replace_trigger(
                    TRIGGER_NAME,
                    "AFTER INSERT OR UPDATE OF file_name OR DELETE OR TRUNCATE ON {t}"
                    " FOR EACH STATEMENT",
                )
            ],
            [
                f"{CASHFLOW_TRIGGER} also fires on UPDATE",
                f"{CASHFLOW_TRIGGER} fires only on UPDATE OF some columns",
            ],
            id="statement-update-of",
        ),
        pytest.param(
            [
                replace_trigger(
                    UPDATE_TRIGGER_NAME,
                    "AFTER INSERT OR UPDATE ON {t} FOR EACH ROW",
                )
            ],
            [
                f"{CASHFLOW_UPDATE_TRIGGER} also fires on INSERT",
                f"{CASHFLOW_UPDATE_TRIGGER} fires on every UPDATE, not only on UPDATE OF the "
                "vocabulary columns",
                f"{CASHFLOW_UPDATE_TRIGGER} has no WHEN condition, so it fires on every UPDATE",
            ],
            id="update-also-insert",
        ),
    ],
)
async def test_altered_trigger_is_reported_and_repaired(
    pg_url: str, statements: list[str], expected: list[str]
) -> None:
    """Precise mode's triggers, altered by hand (delta mode's: the test below)."""
    settings = make_settings(pg_url, trigger_mode="precise")
    await migrate(settings)
    await execute(pg_url, *statements)

    result = await check(settings)
    assert not result.ok
    assert result.problems == expected

    report = await migrate(settings)
    assert report.repaired
    assert report.check.ok
    assert (await check(settings)).ok


CASHFLOW_INSERT_TRIGGER = 'trigger vocabulary_insert_trigger on "CashFlow"'
CASHFLOW_DELETE_TRIGGER = 'trigger vocabulary_delete_trigger on "CashFlow"'
DELTA_CALL = "public.vocabsync_notify_delta('CashFlow')"


def replace_delta_trigger(name: str, shape: str, call: str = DELTA_CALL) -> str:
    """Like :func:`replace_trigger`, calling delta mode's function (with ``call``)."""
    return (
        f"CREATE OR REPLACE TRIGGER {name} {shape.format(t=quote_ident('CashFlow'))}"
        f" EXECUTE FUNCTION {call}"
    )


@pytest.mark.parametrize(
    ("statements", "expected"),
    [
        pytest.param(
            [replace_delta_trigger(INSERT_TRIGGER_NAME, "AFTER INSERT ON {t} FOR EACH STATEMENT")],
            [
                f"{CASHFLOW_INSERT_TRIGGER} does not have the transition table "
                "REFERENCING NEW TABLE AS vocabsync_new"
            ],
            id="insert-without-transition-table",
        ),
        pytest.param(
            [
                replace_delta_trigger(
                    INSERT_TRIGGER_NAME,
                    "AFTER INSERT ON {t} REFERENCING NEW TABLE AS other_new FOR EACH STATEMENT",
                )
            ],
            [
                f"{CASHFLOW_INSERT_TRIGGER} does not have the transition table "
                "REFERENCING NEW TABLE AS vocabsync_new"
            ],
            id="insert-other-transition-table",
        ),
        pytest.param(
            [
                replace_delta_trigger(
                    INSERT_TRIGGER_NAME,
                    "AFTER INSERT ON {t} REFERENCING NEW TABLE AS vocabsync_new FOR EACH ROW",
                )
            ],
            [f"{CASHFLOW_INSERT_TRIGGER} is FOR EACH ROW instead of FOR EACH STATEMENT"],
            id="insert-row-level",
        ),
        pytest.param(
            [
                replace_delta_trigger(
                    DELETE_TRIGGER_NAME,
                    "AFTER DELETE ON {t} REFERENCING OLD TABLE AS vocabsync_old FOR EACH STATEMENT",
                    call="public.vocabsync_notify_delta('Expenses')",
                )
            ],
            [
                f"{CASHFLOW_DELETE_TRIGGER} passes other arguments to "
                f"{DELTA_FUNCTION_SIGNATURE} than 'CashFlow'"
            ],
            id="delete-names-another-table",
        ),
        pytest.param(
            [
                replace_delta_trigger(
                    TRIGGER_NAME, "AFTER INSERT OR TRUNCATE ON {t} FOR EACH STATEMENT"
                )
            ],
            [f"{CASHFLOW_TRIGGER} also fires on INSERT"],
            id="truncate-also-insert",
        ),
        pytest.param(
            [
                OTHER_FUNCTION,
                replace_delta_trigger(
                    TRIGGER_NAME,
                    "AFTER TRUNCATE ON {t} FOR EACH STATEMENT",
                    call="public.other_trigger_fn()",
                ),
            ],
            [
                f"{CASHFLOW_TRIGGER} calls another function (other_trigger_fn()) "
                f"instead of {DELTA_FUNCTION_SIGNATURE}"
            ],
            id="truncate-calls-another-function",
        ),
        pytest.param(
            [replace_delta_trigger(UPDATE_TRIGGER_NAME, "AFTER UPDATE ON {t} FOR EACH STATEMENT")],
            [
                f"{CASHFLOW_UPDATE_TRIGGER} is FOR EACH STATEMENT instead of FOR EACH ROW",
                f"{CASHFLOW_UPDATE_TRIGGER} fires on every UPDATE, not only on UPDATE OF the "
                "vocabulary columns",
                f"{CASHFLOW_UPDATE_TRIGGER} has no WHEN condition, so it fires on every UPDATE",
            ],
            id="update-statement-level",
        ),
        pytest.param(
            [
                replace_delta_trigger(
                    UPDATE_TRIGGER_NAME, "AFTER UPDATE OF file_name ON {t} FOR EACH ROW"
                )
            ],
            [f"{CASHFLOW_UPDATE_TRIGGER} has no WHEN condition, so it fires on every UPDATE"],
            id="update-without-when",
        ),
        pytest.param(
            ['ALTER TABLE "CashFlow" DISABLE TRIGGER vocabulary_insert_trigger'],
            [f"{CASHFLOW_INSERT_TRIGGER} is disabled"],
            id="insert-disabled",
        ),
    ],
)
async def test_altered_delta_trigger_is_reported_and_repaired(
    pg_url: str, statements: list[str], expected: list[str]
) -> None:
    """Delta mode's triggers (the default), altered by hand: the check names what differs, and
    after `migrate` the table's writes are described again."""
    settings = make_settings(pg_url)
    await migrate(settings)
    await execute(pg_url, *statements)

    result = await check(settings)
    assert not result.ok
    assert result.problems == expected

    report = await migrate(settings)
    assert report.repaired
    assert report.check.ok
    assert (await check(settings)).ok
    with psycopg.connect(pg_url, autocommit=True) as conn:
        listening = Listener(pg_url)
        try:
            for op, value, old in (
                ("INSERT", "a", None),
                ("UPDATE", "b", "a"),
                ("DELETE", "b", None),
            ):
                perform(conn, "CashFlow", op, value)
                assert decoded(listening.drain(conn)) == expected_payloads(
                    "delta", "CashFlow", "file_name", value, old
                ), op
            perform(conn, "CashFlow", "TRUNCATE")
            assert decoded(listening.drain(conn)) == [
                {"t": "CashFlow", "r": ["file_name"]},
                {"t": "CashFlowColumn", "r": ["column_name"]},  # TRUNCATE ... CASCADE
            ]
        finally:
            listening.close()


@pytest.mark.parametrize("mode", TRIGGER_MODES)
async def test_function_for_another_channel_is_reported_and_repaired(
    pg_url: str, mode: TriggerMode
) -> None:
    await migrate(make_settings(pg_url, trigger_mode=mode))
    other = make_settings(pg_url, pg_channel="vocab_other", trigger_mode=mode)
    result = await check(other)
    assert not result.ok
    assert len(result.problems) == 1
    function, expected_for = (
        (DELTA_FUNCTION_SIGNATURE, "the channel 'vocab_other' and VOCABSYNC_SOURCES")
        if mode == "delta"
        else (FUNCTION_SIGNATURE, "channel 'vocab_other'")
    )
    assert result.problems[0].startswith(
        f"function {function} differs from the expected definition for {expected_for} ("
    )

    report = await migrate(other)
    assert report.repaired
    assert report.check.ok
    with psycopg.connect(pg_url, autocommit=True) as conn:
        listening = Listener(pg_url, "vocab_other")
        try:
            perform(conn, "Project", "INSERT", "heard")
            assert decoded(listening.drain(conn)) == expected_payloads(
                mode, "Project", "project_name", "heard"
            )
        finally:
            listening.close()
    # now the default channel is the odd one
    assert not (await check(make_settings(pg_url, trigger_mode=mode))).ok


@pytest.mark.parametrize("mode", TRIGGER_MODES)
async def test_rollback_removes_everything_and_migrate_reinstalls(
    pg_url: str, mode: TriggerMode
) -> None:
    settings = make_settings(pg_url, trigger_mode=mode)
    await migrate(settings)
    await execute(pg_url, ROLLBACK_FILE.read_text(encoding="utf-8"))

    for name in TRIGGER_NAMES:
        assert await tables_with_trigger(pg_url, name) == []
    for function in (FUNCTION_SIGNATURE, DELTA_FUNCTION_SIGNATURE):
        assert await fetch_all(pg_url, "SELECT to_regprocedure(%s)::text", (function,)) == [(None,)]
    result = await check(settings)
    assert not result.ok
    assert result.installed_mode is None
    function = DELTA_FUNCTION_SIGNATURE if mode == "delta" else FUNCTION_SIGNATURE
    assert result.problems == [f"function {function} is missing"] + [
        f"trigger {spec.name} on {quote_ident(spec.table)} is missing"
        for spec in trigger_specs(DEFAULTS, mode)
    ]

    report = await migrate(settings)
    assert report.repaired
    assert report.check.ok
    await assert_mode_installed(pg_url, mode)


async def test_check_says_which_mode_is_installed_and_migrate_switches(pg_url: str) -> None:
    precise = make_settings(pg_url, trigger_mode="precise")
    statement = make_settings(pg_url, trigger_mode="statement")
    await migrate(precise)
    result = await check(statement)
    assert not result.ok
    assert (result.mode, result.installed_mode) == ("statement", "precise")
    assert result.problems == [
        "the precise-mode triggers are installed, but the configured mode is statement "
        "(VOCABSYNC_TRIGGER_MODE or `vocabsync migrate --mode`): `vocabsync migrate` switches them"
    ]

    with psycopg.connect(pg_url, autocommit=True) as conn:
        listening = Listener(pg_url)
        try:
            conn.execute("INSERT INTO \"Project\" (project_name) VALUES ('Alpha')")
            listening.drain(conn)
            conn.execute('UPDATE "Project" SET budget = 1')
            assert listening.drain(conn) == []

            report = await migrate(statement)  # switch to statement mode
            assert report.repaired
            assert report.applied == []
            assert (report.check.ok, report.check.installed_mode) == (True, "statement")
            await assert_mode_installed(pg_url, "statement")
            conn.execute('UPDATE "Project" SET budget = 2')
            assert listening.drain(conn) == ["Project"]
            assert (await check(precise)).installed_mode == "statement"
            assert not (await check(precise)).ok

            report = await migrate(precise)  # and back
            assert report.repaired
            assert (report.check.ok, report.check.installed_mode) == (True, "precise")
            await assert_mode_installed(pg_url, "precise")
            conn.execute('UPDATE "Project" SET budget = 3')
            assert listening.drain(conn) == []
        finally:
            listening.close()

    before = await catalog_state(pg_url)
    again = await migrate(precise)
    assert not again.repaired
    assert await catalog_state(pg_url) == before


async def test_left_over_update_trigger_is_reported_and_dropped(pg_url: str) -> None:
    statement = make_settings(pg_url, trigger_mode="statement")
    await migrate(statement)
    await execute(
        pg_url,
        'CREATE TRIGGER vocabulary_update_trigger AFTER UPDATE OF file_name ON "Expenses"'
        " FOR EACH ROW EXECUTE FUNCTION public.notify_vocabulary_change()",
    )

    result = await check(statement)
    assert not result.ok
    assert result.installed_mode is None
    assert result.problems == [
        'trigger vocabulary_update_trigger on "Expenses" is not part of statement mode '
        "(left over from precise or delta mode)"
    ]
    report = await migrate(statement)
    assert report.repaired
    assert report.check.ok
    await assert_mode_installed(pg_url, "statement")


@pytest.mark.parametrize("mode", ["precise", "delta"])
async def test_column_added_to_the_mapping_is_covered_after_migrate(
    pg_url: str, mode: TriggerMode
) -> None:
    """Project's locations first come from elsewhere, then from "Project".location: until
    `migrate` runs, the check says the UPDATE trigger compares too few columns (and, in delta
    mode, that the function reads other columns)."""
    before = make_settings(
        pg_url, sources={"project_locations": "Expenses.file_name"}, trigger_mode=mode
    )
    after = make_settings(pg_url, trigger_mode=mode)
    await migrate(after)  # the default tables (a custom mapping does not create them)
    assert (await migrate(before)).repaired
    with psycopg.connect(pg_url, autocommit=True) as conn:
        listening = Listener(pg_url)
        try:
            conn.execute("INSERT INTO \"Project\" (project_name, location) VALUES ('A', 'X')")
            listening.drain(conn)
            conn.execute("UPDATE \"Project\" SET location = 'Y'")
            assert listening.drain(conn) == []  # not a vocabulary column yet

            result = await check(after)
            assert not result.ok
            function_problems = (
                [
                    f"function {DELTA_FUNCTION_SIGNATURE} differs from the expected definition "
                    "for the channel 'vocabulary_changed' and VOCABSYNC_SOURCES (edited by hand, "
                    "or the channel or the mapping changed since it was installed)"
                ]
                if mode == "delta"
                else []
            )
            assert result.problems == [
                *function_problems,
                'trigger vocabulary_update_trigger on "Project" fires on UPDATE OF other '
                "columns (project_name) than the vocabulary columns (project_name, location)",
                'trigger vocabulary_update_trigger on "Project" does not compare exactly the '
                "vocabulary columns (project_name, location): VOCABSYNC_SOURCES changed since "
                "it was installed, or it was edited",
            ]
            report = await migrate(after)
            assert report.repaired
            assert report.check.ok

            conn.execute("UPDATE \"Project\" SET location = 'Z'")
            assert decoded(listening.drain(conn)) == expected_payloads(
                mode, "Project", "location", "Z", old="Y"
            )
            conn.execute("UPDATE \"Project\" SET project_name = 'B'")
            assert decoded(listening.drain(conn)) == expected_payloads(
                mode, "Project", "project_name", "B", old="A"
            )
        finally:
            listening.close()


async def test_rollback_works_where_tables_are_missing(pg_url: str) -> None:
    await execute(pg_url, render_rollback_sql(DEFAULTS))
    assert await fetch_all(pg_url, "SELECT to_regprocedure(%s)::text", (FUNCTION_SIGNATURE,)) == [
        (None,)
    ]


CUSTOM_SOURCES = {
    "projects": "Proj.title",
    "project_locations": "Proj.place",
    "expense_files": "Files.expense",
    "cashflow_files": "Files.cashflow",
    "expense_categories": "Categories.expense",
    "cashflow_categories": "Categories.cashflow",
}


@pytest.mark.parametrize("mode", [None, "precise"], ids=["default", "precise"])
async def test_custom_mapping_gets_its_triggers_and_no_default_tables(
    pg_url: str, mode: TriggerMode | None
) -> None:
    await execute(
        pg_url,
        'CREATE TABLE "Proj" (id serial PRIMARY KEY, title text, place text)',
        'CREATE TABLE "Files" (expense text, cashflow text)',
        'CREATE TABLE "Categories" (expense text, cashflow text)',
    )
    overrides = {} if mode is None else {"trigger_mode": mode}
    settings = make_settings(pg_url, sources=CUSTOM_SOURCES, **overrides)
    installed: TriggerMode = mode or "delta"
    report = await migrate(settings)
    assert report.skipped == [BASE]
    assert BASE not in report.applied
    assert TRIGGERS in report.applied
    assert report.check.ok
    assert report.check.installed_mode == installed
    await assert_mode_installed(pg_url, installed, ("Categories", "Files", "Proj"))
    assert await fetch_all(pg_url, "SELECT to_regclass('\"Project\"')::text") == [(None,)]
    custom_indexes = [index.name for index in lookup_indexes(settings.sources)]
    assert len(custom_indexes) == 6
    assert report.indexes_built == (custom_indexes if installed == "delta" else [])

    with psycopg.connect(pg_url, autocommit=True) as conn:
        listening = Listener(pg_url)
        try:
            perform(conn, "Proj", "INSERT", "Hanapin", rows=3, column="title")
            assert decoded(listening.drain(conn)) == expected_payloads(
                installed, "Proj", "title", "Hanapin"
            )
            perform(conn, "Categories", "INSERT", "Fuel", column="cashflow")
            assert decoded(listening.drain(conn)) == expected_payloads(
                installed, "Categories", "cashflow", "Fuel"
            )
            perform(conn, "Categories", "UPDATE", "Fuel", column="expense")  # NULL -> Fuel
            assert decoded(listening.drain(conn)) == expected_payloads(
                installed, "Categories", "expense", "Fuel"
            )
            perform(conn, "Categories", "UPDATE", "Fuel", column="expense")  # same value
            assert listening.drain(conn) == []
            perform(conn, "Proj", "UPDATE", "Somewhere", column="place")  # three rows
            assert decoded(listening.drain(conn)) == expected_payloads(
                installed, "Proj", "place", "Somewhere"
            )
        finally:
            listening.close()

    again = await migrate(settings)
    assert again.already_applied == all_migrations()
    assert not again.repaired
    assert again.indexes_built == []


async def test_missing_tables_and_columns_are_configuration_errors(pg_url: str) -> None:
    await execute(pg_url, 'CREATE TABLE "Proj" (id serial PRIMARY KEY, title text, place text)')
    partial = make_settings(
        pg_url, sources={"projects": "Proj.title", "project_locations": "Proj.place"}
    )
    with pytest.raises(ConfigurationError, match="VOCABSYNC_SOURCES") as caught:
        await migrate(partial)
    assert '"Expenses"' in str(caught.value)

    result = await check(partial)
    assert not result.ok
    assert result.missing_tables == ["Expenses", "CashFlow", "ExpensesColumn", "CashFlowColumn"]
    assert result.configuration_problems[0] == (
        'table "Expenses" (vocabulary fields: expense_files) does not exist: '
        "fix VOCABSYNC_SOURCES or create the table"
    )
    assert set(result.configuration_problems) <= set(result.problems)

    typo = make_settings(pg_url, sources={**CUSTOM_SOURCES, "projects": "Proj.titel"})
    await execute(
        pg_url,
        'CREATE TABLE "Files" (expense text, cashflow text)',
        'CREATE TABLE "Categories" (expense text, cashflow text)',
    )
    with pytest.raises(ConfigurationError, match=r'column "Proj"\."titel"'):
        await migrate(typo)

    await execute(pg_url, 'CREATE VIEW "ProjView" AS SELECT title FROM "Proj"')
    view = make_settings(pg_url, sources={**CUSTOM_SOURCES, "projects": "ProjView.title"})
    result = await check(view)
    assert result.configuration_problems == [
        '"ProjView" is a view, not a table, so its changes cannot be followed: point '
        "VOCABSYNC_SOURCES at the table it reads from"
    ]
    with pytest.raises(ConfigurationError, match="is a view"):
        await migrate(view)


@pytest.mark.parametrize("mode", TRIGGER_MODES)
async def test_identifiers_and_channel_with_quotes_are_quoted(
    pg_url: str, mode: TriggerMode
) -> None:
    """Odd names everywhere, and columns the server quotes differently (a quote, a reserved
    word, mixed case, none): the check still recognises the installed WHEN condition."""
    table = 'Odd "Table" é'
    channel = 'it\'s a "chan" $function$'
    column = 'ti"tle'
    await execute(
        pg_url,
        f"CREATE TABLE {quote_ident(table)} ({quote_ident(column)} text, other text,"
        ' "select" text, "MiXed" text)',
    )
    sources = {name: f"{table}.other" for name in CUSTOM_SOURCES}
    sources["projects"] = f"{table}.{column}"
    sources["project_locations"] = f"{table}.select"
    sources["expense_files"] = f"{table}.MiXed"
    settings = make_settings(pg_url, sources=sources, pg_channel=channel, trigger_mode=mode)
    report = await migrate(settings)
    assert report.check.ok
    assert report.check.installed_mode == mode
    await assert_mode_installed(pg_url, mode, (table,))
    assert not (await migrate(settings)).repaired

    with psycopg.connect(pg_url, autocommit=True) as conn:
        listening = Listener(pg_url, channel)
        try:
            perform(conn, table, "INSERT", "v", column=column)
            assert decoded(listening.drain(conn)) == expected_payloads(mode, table, column, "v")
            for changed in ("select", "MiXed", "other", column):
                perform(conn, table, "UPDATE", changed, column=changed)
                old = "v" if changed == column else None
                assert decoded(listening.drain(conn)) == expected_payloads(
                    mode, table, changed, changed, old
                ), changed
        finally:
            listening.close()


# --- Notifications -------------------------------------------------------------------------------


def set_column(conn: psycopg.Connection[Any], table: str, column: str, value: object) -> None:
    """``UPDATE table SET column = value`` on every row (``value`` inlined; None is NULL)."""
    query = sql.SQL("UPDATE {} SET {} = {}")
    conn.execute(query.format(sql.Identifier(table), sql.Identifier(column), sql.Literal(value)))


def rows_differing(conn: psycopg.Connection[Any], table: str, column: str, value: object) -> int:
    """How many rows an ``UPDATE ... SET column = value`` would change the text of."""
    query = sql.SQL("SELECT count(*) FROM {} WHERE {}::text IS DISTINCT FROM {}::text").format(
        sql.Identifier(table), sql.Identifier(column), sql.Literal(value)
    )
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("trigger_mode", ["statement"])
@pytest.mark.parametrize("table", TABLES)
def test_statement_mode_every_statement_notifies_once(
    table: str, writer: psycopg.Connection[Any], listener: Listener
) -> None:
    """The design document's mode: every statement notifies, UPDATEs of anything included."""
    perform(writer, table, "INSERT", "a", rows=3)  # one multi-row statement: one notification
    assert listener.drain(writer) == [table]
    perform(writer, table, "UPDATE", "b")  # updates all three rows
    assert listener.drain(writer) == [table]
    perform(writer, table, "UPDATE", "b")  # the same value again
    assert listener.drain(writer) == [table]
    set_column(writer, table, NOT_VOCABULARY[table][0], None)
    assert listener.drain(writer) == [table]
    perform(writer, table, "DELETE", "b")
    assert_one_notification(listener.drain(writer), table, "DELETE")
    perform(writer, table, "INSERT", "c", rows=2)
    assert listener.drain(writer) == [table]
    perform(writer, table, "TRUNCATE")
    assert sorted(listener.drain(writer)) == sorted({table} | CASCADES[table])

    with pytest.raises(RuntimeError), writer.transaction():  # noqa: PT012
        perform(writer, table, "INSERT", "rolled back")
        raise RuntimeError
    assert listener.drain(writer) == []


@pytest.mark.parametrize("table", TABLES)
def test_precise_mode_updates_notify_only_when_the_vocabulary_can_change(
    table: str, writer: psycopg.Connection[Any], listener: Listener
) -> None:
    perform(writer, table, "INSERT", "a", rows=3)  # one multi-row statement: one notification
    assert listener.drain(writer) == [table]
    perform(writer, table, "UPDATE", "b")  # renames three rows: still one notification
    assert listener.drain(writer) == [table]
    perform(writer, table, "UPDATE", "b")  # the same value again
    assert listener.drain(writer) == []
    writer.execute(
        sql.SQL("UPDATE {t} SET {c} = {c}").format(
            t=sql.Identifier(table), c=sql.Identifier(COLUMN[table])
        )
    )
    assert listener.drain(writer) == []
    for other in NOT_VOCABULARY[table]:
        writer.execute(
            sql.SQL("UPDATE {t} SET {c} = {c}").format(
                t=sql.Identifier(table), c=sql.Identifier(other)
            )
        )
    set_column(writer, table, NOT_VOCABULARY[table][0], None)
    assert listener.drain(writer) == []
    perform(writer, table, "DELETE", "b")
    assert_one_notification(listener.drain(writer), table, "DELETE")
    perform(writer, table, "INSERT", "c", rows=2)
    assert listener.drain(writer) == [table]
    perform(writer, table, "TRUNCATE")
    assert sorted(listener.drain(writer)) == sorted({table} | CASCADES[table])

    with pytest.raises(RuntimeError), writer.transaction():  # noqa: PT012
        perform(writer, table, "INSERT", "rolled back")
        perform(writer, table, "UPDATE", "rolled back too")
        raise RuntimeError
    assert listener.drain(writer) == []


def test_precise_mode_non_vocabulary_updates_send_nothing(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    writer.execute(
        'INSERT INTO "Project" (project_name, location, budget)'
        " VALUES ('P', 'L', 1), ('Q', NULL, 2)"
    )
    listener.drain(writer)
    writer.execute('UPDATE "Project" SET budget = budget + 1')
    writer.execute("UPDATE \"Project\" SET updated_at = now() WHERE project_name = 'P'")
    writer.execute(
        'UPDATE "Project" SET budget = 0, project_name = project_name, location = location'
    )
    writer.execute('UPDATE "Project" SET budget = NULL WHERE false')  # no row at all
    assert listener.drain(writer) == []
    writer.execute("UPDATE \"Project\" SET budget = 5, location = 'M' WHERE project_name = 'Q'")
    assert listener.drain(writer) == ["Project"]  # one vocabulary column among others


@pytest.mark.parametrize(
    ("before", "after", "notifies"),
    [
        (None, "value", True),
        ("value", None, True),
        (None, None, False),
        ("value", "value", False),
        ("value", "Value", True),
        ("value", "value ", True),
        ("", None, True),  # neither is in the vocabulary, but the text differs: harmless extra
        ("", "", False),
    ],
)
def test_precise_mode_null_safe_comparison(
    writer: psycopg.Connection[Any],
    listener: Listener,
    before: str | None,
    after: str | None,
    notifies: bool,
) -> None:
    perform(writer, "ExpensesColumn", "INSERT", "other")
    set_column(writer, "ExpensesColumn", "column_name", before)
    listener.drain(writer)
    set_column(writer, "ExpensesColumn", "column_name", after)
    assert listener.drain(writer) == (["ExpensesColumn"] if notifies else [])


def test_precise_mode_many_renamed_rows_send_one_notification(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    """The row trigger fires per changed row; PostgreSQL folds identical notifications of one
    transaction into one."""
    perform(writer, "Project", "INSERT", "old name", rows=2000)
    listener.drain(writer)
    perform(writer, "Project", "UPDATE", "new name")
    assert listener.drain(writer) == ["Project"]
    with writer.transaction():
        perform(writer, "Project", "UPDATE", "newer name")
        perform(writer, "ExpensesColumn", "INSERT", "x")
        perform(writer, "Project", "UPDATE", "newest name")
    assert sorted(listener.drain(writer)) == ["ExpensesColumn", "Project"]


@pytest.mark.parametrize("trigger_mode", ["precise", "delta"])
async def test_update_trigger_follows_changes_made_by_before_triggers(
    migrated_url: str,
    writer: psycopg.Connection[Any],
    listener: Listener,
    trigger_mode: TriggerMode,
) -> None:
    """A BEFORE trigger can change a vocabulary column that the UPDATE does not name, which an
    ``UPDATE OF <columns>`` trigger never sees: on such a table `migrate` installs the UPDATE
    trigger without the column list, and `migrate --check` notices a BEFORE trigger added since.
    Precise and delta modes share that UPDATE trigger."""
    writer.execute(
        "CREATE FUNCTION public.derive_location() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN NEW.location := 'Zone ' || NEW.budget; RETURN NEW; END $$"
    )
    writer.execute(
        'CREATE TRIGGER derive_location BEFORE UPDATE ON "Project"'
        " FOR EACH ROW EXECUTE FUNCTION public.derive_location()"
    )
    writer.execute("""INSERT INTO "Project" (project_name, budget) VALUES ('P', 1)""")
    listener.drain(writer)
    writer.execute('UPDATE "Project" SET budget = 2')
    assert listener.drain(writer) == []  # missed: the change the issue is about

    settings = make_settings(migrated_url, trigger_mode=trigger_mode)
    result = await check(settings)
    assert result.before_update_tables == {"Project"}
    assert result.problems == [
        'trigger vocabulary_update_trigger on "Project" fires only on UPDATE OF some columns, '
        'but "Project" has BEFORE UPDATE row triggers, which may change a vocabulary column '
        "that the UPDATE does not name"
    ]
    assert (await migrate(settings)).repaired
    writer.execute('UPDATE "Project" SET budget = 3')
    assert decoded(listener.drain(writer)) == expected_payloads(
        trigger_mode, "Project", "location", "Zone 3", old="Zone 2"
    )
    writer.execute('UPDATE "Project" SET budget = 3')  # same location: nothing to tell
    assert listener.drain(writer) == []

    writer.execute('DROP TRIGGER derive_location ON "Project"')
    result = await check(settings)
    assert result.problems == [
        'trigger vocabulary_update_trigger on "Project" fires on every UPDATE, not only on '
        "UPDATE OF the vocabulary columns"
    ]
    assert (await migrate(settings)).repaired
    assert (await check(settings)).ok


@pytest.mark.parametrize("mode", ["precise", "delta"])
async def test_update_trigger_compares_text_not_the_type_equality(
    pg_url: str, mode: TriggerMode
) -> None:
    """numeric says 1.0 = 1.00, but the vocabulary holds the text, which changed."""
    await execute(
        pg_url,
        'CREATE TABLE "Codes" (code numeric)',
        'CREATE TABLE "Names" (name varchar(20))',
        'INSERT INTO "Codes" VALUES (1.0)',
    )
    sources = {name: "Names.name" for name in CUSTOM_SOURCES}
    sources["expense_categories"] = "Codes.code"
    settings = make_settings(pg_url, sources=sources, trigger_mode=mode)
    assert (await migrate(settings)).check.ok
    with psycopg.connect(pg_url, autocommit=True) as conn:
        listening = Listener(pg_url)
        try:
            conn.execute('UPDATE "Codes" SET code = 1.00')
            assert decoded(listening.drain(conn)) == expected_payloads(
                mode, "Codes", "code", "1.00", old="1.0"
            )
            conn.execute('UPDATE "Codes" SET code = 1.00')
            assert listening.drain(conn) == []
        finally:
            listening.close()


@pytest.mark.parametrize("trigger_mode", ["statement"])
def test_statement_mode_update_of_zero_rows_still_notifies(
    writer: psycopg.Connection[Any], listener: Listener
) -> None:
    """Statement triggers fire per statement, whether or not a row matched."""
    perform(writer, "ExpensesColumn", "UPDATE", "nothing to update")
    assert listener.drain(writer) == ["ExpensesColumn"]


@pytest.mark.parametrize("trigger_mode", TRIGGER_MODES)
def test_failing_notify_never_fails_the_write(
    failing_writer: tuple[psycopg.Connection[Any], list[str]],
    migrated_url: str,
    trigger_mode: TriggerMode,
) -> None:
    conn, warnings = failing_writer
    listening = Listener(migrated_url)
    steps = [
        ("INSERT", "kept", ["kept", "kept"], True),
        ("UPDATE", "changed", ["changed", "changed"], True),
        ("UPDATE", "changed", ["changed", "changed"], trigger_mode == "statement"),
        ("DELETE", "changed", [], True),
        ("INSERT", "again", ["again"], True),
        ("TRUNCATE", "", [], True),
    ]
    try:
        for op, value, expected, notified in steps:
            warnings.clear()
            perform(conn, "Project", op, value, rows=len(expected) or 1)
            with psycopg.connect(migrated_url) as other:  # another session sees the commit
                rows = other.execute('SELECT project_name FROM "Project"').fetchall()
            assert [row[0] for row in rows] == expected, op
            failed = [
                w
                for w in warnings
                if w.startswith("vocabsync: failed to notify vocabulary change on Project:")
                and "channel name too long" in w
            ]
            assert bool(failed) == notified, (op, warnings)
            assert listening.drain(conn) == []  # nothing reached the real channel
    finally:
        listening.close()


# --- Properties ----------------------------------------------------------------------------------


@hyp_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=st.sampled_from(TABLES), op=WRITE_OPS, value=VALUES, rows=st.integers(1, 4))
@pytest.mark.parametrize("trigger_mode", NAME_MODES)
def test_property_triggers_publish_for_all_operations(
    writer: psycopg.Connection[Any],
    listener: Listener,
    trigger_mode: TriggerMode,
    table: str,
    op: str,
    value: str,
    rows: int,
) -> None:
    """Feature: real-time-vocabulary-sync, Property 1: Database triggers publish notifications for all operations"""  # noqa: E501
    # Precise mode: an UPDATE that changes no row's vocabulary text cannot change the
    # vocabulary, and sends nothing; every other operation notifies.
    changes = op != "UPDATE" or rows_differing(writer, table, COLUMN[table], value) > 0
    perform(writer, table, op, value, rows=rows)
    payloads = listener.drain(writer)
    if trigger_mode == "statement" or changes:
        assert_one_notification(payloads, table, op)
    else:
        assert payloads == []


TABLE_NAMES = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00."), min_size=1, max_size=15
).filter(lambda name: name not in (*TABLES, "vocabsync_migrations"))
"""Arbitrary table names (no '.': the mapping splits "Table.column" at the first one)."""


@hyp_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.one_of(st.sampled_from(TABLES), TABLE_NAMES),
    op=WRITE_OPS,
    value=VALUES,
)
@pytest.mark.parametrize("trigger_mode", NAME_MODES)
def test_property_trigger_payload_is_the_table_name(
    writer: psycopg.Connection[Any],
    listener: Listener,
    trigger_mode: TriggerMode,
    table: str,
    op: str,
    value: str,
) -> None:
    """Feature: real-time-vocabulary-sync, Property 8: Trigger function includes table name in payload"""  # noqa: E501
    column = COLUMN.get(table)
    if column is None:  # an arbitrary name: create it and map a vocabulary field to it
        column = "term"
        writer.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (term text)").format(sql.Identifier(table))
        )
        # Every field from this table, so the rendering touches no other table's triggers.
        sources = SourceMap({name: FieldSource(table, column) for name in DEFAULTS.sources})
        writer.execute(render_trigger_sql(sources, CHANNEL, mode=trigger_mode))
    if op == "UPDATE":  # a row whose value the UPDATE changes, so both modes notify
        perform(writer, table, "INSERT", value + "~", column=column)
    listener.drain(writer)
    perform(writer, table, op, value, column=column)
    payloads = listener.drain(writer)
    assert_one_notification(payloads, table, op)


@hyp_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.sampled_from(TABLES),
    op=st.sampled_from(["INSERT", "UPDATE", "DELETE", "TRUNCATE"]),
    value=VALUES,
)
@pytest.mark.parametrize("trigger_mode", NAME_MODES)
def test_property_failing_trigger_never_fails_the_write(
    failing_writer: tuple[psycopg.Connection[Any], list[str]],
    trigger_mode: TriggerMode,
    table: str,
    op: str,
    value: str,
) -> None:
    """Feature: real-time-vocabulary-sync, Property 9: Trigger function handles errors gracefully"""
    conn, warnings = failing_writer
    warnings.clear()
    t, c = sql.Identifier(table), sql.Identifier(COLUMN[table])

    def counts() -> tuple[int, int]:
        """(rows holding ``value``, all rows)."""
        query = sql.SQL("SELECT count(*) FILTER (WHERE {} = %s), count(*) FROM {}").format(c, t)
        row = conn.execute(query, (value,)).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    matching_before, total_before = counts()
    notifies = (
        trigger_mode == "statement"
        or op != "UPDATE"
        or rows_differing(conn, table, COLUMN[table], value) > 0
    )
    perform(conn, table, op, value)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # committed

    expected = {
        "INSERT": (matching_before + 1, total_before + 1),
        "UPDATE": (total_before, total_before),
        "DELETE": (0, total_before - matching_before),
        "TRUNCATE": (0, 0),
    }[op]
    assert counts() == expected
    failed = [
        w
        for w in warnings
        if w.startswith(f"vocabsync: failed to notify vocabulary change on {table}:")
    ]
    assert bool(failed) == notifies, warnings


# --- Delta mode's lookup indexes -----------------------------------------------------------------

INDEX_NAMES = [index.name for index in lookup_indexes(DEFAULTS)]


async def index_state(url: str) -> dict[str, bool]:
    """Our lookup indexes that exist, and whether each is valid."""
    rows = await fetch_all(
        url,
        "SELECT c.relname::text, i.indisvalid FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY(%s)",
        (INDEX_NAMES,),
    )
    return {row[0]: row[1] for row in rows}


async def test_delta_migrate_builds_the_lookup_indexes_once(pg_url: str) -> None:
    settings = make_settings(pg_url, trigger_mode="delta")
    report = await migrate(settings)
    assert report.indexes_built == INDEX_NAMES
    assert INDEX_NAMES[:2] == ["Project_project_name_vocabsync", "Project_location_vocabsync"]
    assert await index_state(pg_url) == dict.fromkeys(INDEX_NAMES, True)
    assert (report.check.ok, report.check.index_problems) == (True, [])
    again = await migrate(settings)
    assert (again.indexes_built, again.repaired) == ([], False)

    # Precise and statement modes do not need them (and leave them where they are).
    assert (await check(make_settings(pg_url, trigger_mode="delta"))).ok
    precise = make_settings(pg_url, trigger_mode="precise")
    assert (await migrate(precise)).indexes_built == []
    assert await index_state(pg_url) == dict.fromkeys(INDEX_NAMES, True)
    await execute(pg_url, *(f'DROP INDEX "{name}"' for name in INDEX_NAMES))
    assert (await check(precise)).ok
    assert (await migrate(make_settings(pg_url))).indexes_built == INDEX_NAMES  # the default


async def test_concurrent_delta_migrations_build_each_index_once(pg_url: str) -> None:
    settings = make_settings(pg_url, trigger_mode="delta")
    first, second = await asyncio.gather(migrate(settings), migrate(settings))
    assert sorted(first.indexes_built + second.indexes_built) == sorted(INDEX_NAMES)
    assert first.check.ok
    assert second.check.ok
    assert await index_state(pg_url) == dict.fromkeys(INDEX_NAMES, True)


async def test_check_names_a_missing_or_invalid_index_and_migrate_rebuilds_it(
    pg_url: str,
) -> None:
    settings = make_settings(pg_url, trigger_mode="delta")
    await migrate(settings)
    await execute(pg_url, 'DROP INDEX "Project_location_vocabsync"')
    result = await check(settings)
    assert (
        result.problems
        == result.index_problems
        == [
            'no index serves the lookups of "Project"."location" (project_locations): `vocabsync '
            'migrate` builds "Project_location_vocabsync" (CREATE INDEX CONCURRENTLY)'
        ]
    )
    assert not result.needs_reinstall
    report = await migrate(settings)
    assert (report.indexes_built, report.repaired) == (["Project_location_vocabsync"], False)

    # What a failed CREATE INDEX CONCURRENTLY leaves: an INVALID index, which serves nothing.
    await execute(
        pg_url,
        "UPDATE pg_index SET indisvalid = false"
        """ WHERE indexrelid = '"CashFlow_file_name_vocabsync"'::regclass""",
    )
    assert [i.name for i in (await check(settings)).missing_indexes] == [
        "CashFlow_file_name_vocabsync"
    ]
    assert (await migrate(settings)).indexes_built == ["CashFlow_file_name_vocabsync"]
    assert await index_state(pg_url) == dict.fromkeys(INDEX_NAMES, True)


async def test_an_index_the_table_has_already_serves(pg_url: str) -> None:
    """A unique constraint on the name (say) serves the lookups: no second index."""
    await migrate(make_settings(pg_url, trigger_mode="precise"))  # no lookup index yet
    assert await index_state(pg_url) == {}
    await execute(pg_url, 'CREATE UNIQUE INDEX own_name ON "ExpensesColumn" (column_name)')
    report = await migrate(make_settings(pg_url, trigger_mode="delta"))
    assert "ExpensesColumn_column_name_vocabsync" not in report.indexes_built
    assert len(report.indexes_built) == len(INDEX_NAMES) - 1
    assert report.check.ok


async def test_custom_mapping_indexes_the_texts_of_other_types(pg_url: str) -> None:
    """A column that is not text is looked up by its text: the index is on (column::text)."""
    await execute(pg_url, 'CREATE TABLE "Codes" (code numeric, name varchar(20))')
    sources = {name: "Codes.name" for name in CUSTOM_SOURCES}
    sources["expense_categories"] = "Codes.code"
    settings = make_settings(pg_url, sources=sources, trigger_mode="delta")
    report = await migrate(settings)
    assert report.indexes_built == ["Codes_name_vocabsync", "Codes_code_vocabsync"]
    rows = await fetch_all(pg_url, "SELECT pg_get_indexdef('\"Codes_code_vocabsync\"'::regclass)")
    assert "((code)::text)" in rows[0][0]


async def test_rollback_keeps_the_indexes_and_the_identity(pg_url: str) -> None:
    await migrate(make_settings(pg_url, trigger_mode="delta"))
    await execute(pg_url, ROLLBACK_FILE.read_text(encoding="utf-8"))
    assert await index_state(pg_url) == dict.fromkeys(INDEX_NAMES, True)
    assert await fetch_all(
        pg_url, "SELECT to_regprocedure('public.vocabsync_database_identity()') IS NOT NULL"
    ) == [(True,)]
    for name in TRIGGER_NAMES:
        assert await tables_with_delta_trigger(pg_url, name) == []
